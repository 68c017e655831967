/// A message to produce.
public struct KafkaProducerMessage: Sendable {
    /// The topic to produce to.
    public var topic: String
    /// A fixed partition, or `nil` to let the configured partitioner choose from the key.
    public var partition: Int32?
    /// The key; `nil` is a null key (distinct from an empty one).
    public var key: [UInt8]?
    /// The value; `nil` is a null value, a tombstone on compacted topics.
    public var value: [UInt8]?
    /// Headers, in order.
    public var headers: [KafkaHeader]
    /// The create time in milliseconds since the epoch, or `nil` for "now".
    public var timestampMilliseconds: Int64?

    /// Creates a message.
    public init(
        topic: String, partition: Int32? = nil, key: [UInt8]? = nil, value: [UInt8]?, headers: [KafkaHeader] = [],
        timestampMilliseconds: Int64? = nil
    ) {
        self.topic = topic
        self.partition = partition
        self.key = key
        self.value = value
        self.headers = headers
        self.timestampMilliseconds = timestampMilliseconds
    }

    /// Creates a message whose key and value are UTF-8 strings.
    public init(
        topic: String, partition: Int32? = nil, key: String?, value: String?, headers: [KafkaHeader] = [],
        timestampMilliseconds: Int64? = nil
    ) {
        self.init(
            topic: topic, partition: partition, key: key.map { Array($0.utf8) }, value: value.map { Array($0.utf8) },
            headers: headers, timestampMilliseconds: timestampMilliseconds)
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
