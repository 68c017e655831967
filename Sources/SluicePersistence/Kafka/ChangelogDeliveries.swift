import SluiceKafka
import Synchronization

/// The changelog producer's delivery receiver: each append's records carry the append's tag, the index of a slot
/// that counts the append's reports and holds what the append waits with (`Pending`) until every record of it was
/// reported. One lock per delivery batch; no closure, object or lock per record. The appends a batch finished are
/// handed to `report` together, in the order their last records were reported, each with its first failure.
///
/// Not generic: librdkafka's poll thread calls it through the protocol, and a generic class's code would run
/// unspecialized there (each append copied through value witnesses, a retain of every reference it holds).
final class AppendDeliveries: KafkaDeliveryReceiver {
    typealias Pending = KafkaChangelogJournal.PendingAppend
    private struct Entry {
        /// Taken (moved out) when the append is reported.
        var pending: Pending?
        var remaining: Int
        /// The first record's failure, if one failed.
        var failure: String?

        /// Counts `records` more reports (keeping the first failure); whether they were the last.
        mutating func count(_ records: Int, failure: String?) -> Bool {
            remaining -= records
            if self.failure == nil { self.failure = failure }
            return remaining <= 0
        }
    }
    private struct State {
        var entries: [Entry?] = []
        var free: [Int] = []
    }
    private let state = Mutex(State())
    private let report: @Sendable ([(pending: Pending, failure: String?)]) -> Void

    /// - Parameter report: called on the producer's poll thread (or by ``abandon(_:records:error:)``'s caller) with
    ///   the appends whose last record was reported.
    init(report: @escaping @Sendable ([(pending: Pending, failure: String?)]) -> Void) {
        self.report = report
    }

    /// Takes an append of `records` records (at least one); send them with the returned tag. The append is
    /// reported once, after its last record was, with the first failure (`nil` when every record was stored).
    func add(records: Int, pending: consuming Pending) -> UInt64 {
        // Moved into the slot, not copied: what an append waits with holds references (a copy retains each).
        var incoming: Pending? = consume pending
        return state.withLock { state in
            let entry = Entry(pending: incoming.take()!, remaining: records)
            if let index = state.free.popLast() {
                state.entries[index] = entry
                return UInt64(index)
            }
            state.entries.append(entry)
            return UInt64(state.entries.count - 1)
        }
    }

    /// The last `records` records of the append `tag` will not be sent: they fail it.
    func abandon(_ tag: UInt64, records: Int, error: String) {
        let finished = state.withLock { state in Self.count(tag, records: records, failure: error, in: &state) }
        if let finished { report([finished]) }
    }

    func receiveDeliveries(_ deliveries: consuming [KafkaDelivery]) {
        var finished: [(pending: Pending, failure: String?)] = []
        state.withLock { state in
            // By index: each report is read in place; a `for` loop would copy it (retaining its topic name).
            for index in deliveries.indices {
                let failure: String? =
                    switch deliveries[index].result {
                    case .success: nil
                    case .failure(let error): "\(error)"
                    }
                if let done = Self.count(deliveries[index].tag, records: 1, failure: failure, in: &state) {
                    finished.append(done)
                }
            }
        }
        if !finished.isEmpty { report(finished) }
    }

    /// Counts records of `tag` as reported; frees its slot after its last record and returns what the append waits
    /// with and its first failure.
    private static func count(
        _ tag: UInt64, records: Int, failure: String?, in state: inout State
    ) -> (pending: Pending, failure: String?)? {
        // In place: an entry holds what its append waits with, and copying it out costs a retain and a release of
        // each of its references. Optional chaining mutates the slot where it is (comparing it with `nil`, or
        // taking the entry and reading its fields, copied it).
        let index = Int(tag)
        guard index < state.entries.count, state.entries[index]?.count(records, failure: failure) == true,
            let pending = state.entries[index]?.pending.take()
        else { return nil }
        let firstFailure = state.entries[index]?.failure ?? nil
        state.entries[index] = nil
        state.free.append(index)
        return (pending, firstFailure)
    }
}

/// Waits for an append's outcome in a task (the way of appends with a snapshot, and of appends that met a full
/// queue): ``AppendDeliveries`` reports it once, with the first failure or `nil`.
final class DeliveryOutcome: Sendable {
    private struct State {
        var outcome: String??
        var waiter: CheckedContinuation<String?, Never>?
    }
    private let state = Mutex(State())

    /// Records the outcome (the first failure, or `nil` when every record was stored) and resumes the waiter.
    func report(_ failure: String?) {
        let waiter = state.withLock { state in
            state.outcome = .some(failure)
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: failure)
    }

    /// The first failure, or `nil` once every record was stored.
    func wait() async -> String? {
        await withCheckedContinuation { continuation in
            let known: String?? = state.withLock { state in
                if let outcome = state.outcome { return .some(outcome) }
                state.waiter = continuation
                return .none
            }
            if let known { continuation.resume(returning: known) }
        }
    }
}
