public import SluiceKafka

/// Settings of a Kafka consumer source.
public struct KafkaSourceSettings: Sendable {
    /// The consumer's settings (brokers, group, librdkafka properties, hand-over buffer).
    public var consumer: KafkaConsumerConfiguration
    /// What to read.
    public var subscription: KafkaSubscription
    /// At most this many messages of one partition are in flight (handed downstream, not yet acknowledged);
    /// beyond it the source pauses that partition in librdkafka and holds its messages until acknowledgements
    /// bring it down to half. Committable sources only. Default: 1,000.
    ///
    /// It bounds memory, and with it throughput: a partition moves at most this many messages per acknowledgement
    /// latency. A pipeline whose acknowledgement waits for a produce or a changelog write (about 15 ms with the
    /// default linger) moves at most some 65,000 messages per second per partition at 1,000; the benchmarks'
    /// bridge sets 20,000.
    public var maxInFlightPerPartition: Int = 1000
    /// How long a revoked partition waits for its in-flight messages to be acknowledged (and committed) before it is
    /// given up anyway; messages not done by then are delivered again to the next owner. Default: 10 seconds.
    public var revokeWait: Duration = .seconds(10)

    /// Called after partitions are assigned, before any of their messages is handed out (committable sources).
    /// Default: none.
    public var onAssigned: (@Sendable ([KafkaTopicPartition]) async -> Void)?
    /// Called when partitions are revoked, after their in-flight messages were finished (or given up) and
    /// committed, before librdkafka releases them: the place to stop what runs for them (for example a shard's
    /// entities) so nothing is active on two instances at once. Default: none.
    public var onRevoked: (@Sendable ([KafkaTopicPartition]) async -> Void)?

    /// Called when partitions are about to be revoked, before the source waits for their in-flight messages: for
    /// stages that hold state per partition (open aggregation windows) and must drop it at once rather than emit
    /// it for a partition being given up.
    public var onRevoking: (@Sendable ([KafkaTopicPartition]) async -> Void)?

    /// Creates source settings.
    public init(consumer: KafkaConsumerConfiguration, subscription: KafkaSubscription) {
        self.consumer = consumer
        self.subscription = subscription
    }
}

/// What a consumer source reads.
public struct KafkaSubscription: Sendable, CustomStringConvertible {
    enum Kind: Sendable {
        case topics([String])
        case pattern(String)
        case partitions([KafkaTopicPartitionOffset])
    }
    let kind: Kind

    /// These topics, with consumer-group management.
    public static func topics(_ topics: [String]) -> KafkaSubscription { KafkaSubscription(kind: .topics(topics)) }
    /// Every topic matching a regular expression, with consumer-group management.
    public static func pattern(_ pattern: String) -> KafkaSubscription { KafkaSubscription(kind: .pattern(pattern)) }
    /// Exactly these partitions from these offsets, without group management (no rebalances).
    public static func partitions(_ partitions: [KafkaTopicPartitionOffset]) -> KafkaSubscription {
        KafkaSubscription(kind: .partitions(partitions))
    }

    func apply(to consumer: KafkaConsumer) throws {
        switch kind {
        case .topics(let topics): try consumer.subscribe(topics: topics)
        case .pattern(let pattern): try consumer.subscribe(pattern: pattern)
        case .partitions(let partitions): try consumer.assign(partitions)
        }
    }

    public var description: String {
        switch kind {
        case .topics(let topics): "topics \(topics)"
        case .pattern(let pattern): "pattern \(pattern)"
        case .partitions(let partitions): "partitions \(partitions)"
        }
    }
}
