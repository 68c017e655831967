import Foundation
import SluiceKafka
@_spi(Testing) import SluicePersistence
import SluiceTesting
import Synchronization
import Testing

/// A journal under test, with the storage-specific operations the shared suite needs.
///
/// Every journal implementation adds a case to ``JournalKind``; the shared suite (`JournalConformanceTests`) then
/// runs against it. The Kafka changelog journal creates unique topics in `make()`, reopens as a new journal instance
/// that restores from the topic in `reopen()`, and damages an event by producing an undecodable record at its key.
protocol JournalFixture: Sendable {
    /// The journal, open.
    var journal: any Journal { get }
    /// Closes the journal and opens the same storage again, as a restarted process would.
    func reopen() async throws -> any JournalFixture
    /// Damages a stored event as the storage could be damaged (bit rot, a bad record).
    func corruptEvent(of id: PersistenceID, sequenceNumber: Int64) async throws
    /// Closes the journal and deletes its storage.
    func destroy() async
}

/// The journal implementations the shared suite runs against.
enum JournalKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite
    case kafkaChangelog

    var testDescription: String { rawValue }

    func make() async throws -> any JournalFixture {
        switch self {
        case .sqlite: try await SQLiteFixture.make()
        case .kafkaChangelog: try await KafkaChangelogFixture.make()
        }
    }
}

/// Runs `body` with a fresh journal of `kind`, destroying it afterwards (also when `body` throws).
func withJournal(_ kind: JournalKind, _ body: (any JournalFixture) async throws -> Void) async throws {
    let fixture = try await kind.make()
    do {
        try await body(fixture)
    } catch {
        await fixture.destroy()
        throw error
    }
    await fixture.destroy()
}

/// A SQLite journal in a fresh temporary directory.
struct SQLiteFixture: JournalFixture {
    let directory: URL
    let sqlite: SQLiteJournal
    var journal: any Journal { sqlite }

    static func make(durability: SQLiteDurability = .full) async throws -> SQLiteFixture {
        let directory = try TemporaryDirectory.make()
        let journal = try await SQLiteJournal(
            path: directory.appendingPathComponent("journal.db").path, durability: durability)
        return SQLiteFixture(directory: directory, sqlite: journal)
    }

    func reopen() async throws -> any JournalFixture {
        try await reopenSQLite()
    }

    func reopenSQLite() async throws -> SQLiteFixture {
        await sqlite.close()
        return SQLiteFixture(directory: directory, sqlite: try await SQLiteJournal(path: sqlite.path))
    }

    func corruptEvent(of id: PersistenceID, sequenceNumber: Int64) async throws {
        try await sqlite.corruptEventForTesting(of: id, sequenceNumber: sequenceNumber)
    }

    func destroy() async {
        await sqlite.close()
        try? FileManager.default.removeItem(at: directory)
    }
}

/// A Kafka changelog journal on the test broker: a fresh input topic (3 partitions) and changelog topic per test,
/// every partition restored.
struct KafkaChangelogFixture: JournalFixture {
    let configuration: KafkaChangelogJournalConfiguration
    let changelog: KafkaChangelogJournal
    var journal: any Journal { changelog }

    /// Creates the input topic and opens a journal on a new changelog topic, restoring every partition.
    static func make(
        partitions: Int32 = 3, configure: (inout KafkaChangelogJournalConfiguration) -> Void = { _ in }
    ) async throws -> KafkaChangelogFixture {
        let admin = try await makeTestAdmin()
        let input = uniqueTestName("journal-input")
        try await admin.createTopic(KafkaTopicSpecification(name: input, partitions: partitions))
        var configuration = KafkaChangelogJournalConfiguration(
            bootstrapServers: try await TestBroker.bootstrapServers(), topic: uniqueTestName("journal-changelog"),
            inputTopic: input)
        configuration.linger = .milliseconds(1)
        configure(&configuration)
        return try await open(configuration)
    }

    /// Opens a journal instance on `configuration`'s topics and restores every partition.
    static func open(_ configuration: KafkaChangelogJournalConfiguration) async throws -> KafkaChangelogFixture {
        let journal = try await KafkaChangelogJournal(configuration)
        try await journal.restore(partitions: Array(0..<journal.partitionCount))
        return KafkaChangelogFixture(configuration: configuration, changelog: journal)
    }

    func reopen() async throws -> any JournalFixture {
        await changelog.close()
        return try await Self.open(configuration)
    }

    /// Produces a value that is not a changelog value at the event's key and partition, with a producer of its own
    /// (as another writer, or damage, would).
    func corruptEvent(of id: PersistenceID, sequenceNumber: Int64) async throws {
        let producer = try KafkaProducer(configuration: try await makeTestProducerConfiguration())
        _ = try await producer.send(
            KafkaProducerMessage(
                topic: changelog.topic, partition: changelog.partition(of: id),
                key: changelog.eventKeyForTesting(of: id, sequenceNumber: sequenceNumber),
                value: Array("not a changelog record".utf8)))
        try await producer.close()
    }

    /// Closes the journal. The topics stay (the test broker lives for one run; see `withTestTopic`).
    func destroy() async {
        await changelog.close()
    }
}

enum TemporaryDirectory {
    static func make() throws -> URL {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("sluice-persistence-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return directory
    }
}

/// Events `first...last` of a test entity, with payloads that say which they are.
func testEvents(_ id: PersistenceID, _ range: ClosedRange<Int64>, version: Int = 1) -> [JournalEvent] {
    range.map { JournalEvent(sequenceNumber: $0, manifest: "test-event", version: version, payload: payload(id, $0)) }
}

func payload(_ id: PersistenceID, _ sequenceNumber: Int64) -> [UInt8] {
    Array("\(id) #\(sequenceNumber)".utf8)
}

/// Runs `body`, which must throw a ``PersistenceError``, and returns it.
func persistenceError(_ body: () async throws -> Void) async -> PersistenceError? {
    do {
        try await body()
        return nil
    } catch let error as PersistenceError {
        return error
    } catch {
        Issue.record("expected a PersistenceError, got \(error)")
        return nil
    }
}

/// A test journal that forwards everything but what it overrides to another journal.
protocol ForwardingJournal: Journal {
    var inner: any Journal { get }
}

extension ForwardingJournal {
    var name: String { inner.name }
    func readEvents(of id: PersistenceID, from sequenceNumber: Int64, limit: Int) async throws(PersistenceError)
        -> [JournalEvent]
    { try await inner.readEvents(of: id, from: sequenceNumber, limit: limit) }
    func highestSequenceNumber(of id: PersistenceID) async throws(PersistenceError) -> Int64 {
        try await inner.highestSequenceNumber(of: id)
    }
    func saveSnapshot(_ snapshot: JournalSnapshot, for id: PersistenceID) async throws(PersistenceError) {
        try await inner.saveSnapshot(snapshot, for: id)
    }
    func loadSnapshot(of id: PersistenceID) async throws(PersistenceError) -> JournalSnapshot? {
        try await inner.loadSnapshot(of: id)
    }
    func inputOffsets(of id: PersistenceID) async throws(PersistenceError) -> [InputOffset] {
        try await inner.inputOffsets(of: id)
    }
    func close() async { await inner.close() }
}

/// A journal that delegates to another and fails appends once told to (a disk that fills up).
final class FailingJournal: ForwardingJournal {
    let inner: any Journal
    private let failing = LockedFlag()

    init(_ inner: any Journal) { self.inner = inner }

    func failAppends(_ fail: Bool) { failing.set(fail) }

    func append(_ append: JournalAppend) async throws(PersistenceError) {
        if failing.value {
            throw PersistenceError(
                .storageFailure, journal: name, persistenceID: append.persistenceID,
                sequenceNumber: append.events.first?.sequenceNumber, message: "injected failure: the disk is full")
        }
        try await inner.append(append)
    }
}

final class LockedFlag: Sendable {
    private let flag = Mutex(false)
    var value: Bool { flag.withLock { $0 } }
    func set(_ value: Bool) { flag.withLock { $0 = value } }
}
