import SluiceKafka
import Synchronization

/// The changelog producer's delivery receiver: each append's records carry the append's tag, the index of a slot
/// that counts the append's reports and holds its completion until every record of it was reported. One lock per
/// delivery batch; no closure, object or lock per record, and none per append besides its completion.
final class AppendDeliveries: KafkaDeliveryReceiver {
    private struct Entry {
        let completion: @Sendable (String?) -> Void
        var remaining: Int
        /// The first record's failure, if one failed.
        var failure: String?
    }
    private struct State {
        var entries: [Entry?] = []
        var free: [Int] = []
    }
    private let state = Mutex(State())

    /// Takes an append of `records` records (at least one); send them with the returned tag. `completion` is called
    /// once, after the last record was reported, with the first failure (`nil` when every record was stored).
    func add(records: Int, completion: @escaping @Sendable (String?) -> Void) -> UInt64 {
        state.withLock { state in
            let entry = Entry(completion: completion, remaining: records)
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
        if let finished { finished.completion(finished.failure) }
    }

    func receiveDeliveries(_ deliveries: [KafkaDelivery]) {
        // Finished entries, not their completions, leave the lock: an array of closures would wrap each in a newly
        // allocated thunk.
        var finished: [Entry] = []
        state.withLock { state in
            for delivery in deliveries {
                let failure: String? =
                    switch delivery.result {
                    case .success: nil
                    case .failure(let error): "\(error)"
                    }
                if let done = Self.count(delivery.tag, records: 1, failure: failure, in: &state) { finished.append(done) }
            }
        }
        for entry in finished { entry.completion(entry.failure) }
    }

    /// Counts records of `tag` as reported; frees its slot after its last record and returns its entry (its
    /// completion, with the append's first failure).
    private static func count(_ tag: UInt64, records: Int, failure: String?, in state: inout State) -> Entry? {
        let index = Int(tag)
        guard index < state.entries.count, var entry = state.entries[index] else { return nil }
        entry.remaining -= records
        if entry.failure == nil { entry.failure = failure }
        guard entry.remaining <= 0 else {
            state.entries[index] = entry
            return nil
        }
        state.entries[index] = nil
        state.free.append(index)
        return entry
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
