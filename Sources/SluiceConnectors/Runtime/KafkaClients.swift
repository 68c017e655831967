public import Logging
public import SluiceConnectorConfig
public import SluiceKafka
import Synchronization

/// One producer per Kafka cluster, created on first use and shared by every connector's sink, dead-letter topic
/// and the publish API; closed (after a flush) when the service stops.
public final class KafkaClients: Sendable {
    private let clusters: [String: ClusterConfiguration]
    private let producers = Mutex<[String: KafkaProducer]>([:])
    private let logger: Logger

    public init(clusters: [String: ClusterConfiguration], logger: Logger) {
        self.clusters = clusters
        self.logger = logger
    }

    /// The shared producer of `cluster`.
    public func producer(cluster: String) throws -> KafkaProducer {
        try producers.withLock { producers in
            if let producer = producers[cluster] { return producer }
            guard let configuration = clusters[cluster] else {
                throw KafkaError(code: .invalidConfiguration, message: "no Kafka cluster named '\(cluster)' is configured")
            }
            var producerConfiguration = KafkaProducerConfiguration(client: configuration.client)
            producerConfiguration.allowsAutoCreateTopics = true
            let producer = try KafkaProducer(configuration: producerConfiguration, logger: logger)
            producers[cluster] = producer
            return producer
        }
    }

    public func client(cluster: String) -> KafkaClientConfiguration? { clusters[cluster]?.client }

    /// Flushes and closes every producer.
    public func close(timeout: Duration = .seconds(30)) async {
        let all = producers.withLock { producers in
            defer { producers = [:] }
            return Array(producers.values)
        }
        for producer in all {
            do {
                try await producer.close(timeout: timeout)
            } catch {
                logger.error("closing a producer failed: \(error)")
            }
        }
    }
}

/// Names of the headers a dead-lettered record carries besides its original ones (modelled on Kafka Connect's
/// `__connect.errors.*` context headers).
public enum DeadLetterHeaders {
    public static let topic = "sluice.error.topic"
    public static let partition = "sluice.error.partition"
    public static let offset = "sluice.error.offset"
    public static let connector = "sluice.error.connector"
    public static let errorClass = "sluice.error.class"
    public static let message = "sluice.error.message"
    public static let attempts = "sluice.error.attempts"
    public static let timestamp = "sluice.error.timestamp"

    /// The dead-letter message for `record`: original key, value and headers, plus the context headers.
    public static func message(
        for record: ConnectorRecord, topic: String, connector: String, failure: RecordFailure, attempts: Int,
        nowMilliseconds: Int64
    ) -> KafkaProducerMessage {
        var headers = record.headers
        headers += [
            KafkaHeader(name: Self.topic, string: record.topic),
            KafkaHeader(name: Self.partition, string: String(record.partition)),
            KafkaHeader(name: Self.offset, string: String(record.offset)),
            KafkaHeader(name: Self.connector, string: connector),
            KafkaHeader(name: Self.errorClass, string: failure.errorClass),
            KafkaHeader(name: Self.message, string: String(failure.message.prefix(1000))),
            KafkaHeader(name: Self.attempts, string: String(attempts)),
            KafkaHeader(name: Self.timestamp, string: String(nowMilliseconds)),
        ]
        return KafkaProducerMessage(
            topic: topic, key: record.key, value: record.value, headers: headers,
            timestampMilliseconds: record.timestampMilliseconds)
    }
}
