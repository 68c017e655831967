import Foundation
@_spi(Testing) import SluicePersistence
import SluiceTesting
import Synchronization
import Testing

/// The SQLite journal batches appends from many entities into one transaction.
@Suite struct GroupCommitTests {
    @Test func appendsQueuedWhileATransactionRunsShareTheNextOne() async throws {
        let fixture = try await SQLiteFixture.make()
        let journal = fixture.sqlite
        let entities = 500
        let before = journal.statistics

        // Hold the writer as if a long transaction were running, let every entity queue an append, then release it.
        journal.pauseWriterForTesting()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for entity in 0..<entities {
                group.addTask {
                    let id = PersistenceID(entityType: "group", entityID: "e\(entity)")
                    try await journal.append(JournalAppend(persistenceID: id, events: testEvents(id, 1...2)))
                }
            }
            try await Eventually.require("every append is queued") { journal.pendingOperationsForTesting == entities }
            journal.resumeWriterForTesting()
            try await group.waitForAll()
        }

        let after = journal.statistics
        #expect(after.appends - before.appends == entities)
        // 500 queued appends, at most 512 operations per transaction: one transaction.
        #expect(after.writeTransactions - before.writeTransactions == 1)
        for entity in [0, 250, 499] {
            let id = PersistenceID(entityType: "group", entityID: "e\(entity)")
            #expect(try await journal.readEvents(of: id, from: 1, limit: 10) == testEvents(id, 1...2))
        }
        await fixture.destroy()
    }

    @Test func aBatchLargerThanTheLimitIsSplitAndARejectedAppendDoesNotFailTheOthers() async throws {
        let directory = try TemporaryDirectory.make()
        var configuration = SQLiteJournalConfiguration(path: directory.appendingPathComponent("j.db").path)
        configuration.maxOperationsPerTransaction = 100
        let journal = try await SQLiteJournal(configuration)
        let conflicting = PersistenceID(entityType: "group", entityID: "conflict")
        try await journal.append(JournalAppend(persistenceID: conflicting, events: testEvents(conflicting, 1...1)))
        let before = journal.statistics

        journal.pauseWriterForTesting()
        let rejected = try await withThrowingTaskGroup(of: Bool.self) { group in
            for entity in 0..<250 {
                group.addTask {
                    let id = PersistenceID(entityType: "group", entityID: "e\(entity)")
                    try await journal.append(JournalAppend(persistenceID: id, events: testEvents(id, 1...1)))
                    return false
                }
            }
            group.addTask {
                // Stale: sequence number 1 exists already.
                do {
                    try await journal.append(
                        JournalAppend(persistenceID: conflicting, events: testEvents(conflicting, 1...1)))
                    return false
                } catch let error as PersistenceError where error.code == .sequenceConflict {
                    return true
                }
            }
            try await Eventually.require("every append is queued") { journal.pendingOperationsForTesting == 251 }
            journal.resumeWriterForTesting()
            return try await group.reduce(into: 0) { $0 += $1 ? 1 : 0 }
        }

        #expect(rejected == 1)
        let after = journal.statistics
        #expect(after.writeTransactions - before.writeTransactions == 3, "251 operations, 100 per transaction")
        #expect(after.appends - before.appends == 250, "the rejected append was rolled back alone")
        for entity in [0, 100, 249] {
            let id = PersistenceID(entityType: "group", entityID: "e\(entity)")
            #expect(try await journal.highestSequenceNumber(of: id) == 1)
        }
        await journal.close()
        try? FileManager.default.removeItem(at: directory)
    }

    /// The writer remembers each entity's highest sequence number instead of reading it before every append; what
    /// it remembers must be what is stored, also when the transaction that wrote it was rolled back and run again.
    @Test func sequenceChecksStayExactAcrossARolledBackTransaction() async throws {
        let fixture = try await SQLiteFixture.make()
        let journal = fixture.sqlite
        let entity = PersistenceID(entityType: "group", entityID: "remembered")
        let stale = PersistenceID(entityType: "group", entityID: "stale")
        try await journal.append(JournalAppend(persistenceID: stale, events: testEvents(stale, 1...1)))

        // One transaction: the entity's first append, then a stale append that fails and rolls the transaction back;
        // the batch runs again with a savepoint per write, storing the first append alone.
        journal.pauseWriterForTesting()
        async let first: Void = journal.append(JournalAppend(persistenceID: entity, events: testEvents(entity, 1...2)))
        try await Eventually.require("the first append is queued") { journal.pendingOperationsForTesting == 1 }
        let conflict = Task {
            try await journal.append(JournalAppend(persistenceID: stale, events: testEvents(stale, 1...1)))
        }
        try await Eventually.require("both appends are queued") { journal.pendingOperationsForTesting == 2 }
        journal.resumeWriterForTesting()
        try await first
        await #expect(throws: PersistenceError.self) { try await conflict.value }

        // Stored: events 1 and 2 of the entity. Appending 1 or 4 conflicts, 3 goes on.
        for wrong: Int64 in [1, 4] {
            let error = await #expect(throws: PersistenceError.self) {
                try await journal.append(
                    JournalAppend(persistenceID: entity, events: testEvents(entity, wrong...wrong)))
            }
            #expect(error?.code == .sequenceConflict)
        }
        try await journal.append(JournalAppend(persistenceID: entity, events: testEvents(entity, 3...3)))
        #expect(try await journal.highestSequenceNumber(of: entity) == 3)
        #expect(try await journal.readEvents(of: entity, from: 1, limit: 10).map(\.sequenceNumber) == [1, 2, 3])
        try await journal.append(JournalAppend(persistenceID: stale, events: testEvents(stale, 2...2)))
        await fixture.destroy()
    }

    /// A batch whose first attempt failed runs again with a savepoint per write; an append that failed in the first
    /// attempt only (because of a change the second attempt no longer has) is stored, and must be reported stored.
    @Test func anAppendThatFailedOnlyInTheFirstAttemptIsReportedStored() async throws {
        let fixture = try await SQLiteFixture.make()
        let journal = fixture.sqlite
        let id = PersistenceID(entityType: "group", entityID: "retried")

        journal.pauseWriterForTesting()
        // First attempt: a row at sequence number 1 appears just before the append, which then conflicts and fails
        // the attempt; the second attempt runs without that row.
        journal.queueFirstAttemptWriteForTesting(
            "INSERT INTO events (entity_type, entity_id, sequence_nr, manifest, version, payload, checksum) "
                + "VALUES ('group', 'retried', 1, 'x', 1, x'00', 0)")
        // This test is about SQLiteJournal's own `submit` (see `aJournalsOwnSubmitIsCalledWhateverTheClosure` for
        // why a call can miss it).
        let outcome = ReportedOutcome()
        journal.submit(JournalAppend(persistenceID: id, events: testEvents(id, 1...1)), completion: outcome.report)
        try await Eventually.require("both writes are queued") { journal.pendingOperationsForTesting == 2 }
        journal.resumeWriterForTesting()
        try await Eventually.require("the append is reported") { outcome.value != nil }

        let reported = outcome.value
        #expect((try? reported?.get()) != nil, "reported \(String(describing: reported))")
        #expect(try await journal.readEvents(of: id, from: 1, limit: 10) == testEvents(id, 1...1))
        await fixture.destroy()
    }

    @Test func freeRunningEntitiesShareTransactions() async throws {
        let fixture = try await SQLiteFixture.make()
        let journal = fixture.sqlite
        let entities = 50
        let appendsPerEntity: Int64 = 20
        let before = journal.statistics
        try await withThrowingTaskGroup(of: Void.self) { group in
            for entity in 0..<entities {
                group.addTask {
                    let id = PersistenceID(entityType: "free", entityID: "e\(entity)")
                    for sequenceNumber in 1...appendsPerEntity {
                        try await journal.append(
                            JournalAppend(persistenceID: id, events: testEvents(id, sequenceNumber...sequenceNumber)))
                    }
                }
            }
            try await group.waitForAll()
        }
        let after = journal.statistics
        let appends = after.appends - before.appends
        let transactions = after.writeTransactions - before.writeTransactions
        print("group commit: \(appends) appends from \(entities) concurrent entities in \(transactions) transactions")
        #expect(appends == entities * Int(appendsPerEntity))
        // Each entity waits for its append before the next, so up to 50 are queued at any time: while one
        // transaction commits (an fsync), the others queue for the next.
        #expect(transactions < appends)
        for entity in 0..<entities {
            let id = PersistenceID(entityType: "free", entityID: "e\(entity)")
            #expect(try await journal.readEvents(of: id, from: 1, limit: 100) == testEvents(id, 1...appendsPerEntity))
        }
        await fixture.destroy()
    }
}

/// What a submitted append's completion reported.
private final class ReportedOutcome: Sendable {
    private let state = Mutex<Result<Void, PersistenceError>?>(nil)
    var value: Result<Void, PersistenceError>? { state.withLock { $0 } }
    func report(_ error: PersistenceError?) { state.withLock { $0 = error.map { .failure($0) } ?? .success(()) } }
}
