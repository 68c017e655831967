internal import CRDKafka
import Dispatch

/// librdkafka's built-in mock Kafka cluster, for faults a real broker cannot easily be made to produce
/// (injected request errors, brokers going down). Point clients at ``bootstrapServers``.
@_spi(Testing)
public final class KafkaMockCluster: @unchecked Sendable {
    // @unchecked Sendable: the mock cluster's API is thread-safe (it posts operations to the cluster's own
    // thread), and the pointers are only released in deinit, when no other reference exists.
    private let host: OpaquePointer
    private let cluster: OpaquePointer

    /// Kafka protocol API keys used when injecting errors.
    public enum APIKey {
        public static let produce: Int16 = 0
        public static let fetch: Int16 = 1
        public static let offsetCommit: Int16 = 8
        public static let offsetFetch: Int16 = 9
        public static let findCoordinator: Int16 = 10
        public static let joinGroup: Int16 = 11
        public static let heartbeat: Int16 = 12
        public static let initProducerID: Int16 = 22
    }

    /// Starts a mock cluster with `brokers` brokers (ids 1...brokers).
    public init(brokers: Int32 = 1) throws {
        try KafkaLibrary.requireSupportedVersion()
        let conf = try RDKafkaConfig.make([("log_level", "3")])
        var errorBuffer = [CChar](repeating: 0, count: 256)
        guard let host = rd_kafka_new(RD_KAFKA_PRODUCER, conf, &errorBuffer, errorBuffer.count) else {
            rd_kafka_conf_destroy(conf)
            throw KafkaError(code: .clientCreation, message: "cannot create the mock cluster's host client")
        }
        guard let cluster = rd_kafka_mock_cluster_new(host, brokers) else {
            rd_kafka_destroy(host)
            throw KafkaError(code: .clientCreation, message: "cannot create a mock cluster")
        }
        self.host = host
        self.cluster = cluster
    }

    deinit {
        rd_kafka_mock_cluster_destroy(cluster)
        rd_kafka_destroy(host)
    }

    /// The cluster's bootstrap servers, `host:port,...`.
    public var bootstrapServers: [String] {
        String(cString: rd_kafka_mock_cluster_bootstraps(cluster)).split(separator: ",").map(String.init)
    }

    /// Creates a topic.
    public func createTopic(_ name: String, partitions: Int32, replicationFactor: Int32 = 1) throws {
        let raw = rd_kafka_mock_topic_create(cluster, name, partitions, replicationFactor)
        if raw != RD_KAFKA_RESP_ERR_NO_ERROR {
            throw KafkaError.rdkafka(raw, as: .admin, context: "creating mock topic \(name)")
        }
    }

    /// Makes the next requests of `apiKey` fail with these errors, one request each, in order.
    public func pushRequestErrors(apiKey: Int16, _ errors: [KafkaErrorCode]) {
        var raws = errors.map(\.raw)
        raws.withUnsafeMutableBufferPointer { buffer in
            rd_kafka_mock_push_request_errors_array(cluster, apiKey, buffer.count, buffer.baseAddress)
        }
    }

    /// Takes a broker down (connections closed, new ones refused) or brings it back.
    public func setBroker(_ id: Int32, isUp: Bool) throws {
        let raw = isUp ? rd_kafka_mock_broker_set_up(cluster, id) : rd_kafka_mock_broker_set_down(cluster, id)
        if raw != RD_KAFKA_RESP_ERR_NO_ERROR {
            throw KafkaError.rdkafka(raw, as: .admin, context: "setting mock broker \(id) \(isUp ? "up" : "down")")
        }
    }

    /// Makes a partition's leader `brokerID`.
    public func setPartitionLeader(topic: String, partition: Int32, brokerID: Int32) throws {
        let raw = rd_kafka_mock_partition_set_leader(cluster, topic, partition, brokerID)
        if raw != RD_KAFKA_RESP_ERR_NO_ERROR {
            throw KafkaError.rdkafka(raw, as: .admin, context: "setting the leader of \(topic)[\(partition)]")
        }
    }

    /// Makes `brokerID` the group coordinator for `group`.
    public func setCoordinator(group: String, brokerID: Int32) throws {
        let raw = rd_kafka_mock_coordinator_set(cluster, "group", group, brokerID)
        if raw != RD_KAFKA_RESP_ERR_NO_ERROR {
            throw KafkaError.rdkafka(raw, as: .admin, context: "setting the coordinator of group \(group)")
        }
    }
}
