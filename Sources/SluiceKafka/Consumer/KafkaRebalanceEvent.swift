/// A change of a consumer's partition assignment, delivered before the partitions change hands.
public enum KafkaRebalanceEvent: Hashable, Sendable {
    /// These partitions were just assigned. Their messages are not handed over until the handler returns,
    /// so it can prepare state or seek first.
    case assigned([KafkaTopicPartition])
    /// These partitions are about to be taken away. The consumer still owns them until the handler returns:
    /// finish or abandon their in-flight messages and commit what is done now.
    case revoked([KafkaTopicPartition])
    /// These partitions were lost (session timeout, fenced): another member may own them already, so
    /// committing for them is no longer safe.
    case lost([KafkaTopicPartition])

    /// The partitions the event is about.
    public var partitions: [KafkaTopicPartition] {
        switch self {
        case .assigned(let partitions), .revoked(let partitions), .lost(let partitions): partitions
        }
    }
}
