import DequeModule
import Foundation
import SluicePersistence

/// The deduplication set of one input partition, kept in a journal so that it survives restarts (and, with a
/// partitioned journal, moves with its partition).
///
/// Each id first seen is remembered with the offset of the message that carried it and the wall-clock time it was
/// seen. A later message with the id, within the window, is a duplicate; the *same* message delivered again (its
/// offset was not committed before a crash or rebalance) is not, so an at-least-once redelivery is never lost as
/// its own duplicate.
///
/// Writes are group-committed: ids seen while a write is in progress go together in the next one, as one journal
/// event. A check of a new id returns only once its write is durable, so a message passes (and may be committed)
/// only after its id is stored. Every 100 writes, the write carries a snapshot of the whole (pruned) set, so
/// recovery reads one snapshot and at most 99 events.
actor DedupeLog {
    struct Entry: Codable, Sendable, Equatable {
        /// The dedupe id.
        var id: String
        /// The offset of the message that first carried it.
        var offset: Int64
        /// When it was seen (milliseconds since 1970).
        var at: Int64
    }

    static let eventManifest = "sluice.dedupe.seen"
    static let snapshotManifest = "sluice.dedupe.set"
    static let snapshotEvery = 100

    let persistenceID: PersistenceID
    let journal: any Journal
    let windowMilliseconds: Int64
    let maxIDs: Int

    private var seen: [String: Entry] = [:]
    private var order = Deque<Entry>()
    private var sequenceNumber: Int64 = 0
    private var writesSinceSnapshot = 0
    private var pending: [Entry] = []
    private var waiters: [CheckedContinuation<PersistenceError?, Never>] = []
    private var isWriting = false
    private var failure: PersistenceError?

    private init(persistenceID: PersistenceID, journal: any Journal, window: Duration, maxIDs: Int) {
        self.persistenceID = persistenceID
        self.journal = journal
        self.windowMilliseconds = window.wholeMilliseconds
        self.maxIDs = max(maxIDs, 1)
    }

    /// Recovers the set from the journal: the latest snapshot, then the events after it.
    /// - Throws: ``PersistenceError`` when the journal fails or an event or snapshot cannot be decoded.
    static func recover(
        _ persistenceID: PersistenceID, journal: any Journal, window: Duration, maxIDs: Int
    ) async throws(PersistenceError) -> DedupeLog {
        let log = DedupeLog(persistenceID: persistenceID, journal: journal, window: window, maxIDs: maxIDs)
        try await log.load()
        return log
    }

    private func load() async throws(PersistenceError) {
        if let snapshot = try await journal.loadSnapshot(of: persistenceID) {
            for entry in try decode(snapshot.payload, sequenceNumber: snapshot.sequenceNumber, what: "snapshot") {
                remember(entry)
            }
            sequenceNumber = snapshot.sequenceNumber
        }
        while true {
            let events = try await journal.readEvents(of: persistenceID, from: sequenceNumber + 1, limit: 1000)
            for event in events {
                for entry in try decode(event.payload, sequenceNumber: event.sequenceNumber, what: "event") {
                    remember(entry)
                }
                sequenceNumber = event.sequenceNumber
            }
            if events.count < 1000 { break }
        }
        prune(now: Self.now())
    }

    /// Whether the message at `offset` carrying `id` is a duplicate of an earlier one within the window. A new id
    /// is stored before this returns `false`.
    /// - Throws: the journal's error when the id could not be stored (the log then refuses every check: the
    ///   connector's pipeline fails and its restart recovers a new log).
    func isDuplicate(_ id: String, offset: Int64, now: Int64 = DedupeLog.now()) async throws(PersistenceError) -> Bool {
        if let failure { throw failure }
        prune(now: now)
        if let entry = seen[id] { return entry.offset != offset }
        let entry = Entry(id: id, offset: offset, at: now)
        remember(entry)
        prune(now: now)  // within the bound again
        pending.append(entry)
        let error: PersistenceError? = await withCheckedContinuation { continuation in
            waiters.append(continuation)
            if !isWriting {
                isWriting = true
                Task { await self.writeLoop() }
            }
        }
        if let error { throw error }
        return false
    }

    /// Ids remembered now.
    var count: Int { seen.count }

    /// Writes pending ids, one journal event per round, until none are left.
    private func writeLoop() async {
        while !pending.isEmpty {
            let batch = pending
            let batchWaiters = waiters
            pending = []
            waiters = []
            let next = sequenceNumber + 1
            var error: PersistenceError?
            do throws(PersistenceError) {
                let event = JournalEvent(
                    sequenceNumber: next, manifest: Self.eventManifest, version: 1, payload: try encode(batch, next))
                var snapshot: JournalSnapshot?
                if writesSinceSnapshot + 1 >= Self.snapshotEvery {
                    snapshot = JournalSnapshot(
                        sequenceNumber: next, manifest: Self.snapshotManifest, version: 1,
                        payload: try encode(Array(order), next))
                }
                try await journal.append(JournalAppend(persistenceID: persistenceID, events: [event], snapshot: snapshot))
                sequenceNumber = next
                writesSinceSnapshot = snapshot == nil ? writesSinceSnapshot + 1 : 0
            } catch let failed {
                error = failed
            }
            if let error {
                // What was stored is unknown now: refuse everything until a new log recovers from the journal.
                failure = error
                for waiter in batchWaiters + waiters { waiter.resume(returning: error) }
                pending = []
                waiters = []
                isWriting = false
                return
            }
            for waiter in batchWaiters { waiter.resume(returning: nil) }
        }
        isWriting = false
    }

    private func remember(_ entry: Entry) {
        seen[entry.id] = entry
        order.append(entry)
    }

    /// Forgets ids older than the window, then the oldest beyond `maxIDs`.
    private func prune(now: Int64) {
        while let oldest = order.first, oldest.at + windowMilliseconds < now || order.count > maxIDs {
            order.removeFirst()
            if seen[oldest.id] == oldest { seen[oldest.id] = nil }
        }
    }

    private func encode(_ entries: [Entry], _ sequenceNumber: Int64) throws(PersistenceError) -> [UInt8] {
        do {
            return Array(try JSONEncoder().encode(entries))
        } catch {
            throw PersistenceError(
                .encodingFailed, journal: journal.name, persistenceID: persistenceID, sequenceNumber: sequenceNumber,
                message: "the deduplication ids could not be encoded: \(error)")
        }
    }

    private func decode(_ payload: [UInt8], sequenceNumber: Int64, what: String) throws(PersistenceError) -> [Entry] {
        do {
            return try JSONDecoder().decode([Entry].self, from: Data(payload))
        } catch {
            throw PersistenceError(
                what == "snapshot" ? .undecodableSnapshot : .undecodableEvent, journal: journal.name,
                persistenceID: persistenceID, sequenceNumber: sequenceNumber,
                message: "the deduplication \(what) cannot be decoded (\(error)); the state is damaged: delete the "
                    + "connector's state to start over with an empty set")
        }
    }

    /// Wall-clock milliseconds since 1970 (the window must survive restarts, so not a monotonic clock).
    static func now() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }
}
