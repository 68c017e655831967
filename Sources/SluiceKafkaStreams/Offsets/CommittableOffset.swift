public import SluiceKafka
/// The offset of a message handed out by a committable source: pass it to a committer once the message (and
/// whatever it caused) is done. Acknowledging it never commits past an earlier message that is not done.
///
/// It holds one reference (its partition's ledger, which knows the partition and its consumer's commit
/// coordinator): offsets are copied from stage to stage, once per message, and every reference they hold costs an
/// atomic retain and release per copy.
public struct CommittableOffset: Sendable, CustomStringConvertible {
    /// The message's offset.
    public let offset: Int64
    let ledger: PartitionLedger

    init(offset: Int64, ledger: PartitionLedger) {
        self.offset = offset
        self.ledger = ledger
    }

    /// The message's partition.
    public var topicPartition: KafkaTopicPartition { ledger.topicPartition }

    /// Records this offset as acknowledged without committing yet (a committer commits it with the next batch).
    public func acknowledge() { ledger.acknowledge(offset) }

    public var description: String { "\(topicPartition)@\(offset)" }
}

/// A message from a committable source, with the offset to acknowledge once it is done.
public struct CommittableMessage: Sendable {
    /// The message.
    public let message: KafkaConsumerMessage
    /// Its committable offset.
    public let committableOffset: CommittableOffset

    /// A message registered in `ledger`, moved in (not copied).
    init(_ message: consuming KafkaConsumerMessage, ledger: PartitionLedger) {
        let offset = message.offset
        self.message = message
        self.committableOffset = CommittableOffset(offset: offset, ledger: ledger)
    }
}
