import Foundation
@testable import SluicePersistence
import Synchronization
import Testing

/// A journal whose submitted appends wait until the test completes them.
final class ManualJournal: Journal {
    let name = "manual"
    private let state = Mutex<[(JournalAppend, @Sendable (PersistenceError?) -> Void)]>([])

    var submitted: [JournalAppend] { state.withLock { $0.map(\.0) } }

    /// Completes the oldest submitted append that is not completed yet.
    func completeNext(_ error: PersistenceError? = nil) {
        let completion = state.withLock { $0.isEmpty ? nil : $0.removeFirst().1 }
        completion?(error)
    }

    var pending: Int { state.withLock { $0.count } }

    func submit(_ append: JournalAppend, completion: @escaping @Sendable (PersistenceError?) -> Void) {
        state.withLock { $0.append((append, completion)) }
    }

    func append(_ append: JournalAppend) async throws(PersistenceError) { preconditionFailure("submit only") }
    func readEvents(of id: PersistenceID, from sequenceNumber: Int64, limit: Int) async throws(PersistenceError) -> [JournalEvent] { [] }
    func highestSequenceNumber(of id: PersistenceID) async throws(PersistenceError) -> Int64 { 0 }
    func saveSnapshot(_ snapshot: JournalSnapshot, for id: PersistenceID) async throws(PersistenceError) {}
    func loadSnapshot(of id: PersistenceID) async throws(PersistenceError) -> JournalSnapshot? { nil }
    func inputOffsets(of id: PersistenceID) async throws(PersistenceError) -> [InputOffset] { [] }
    func close() async {}
}

/// The order of an entity's writes and of what waits for them, without a real journal.
@Suite struct WriteQueueTests {
    static let id = PersistenceID(entityType: "counter", entityID: "a")

    static func append(_ sequenceNumber: Int64, offset: Int64, partition: Int32 = 0, snapshot: Bool = false) -> JournalAppend {
        JournalAppend(
            persistenceID: id,
            events: [JournalEvent(sequenceNumber: sequenceNumber, manifest: "e", version: 1, payload: [1])],
            inputOffset: InputOffset(topic: "in", partition: partition, offset: offset),
            snapshot: snapshot ? JournalSnapshot(sequenceNumber: sequenceNumber, manifest: "s", version: 1, payload: [2]) : nil)
    }

    final class Log: Sendable {
        private let entries = Mutex<[String]>([])
        func add(_ entry: String) { entries.withLock { $0.append(entry) } }
        var all: [String] { entries.withLock { $0 } }

        /// A write's completion that logs `name`, or `"<name> failed"`.
        func done(_ name: String) -> @Sendable (PersistenceError?) -> Void {
            { [self] error in add(error == nil ? name : "\(name) failed") }
        }
    }

    /// A journal's own `submit` is called, whatever the completion closure looks like: this closure once bound the
    /// call to the protocol extension's default, which appends in a task (`ManualJournal.append` traps).
    @Test func aJournalsOwnSubmitIsCalledWhateverTheClosure() {
        let journal = ManualJournal()
        let outcome = Mutex<Result<Void, PersistenceError>?>(nil)
        journal.submit(Self.append(1, offset: 0)) { error in
            outcome.withLock { $0 = error.map { .failure($0) } ?? .success(()) }
        }
        #expect(journal.pending == 1)
        journal.completeNext()
        #expect(outcome.withLock { $0 } != nil)
    }

    @Test func oneWriteInFlightLaterOnesMergedCompletionsInOrder() {
        let journal = ManualJournal()
        let failures = Log()
        let queue = WriteQueue(journal: journal) { failures.add("stopped") }
        let log = Log()
        queue.enqueue(Self.append(1, offset: 10), done: log.done("a"))
        queue.enqueue(nil, done: log.done("b (no write)"))
        queue.enqueue(Self.append(2, offset: 12), done: log.done("c"))
        queue.enqueue(Self.append(3, offset: 13), done: log.done("d"))
        // Only the first write is in flight; nothing is released before it is durable.
        #expect(journal.submitted.map { $0.events.map(\.sequenceNumber) } == [[1]])
        #expect(log.all.isEmpty)

        journal.completeNext()
        // a, then b (which waited for a), then c and d go out together as one append with the highest offset.
        #expect(log.all == ["a", "b (no write)"])
        #expect(journal.submitted.map { $0.events.map(\.sequenceNumber) } == [[2, 3]])
        #expect(journal.submitted.first?.inputOffset?.offset == 13)
        journal.completeNext()
        #expect(log.all == ["a", "b (no write)", "c", "d"])
        #expect(journal.pending == 0)

        // With nothing in flight, a command without a write completes at once.
        queue.enqueue(nil, done: log.done("e"))
        #expect(log.all.last == "e")
        #expect(failures.all.isEmpty)
    }

    @Test func writesOfAnotherPartitionOrAfterASnapshotAreNotMerged() {
        let journal = ManualJournal()
        let queue = WriteQueue(journal: journal) {}
        queue.enqueue(Self.append(1, offset: 1), done: { _ in })
        queue.enqueue(Self.append(2, offset: 2, snapshot: true), done: { _ in })
        queue.enqueue(Self.append(3, offset: 3), done: { _ in })
        queue.enqueue(Self.append(4, offset: 7, partition: 1), done: { _ in })
        journal.completeNext()
        // 2 ends its batch with its snapshot.
        #expect(journal.submitted.map { $0.events.map(\.sequenceNumber) } == [[2]])
        journal.completeNext()
        // 3 and 4 come from different input partitions: the append records one offset, so they are written apart.
        #expect(journal.submitted.map { $0.events.map(\.sequenceNumber) } == [[3]])
        journal.completeNext()
        #expect(journal.submitted.map { $0.events.map(\.sequenceNumber) } == [[4]])
        #expect(journal.submitted.first?.inputOffset == InputOffset(topic: "in", partition: 1, offset: 7))
    }

    @Test func aFailedWriteFailsEverythingBehindItAndStopsTheEntityOnce() {
        let journal = ManualJournal()
        let stops = Log()
        let queue = WriteQueue(journal: journal) { stops.add("stop") }
        let log = Log()
        queue.enqueue(Self.append(1, offset: 1), done: log.done("a"))
        queue.enqueue(Self.append(2, offset: 2), done: log.done("b"))
        queue.enqueue(nil, done: log.done("c"))
        journal.completeNext(PersistenceError(.storageFailure, journal: "manual", message: "disk full"))
        #expect(log.all == ["a failed", "b failed", "c failed"])
        #expect(stops.all == ["stop"])
        #expect(queue.failure != nil)
        // Nothing more is written; later commands fail at once.
        queue.enqueue(Self.append(3, offset: 3), done: log.done("d"))
        #expect(log.all.last == "d failed")
        #expect(journal.pending == 0)
        #expect(stops.all == ["stop"])
    }
}
