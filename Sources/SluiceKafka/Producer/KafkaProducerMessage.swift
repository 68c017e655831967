/// A message to produce.
public struct KafkaProducerMessage: Sendable {
    // The stored properties are in this order so that the synthesized memberwise initializer,
    // `init(topic:headers:key:value:partition:timestampMilliseconds:)`, differs from the public ones, which delegate
    // to it: an initializer that assigns the properties one by one made the optimizer copy the whole message on its
    // way out (a retain and a release of every array in it, per message, measured with `sluice-bench streams`).

    /// The topic to produce to.
    public var topic: String
    /// Headers, in order.
    public var headers: [KafkaHeader]
    /// The key; `nil` is a null key (distinct from an empty one).
    public var key: [UInt8]?
    /// The value; `nil` is a null value, a tombstone on compacted topics.
    public var value: [UInt8]?
    /// A fixed partition, or `nil` to let the configured partitioner choose from the key.
    public var partition: Int32?
    /// The create time in milliseconds since the epoch, or `nil` for "now".
    public var timestampMilliseconds: Int64?
}

extension KafkaProducerMessage {
    /// Creates a message.
    public init(
        topic: String, partition: Int32? = nil, key: [UInt8]? = nil, value: [UInt8]?, headers: [KafkaHeader] = [],
        timestampMilliseconds: Int64? = nil
    ) {
        self.init(
            topic: topic, headers: headers, key: key, value: value, partition: partition,
            timestampMilliseconds: timestampMilliseconds)
    }

    /// Creates a message whose key and value are UTF-8 strings.
    public init(
        topic: String, partition: Int32? = nil, key: String?, value: String?, headers: [KafkaHeader] = [],
        timestampMilliseconds: Int64? = nil
    ) {
        self.init(
            topic: topic, headers: headers, key: key.map { Array($0.utf8) }, value: value.map { Array($0.utf8) },
            partition: partition, timestampMilliseconds: timestampMilliseconds)
    }
}

/// Where the broker stored a produced message.
public struct KafkaDeliveryReport: Hashable, Sendable, CustomStringConvertible {
    /// The topic.
    public var topic: String
    /// The partition the message landed in.
    public var partition: Int32
    /// The message's offset in that partition.
    public var offset: Int64
    /// The record's timestamp as stored, if the broker returned one.
    public var timestamp: KafkaTimestamp?

    public init(topic: String, partition: Int32, offset: Int64, timestamp: KafkaTimestamp? = nil) {
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.timestamp = timestamp
    }

    public var description: String { "\(topic)[\(partition)]@\(offset)" }
}
