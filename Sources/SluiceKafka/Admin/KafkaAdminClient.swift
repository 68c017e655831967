internal import CRDKafka
public import Logging

/// Creates and deletes topics and describes the cluster.
///
/// Every call waits for the broker's answer (up to ``KafkaClientConfiguration/requestTimeout``) on a thread of
/// its own, never blocking Swift's cooperative pool.
public final class KafkaAdminClient: Sendable {
    private let client: RDKafkaClient
    private let pollThread = RDKafkaPollThread()
    /// The configuration this client was created with.
    public let configuration: KafkaClientConfiguration

    /// Creates an admin client.
    /// - Throws: ``KafkaError/Code/invalidConfiguration`` naming an unknown or invalid property.
    public init(configuration: KafkaClientConfiguration, logger: Logger = Logger(label: "sluice.kafka.admin")) throws {
        self.configuration = configuration
        let context = RDKafkaClientContext(logger: logger) { error in
            logger.warning("admin client error: \(error)")
        }
        // Describing a topic must never create it: a producer handle would ask brokers that allow it to create a
        // missing topic on the metadata request (with the broker's default partition count and settings).
        let properties = configuration.librdkafkaProperties() + [("allow.auto.create.topics", "false")]
        let client = try RDKafkaClient(kind: .producer, properties: properties, context: context)
        self.client = client
        let pollThread = self.pollThread
        pollThread.start(name: "sluice-admin-poll") {
            while !pollThread.isStopRequested { rd_kafka_poll(client.handle, 100) }
        }
    }

    deinit { pollThread.requestStop() }

    /// Creates a topic.
    /// - Throws: ``KafkaError/Code/topicExists`` if it exists, ``KafkaError/Code/timedOut``, or
    ///   ``KafkaError/Code/admin`` with the broker's reason.
    public func createTopic(_ topic: KafkaTopicSpecification) async throws {
        try await createTopics([topic])
    }

    /// Creates topics; fails with the first topic's error if any could not be created.
    public func createTopics(_ topics: [KafkaTopicSpecification]) async throws {
        let client = self.client
        let timeout = configuration.requestTimeout.milliseconds
        try await RDKafkaBlocking.run {
            var newTopics: [OpaquePointer?] = []
            defer { for topic in newTopics { rd_kafka_NewTopic_destroy(topic) } }
            var errorBuffer = [CChar](repeating: 0, count: 512)
            for topic in topics {
                guard
                    let newTopic = rd_kafka_NewTopic_new(
                        topic.name, topic.partitions, topic.replicationFactor, &errorBuffer, errorBuffer.count)
                else {
                    throw KafkaError(
                        code: .admin, message: "invalid topic '\(topic.name)': \(String(decoding: errorBuffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))")
                }
                newTopics.append(newTopic)
                for (name, value) in topic.configs.sorted(by: { $0.key < $1.key }) {
                    let raw = rd_kafka_NewTopic_set_config(newTopic, name, value)
                    if raw != RD_KAFKA_RESP_ERR_NO_ERROR {
                        throw KafkaError.rdkafka(raw, as: .admin, context: "topic '\(topic.name)' config '\(name)'")
                    }
                }
            }
            try Self.runAdmin(client: client, operation: RD_KAFKA_ADMIN_OP_CREATETOPICS, timeout: timeout) { options, queue in
                newTopics.withUnsafeMutableBufferPointer { buffer in
                    rd_kafka_CreateTopics(client.handle, buffer.baseAddress, buffer.count, options, queue)
                }
            } check: { event in
                var count = 0
                let results = rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(event), &count)
                try Self.checkTopicResults(results, count: count, verb: "creating")
            }
        }
    }

    /// Deletes topics; fails with the first topic's error if any could not be deleted.
    public func deleteTopics(_ names: [String]) async throws {
        let client = self.client
        let timeout = configuration.requestTimeout.milliseconds
        try await RDKafkaBlocking.run {
            var deleteTopics: [OpaquePointer?] = names.map { rd_kafka_DeleteTopic_new($0) }
            defer { for topic in deleteTopics { rd_kafka_DeleteTopic_destroy(topic) } }
            try Self.runAdmin(client: client, operation: RD_KAFKA_ADMIN_OP_DELETETOPICS, timeout: timeout) { options, queue in
                deleteTopics.withUnsafeMutableBufferPointer { buffer in
                    rd_kafka_DeleteTopics(client.handle, buffer.baseAddress, buffer.count, options, queue)
                }
            } check: { event in
                var count = 0
                let results = rd_kafka_DeleteTopics_result_topics(rd_kafka_event_DeleteTopics_result(event), &count)
                try Self.checkTopicResults(results, count: count, verb: "deleting")
            }
        }
    }

    /// Describes the cluster: brokers, and every topic with its partitions.
    public func describeCluster() async throws -> KafkaClusterDescription {
        try await metadata(topic: nil)
    }

    /// Describes one topic; throws ``KafkaError/Code/unknownTopic`` if the cluster does not have it.
    public func describeTopic(_ name: String) async throws -> KafkaClusterDescription.Topic {
        let description = try await metadata(topic: name)
        guard let topic = description.topic(name), !topic.partitions.isEmpty else {
            throw KafkaError(code: .unknownTopic, message: "topic '\(name)' does not exist")
        }
        return topic
    }

    private func metadata(topic: String?) async throws -> KafkaClusterDescription {
        let client = self.client
        let timeout = configuration.requestTimeout.milliseconds
        return try await RDKafkaBlocking.run {
            var topicHandle: OpaquePointer?
            if let topic { topicHandle = rd_kafka_topic_new(client.handle, topic, nil) }
            defer { if let topicHandle { rd_kafka_topic_destroy(topicHandle) } }
            var metadata: UnsafePointer<rd_kafka_metadata>?
            let raw = rd_kafka_metadata(client.handle, topicHandle == nil ? 1 : 0, topicHandle, &metadata, timeout)
            guard raw == RD_KAFKA_RESP_ERR_NO_ERROR, let metadata else {
                switch raw {
                case RD_KAFKA_RESP_ERR__TRANSPORT, RD_KAFKA_RESP_ERR__TIMED_OUT, RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
                    var error = KafkaError.rdkafka(raw, as: .timedOut, context: "requesting metadata")
                    error.code = .timedOut
                    error.message = "no broker answered a metadata request within \(timeout) ms "
                        + "(bootstrap.servers: \(client.bootstrapServers); is it right, and is the broker up?)"
                    throw error
                default:
                    throw KafkaError.rdkafka(raw, as: .metadata, context: "requesting metadata")
                }
            }
            defer { rd_kafka_metadata_destroy(metadata) }
            let md = metadata.pointee
            let brokers = (0..<Int(md.broker_cnt)).map { index in
                let broker = md.brokers[index]
                return KafkaClusterDescription.Broker(id: broker.id, host: String(cString: broker.host), port: broker.port)
            }
            var topics: [KafkaClusterDescription.Topic] = []
            for index in 0..<Int(md.topic_cnt) {
                let topic = md.topics[index]
                if topic.err != RD_KAFKA_RESP_ERR_NO_ERROR { continue }
                let partitions = (0..<Int(topic.partition_cnt)).map { p in
                    let partition = topic.partitions[p]
                    return KafkaClusterDescription.Partition(
                        id: partition.id, leader: partition.leader,
                        replicas: (0..<Int(partition.replica_cnt)).map { partition.replicas[$0] },
                        inSyncReplicas: (0..<Int(partition.isr_cnt)).map { partition.isrs[$0] })
                }
                topics.append(.init(name: String(cString: topic.topic), partitions: partitions.sorted { $0.id < $1.id }))
            }
            return KafkaClusterDescription(originatingBrokerID: md.orig_broker_id, brokers: brokers, topics: topics)
        }
    }

    /// Runs one admin request on a private queue and waits (on the calling Dispatch thread) for its result event.
    private static func runAdmin(
        client: RDKafkaClient, operation: rd_kafka_admin_op_t, timeout: Int32,
        start: (OpaquePointer?, OpaquePointer?) -> Void, check: (OpaquePointer) throws -> Void
    ) throws {
        let queue = rd_kafka_queue_new(client.handle)
        defer { rd_kafka_queue_destroy(queue) }
        let options = rd_kafka_AdminOptions_new(client.handle, operation)
        defer { rd_kafka_AdminOptions_destroy(options) }
        var errorBuffer = [CChar](repeating: 0, count: 256)
        _ = rd_kafka_AdminOptions_set_request_timeout(options, timeout, &errorBuffer, errorBuffer.count)
        _ = rd_kafka_AdminOptions_set_operation_timeout(options, timeout, &errorBuffer, errorBuffer.count)
        start(options, queue)
        guard let event = rd_kafka_queue_poll(queue, timeout + 5000) else {
            throw KafkaError(code: .timedOut, message: "the admin request got no answer within \(timeout) ms")
        }
        defer { rd_kafka_event_destroy(event) }
        let raw = rd_kafka_event_error(event)
        if raw != RD_KAFKA_RESP_ERR_NO_ERROR {
            let text = rd_kafka_event_error_string(event).map { String(cString: $0) } ?? ""
            throw KafkaError.rdkafka(raw, as: .admin, context: "admin request failed: \(text)")
        }
        try check(event)
    }

    private static func checkTopicResults(_ results: UnsafeMutablePointer<OpaquePointer?>?, count: Int, verb: String) throws {
        guard let results else { return }
        for index in 0..<count {
            guard let result = results[index] else { continue }
            let raw = rd_kafka_topic_result_error(result)
            if raw != RD_KAFKA_RESP_ERR_NO_ERROR {
                let name = String(cString: rd_kafka_topic_result_name(result))
                let text = rd_kafka_topic_result_error_string(result).map { String(cString: $0) } ?? ""
                throw KafkaError.rdkafka(raw, as: .admin, context: "\(verb) topic '\(name)' failed: \(text)")
            }
        }
    }
}
