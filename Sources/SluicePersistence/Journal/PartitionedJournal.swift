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
    func restore(partitions: [Int32]) async throws(PersistenceError) -> PartitionRestoreStatistics

    /// Drops the partitions' entities (their partitions moved to another instance).
    func release(partitions: [Int32])
}

extension KafkaChangelogJournal: PartitionedJournal {}

/// What a ``PartitionedJournal/restore(partitions:)`` read.
public struct PartitionRestoreStatistics: Sendable, Hashable {
    /// The restored partitions.
    public var partitions: [Int32]
    /// Records read (for the Kafka changelog: up to the restore's marker records).
    public var records: Int
    /// Entities found.
    public var entities: Int
    /// Events restored (acknowledged history).
    public var events: Int
    /// Records after the end of an entity's acknowledged history (from failed appends), ignored.
    public var ignoredRecords: Int
    /// How long the restore took.
    public var duration: Duration

    public init(
        partitions: [Int32], records: Int, entities: Int, events: Int, ignoredRecords: Int, duration: Duration
    ) {
        self.partitions = partitions
        self.records = records
        self.entities = entities
        self.events = events
        self.ignoredRecords = ignoredRecords
        self.duration = duration
    }
}
