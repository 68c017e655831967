/// A message read by a ``KafkaConsumer``.
public struct KafkaConsumerMessage: Sendable {
    /// The topic it was read from.
    public var topic: String
    /// The partition it was read from.
    public var partition: Int32
    /// Its offset within the partition.
    public var offset: Int64
    /// Headers, in order.
    public var headers: [KafkaHeader]
    /// The key; `nil` is a null key.
    public var key: [UInt8]?
    /// The value; `nil` is a null value.
    public var value: [UInt8]?
    /// The record's timestamp, if it has one.
    public var timestamp: KafkaTimestamp?

    // The headers come before the key and value so that the synthesized memberwise initializer,
    // `init(topic:partition:offset:headers:key:value:timestamp:)`, differs from the public one, which delegates to
    // it: an initializer that assigns the properties one by one made the optimizer copy the whole message on its way
    // out (a retain and a release of every array in it, per message, measured with `sluice-bench streams`).
}

extension KafkaConsumerMessage {
    /// Creates a message (for tests, and for sources that are not librdkafka).
    public init(
        topic: String, partition: Int32, offset: Int64, key: [UInt8]?, value: [UInt8]?, headers: [KafkaHeader] = [],
        timestamp: KafkaTimestamp? = nil
    ) {
        self.init(
            topic: topic, partition: partition, offset: offset, headers: headers, key: key, value: value,
            timestamp: timestamp)
    }

    /// The message's partition.
    public var topicPartition: KafkaTopicPartition { KafkaTopicPartition(topic: topic, partition: partition) }

    /// The position to commit once this message (and every earlier one of its partition) is done: `offset + 1`.
    public var nextOffset: KafkaTopicPartitionOffset {
        KafkaTopicPartitionOffset(topic: topic, partition: partition, offset: offset + 1)
    }

    /// The key decoded as UTF-8.
    public var keyString: String? { key.map { String(decoding: $0, as: UTF8.self) } }
    /// The value decoded as UTF-8.
    public var valueString: String? { value.map { String(decoding: $0, as: UTF8.self) } }
}
