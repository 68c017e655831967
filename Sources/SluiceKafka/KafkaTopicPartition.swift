/// A partition of a topic.
public struct KafkaTopicPartition: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The topic's name.
    public var topic: String
    /// The partition number, from 0.
    public var partition: Int32

    /// Creates a topic-partition.
    public init(topic: String, partition: Int32) {
        self.topic = topic
        self.partition = partition
    }

    public static func < (lhs: Self, rhs: Self) -> Bool {
        (lhs.topic, lhs.partition) < (rhs.topic, rhs.partition)
    }

    public var description: String { "\(topic)[\(partition)]" }
}

/// A position in a partition: the offset of the next message to read there.
///
/// Committing `offset` for a partition means "every message before `offset` is done": after consuming the message
/// at offset `n`, commit `n + 1`.
public struct KafkaTopicPartitionOffset: Hashable, Sendable, CustomStringConvertible {
    /// The partition.
    public var topicPartition: KafkaTopicPartition
    /// The offset (next to read), or one of ``KafkaOffset``'s logical values.
    public var offset: Int64

    /// Creates a partition position.
    public init(topic: String, partition: Int32, offset: Int64) {
        self.topicPartition = KafkaTopicPartition(topic: topic, partition: partition)
        self.offset = offset
    }

    /// Creates a partition position.
    public init(_ topicPartition: KafkaTopicPartition, offset: Int64) {
        self.topicPartition = topicPartition
        self.offset = offset
    }

    public var topic: String { topicPartition.topic }
    public var partition: Int32 { topicPartition.partition }
    public var description: String { "\(topicPartition)@\(offset)" }
}

/// librdkafka's logical offsets.
public enum KafkaOffset {
    /// The oldest retained message of a partition.
    public static let beginning: Int64 = -2
    /// The end of a partition: only messages produced from now on.
    public static let end: Int64 = -1
    /// The group's committed offset (or the reset policy when there is none).
    public static let stored: Int64 = -1000
    /// No offset: nothing committed.
    public static let invalid: Int64 = -1001
}

/// The low and high watermarks of a partition: the first retained offset and the offset after the last message.
public struct KafkaWatermarks: Hashable, Sendable {
    /// The oldest offset still in the partition.
    public var low: Int64
    /// The offset the next produced message will get (the partition's end).
    public var high: Int64

    public init(low: Int64, high: Int64) {
        self.low = low
        self.high = high
    }
}
