import Foundation
import Logging
import SluiceConnectorConfig
import SluiceKafka
import SluicePersistence
import Synchronization

/// The journals of a connector's stateful processors for one run of its pipeline, and the persistent
/// deduplication of each `dedupe` processor with `state:`.
final class ProcessorStateStores: Sendable {
    /// By processor index.
    let dedupes: [Int: PersistentDedupe]
    private let journals: [any Journal]

    private init(dedupes: [Int: PersistentDedupe], journals: [any Journal]) {
        self.dedupes = dedupes
        self.journals = journals
    }

    /// No stateful processor with a store.
    static let none = ProcessorStateStores(dedupes: [:], journals: [])

    /// Opens the journals the connector's processors name (one per SQLite file or changelog topic, shared by the
    /// processors that name it).
    /// - Throws: ``PersistenceError`` when a journal cannot be opened (an SQLite file that cannot be created, a
    ///   changelog topic with the wrong partition count, an unreachable cluster).
    static func open(_ configuration: ConnectorConfiguration, clients: KafkaClients, logger: Logger) async throws
        -> ProcessorStateStores
    {
        var dedupes: [Int: PersistentDedupe] = [:]
        var sqlite: [String: SQLiteJournal] = [:]
        var changelogs: [String: KafkaChangelogJournal] = [:]
        var journals: [any Journal] = []
        do {
            for (index, processor) in configuration.processors.enumerated() {
                guard case .dedupe(let dedupe) = processor, let store = dedupe.state else { continue }
                let journal: any Journal
                switch store {
                case .sqlite(let configured):
                    let path = configured ?? defaultSQLitePath(connector: configuration.name)
                    if let open = sqlite[path] {
                        journal = open
                    } else {
                        try createDirectory(of: path, connector: configuration.name)
                        let opened = try await SQLiteJournal(path: path)
                        sqlite[path] = opened
                        journals.append(opened)
                        journal = opened
                    }
                case .kafka(let configured, let linger):
                    let topic = configured ?? "\(configuration.name)-dedupe-state"
                    if let open = changelogs[topic] {
                        journal = open
                    } else {
                        guard let client = clients.client(cluster: configuration.cluster),
                            let inputTopic = configuration.source.topics.first
                        else {
                            throw PersistenceError(
                                .invalidArgument, journal: "kafka:\(topic)",
                                message: "a Kafka state store needs the connector's cluster and one input topic")
                        }
                        var changelog = KafkaChangelogJournalConfiguration(
                            client: client, topic: topic, inputTopic: inputTopic)
                        changelog.placement = PersistentDedupe.placement
                        changelog.deleteEventsOnSnapshot = true
                        if let linger { changelog.linger = linger }
                        let opened = try await KafkaChangelogJournal(changelog, logger: logger)
                        changelogs[topic] = opened
                        journals.append(opened)
                        journal = opened
                    }
                }
                dedupes[index] = PersistentDedupe(
                    journal: journal, connector: configuration.name, processorIndex: index, configuration: dedupe)
            }
        } catch {
            for journal in journals { await journal.close() }
            throw error
        }
        return ProcessorStateStores(dedupes: dedupes, journals: journals)
    }

    /// Whether any processor keeps state in a journal that follows partitions.
    var hasPartitionedState: Bool { dedupes.values.contains { $0.journal is any PartitionedJournal } }

    /// Partitions were assigned: restore their state (before their first message is processed).
    func assign(_ partitions: [KafkaTopicPartition]) async {
        for dedupe in dedupes.values { await dedupe.assign(partitions) }
    }

    /// Partitions were revoked (their in-flight messages finished): drop and release their state.
    func revoke(_ partitions: [KafkaTopicPartition]) {
        for dedupe in dedupes.values { dedupe.revoke(partitions) }
    }

    /// Closes the journals (pending writes finish first).
    func close() async {
        for journal in journals { await journal.close() }
    }

    /// `$SLUICE_STATE_DIR/<connector>.db`; the directory defaults to `sluice-state` in the working directory.
    static func defaultSQLitePath(connector: String) -> String {
        let directory = ProcessInfo.processInfo.environment["SLUICE_STATE_DIR"].flatMap { $0.isEmpty ? nil : $0 }
            ?? "sluice-state"
        return "\(directory)/\(connector).db"
    }

    private static func createDirectory(of path: String, connector: String) throws(PersistenceError) {
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent()
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        } catch {
            throw PersistenceError(
                .storageFailure, journal: "sqlite:\(path)",
                message: "cannot create the state directory \(directory.path) of connector '\(connector)': \(error); "
                    + "set 'path' or SLUICE_STATE_DIR to a writable place")
        }
    }
}

/// The persistent deduplication of one `dedupe` processor: a ``DedupeLog`` per input partition, recovered on first
/// use (and, with a partitioned journal, after the partition's restore).
final class PersistentDedupe: Sendable {
    static let entityType = "sluice.dedupe"

    let journal: any Journal
    let connector: String
    let processorIndex: Int
    let configuration: DedupeProcessorConfiguration
    private let logs = Mutex<[KafkaTopicPartition: Task<DedupeLog, any Error>]>([:])
    private let refused = Mutex<[KafkaTopicPartition: PersistenceError]>([:])

    init(journal: any Journal, connector: String, processorIndex: Int, configuration: DedupeProcessorConfiguration) {
        self.journal = journal
        self.connector = connector
        self.processorIndex = processorIndex
        self.configuration = configuration
    }

    /// The journal identity of a partition's set: `sluice.dedupe` / `<connector>/<processor>/<topic>/<partition>`.
    func persistenceID(_ partition: KafkaTopicPartition) -> PersistenceID {
        PersistenceID(
            entityType: Self.entityType,
            entityID: "\(connector)/\(processorIndex)/\(partition.topic)/\(partition.partition)")
    }

    /// Places a set in the changelog partition of its input partition (the last component of its id).
    static let placement: @Sendable (PersistenceID) -> Int32? = { id in
        guard id.entityType == entityType, let last = id.entityID.split(separator: "/").last else { return nil }
        return Int32(last)
    }

    /// Whether the record is a duplicate (see ``DedupeLog/isDuplicate(_:offset:now:)``).
    func isDuplicate(_ id: String, record: ConnectorRecord) async throws -> Bool {
        let partition = KafkaTopicPartition(topic: record.topic, partition: record.partition)
        if let error = refused.withLock({ $0[partition] }) { throw error }
        let task = logs.withLock { logs in
            if let existing = logs[partition] { return existing }
            let (persistenceID, journal, configuration) = (persistenceID(partition), journal, configuration)
            let recovering = Task { () throws -> DedupeLog in
                try await DedupeLog.recover(
                    persistenceID, journal: journal, window: configuration.window, maxIDs: configuration.maxIDs)
            }
            logs[partition] = recovering
            return recovering
        }
        let log: DedupeLog
        do {
            log = try await task.value
        } catch {
            // Let the next attempt (after the pipeline's restart) recover again.
            logs.withLock { if $0[partition] == task { $0[partition] = nil } }
            throw error
        }
        return try await log.isDuplicate(id, offset: record.offset)
    }

    /// Restores assigned partitions from a partitioned journal; a partition whose restore fails refuses its
    /// records (the pipeline fails, and its restart restores again).
    func assign(_ partitions: [KafkaTopicPartition]) async {
        guard let partitioned = journal as? any PartitionedJournal, !partitions.isEmpty else { return }
        do {
            try await partitioned.restore(partitions: partitions.map(\.partition))
            refused.withLock { refused in for partition in partitions { refused[partition] = nil } }
        } catch {
            refused.withLock { refused in for partition in partitions { refused[partition] = error } }
        }
    }

    /// Drops revoked partitions' sets (and releases them from a partitioned journal).
    func revoke(_ partitions: [KafkaTopicPartition]) {
        logs.withLock { logs in for partition in partitions { logs[partition] = nil } }
        (journal as? any PartitionedJournal)?.release(partitions: partitions.map(\.partition))
    }
}
