/// Settings of a ``KafkaProducer``.
public struct KafkaProducerConfiguration: Sendable {
    /// Shared client settings (brokers, client id, security, raw properties).
    public var client: KafkaClientConfiguration
    /// Idempotent production: no duplicates or reordering from retries. Default: `true`.
    public var isIdempotent: Bool = true
    /// How long librdkafka waits to fill a batch before sending it. Default: 5 ms.
    public var linger: Duration = .milliseconds(5)
    /// How long a message may take to be delivered, retries included, before its send fails. Default: 30 seconds.
    public var messageTimeout: Duration = .seconds(30)
    /// At most this many messages wait in librdkafka's local queue; a send beyond it awaits room. Default: 100,000.
    public var maxQueuedMessages: Int = 100_000
    /// At most this many kilobytes wait in librdkafka's local queue. Default: 1 GiB (1,048,576).
    public var maxQueuedKilobytes: Int = 1_048_576
    /// Compression codec: `none`, `gzip`, `snappy`, `lz4` or `zstd`. Default: `none`.
    public var compression: String = "none"
    /// The partitioner used for keyed messages. Default: `consistent_random` (librdkafka's default);
    /// `murmur2_random` matches the Java client.
    public var partitioner: String = "consistent_random"
    /// Acknowledgements required from the broker: `all`, `1` or `0`. Default: `all`.
    public var acks: String = "all"
    /// Ask brokers to create a missing topic on first use (if they allow it). Default: `false`: producing to a
    /// missing topic fails with a clear error after ``unknownTopicTimeout``.
    public var allowsAutoCreateTopics: Bool = false
    /// How long a message for a topic the cluster does not know waits for the topic to appear before it fails.
    /// Default: 5 seconds.
    public var unknownTopicTimeout: Duration = .seconds(5)

    /// Creates producer settings for the given bootstrap servers.
    public init(bootstrapServers: [String]) {
        self.client = KafkaClientConfiguration(bootstrapServers: bootstrapServers)
    }

    /// Creates producer settings from shared client settings.
    public init(client: KafkaClientConfiguration) {
        self.client = client
    }

    func librdkafkaProperties() -> [(String, String)] {
        client.librdkafkaProperties() + [
            ("enable.idempotence", isIdempotent ? "true" : "false"),
            ("linger.ms", String(linger.milliseconds)),
            ("message.timeout.ms", String(messageTimeout.milliseconds)),
            ("queue.buffering.max.messages", String(maxQueuedMessages)),
            ("queue.buffering.max.kbytes", String(maxQueuedKilobytes)),
            ("compression.codec", compression),
            ("partitioner", partitioner),
            ("acks", acks),
            ("allow.auto.create.topics", allowsAutoCreateTopics ? "true" : "false"),
            ("topic.metadata.propagation.max.ms", String(unknownTopicTimeout.milliseconds)),
        ] + client.overridingProperties(except: [])
    }
}
