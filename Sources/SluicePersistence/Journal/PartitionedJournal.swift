/// A journal that serves only the entities of the input partitions this instance owns, and must load them when a
/// partition is assigned (the Kafka changelog): the state moves with the partition.
///
/// Sharded persistent entities call ``restore(partitions:)`` when partitions are assigned, before their entities take
/// a message, and ``release(partitions:)`` when they are revoked, after their entities stopped. A journal that holds
/// every entity wherever it runs (SQLite, one file per instance) does not conform, and needs neither.
public protocol PartitionedJournal: Journal {
    /// Loads the partitions' entities; until it returns, their operations fail.
    /// - Returns: how many records, entities and events were read, and how long it took.
    @discardableResult
    func restore(partitions: [Int32]) async throws(PersistenceError) -> KafkaChangelogRestoreStatistics

    /// Drops the partitions' entities (their partitions moved to another instance).
    func release(partitions: [Int32])
}

extension KafkaChangelogJournal: PartitionedJournal {}
