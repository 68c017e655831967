import SluiceKafka
import Synchronization

/// The changelog producer's delivery receiver: each append's records carry the append's tag, the index of a slot
/// that holds the append's ``DeliveryCollector`` until every record of it was reported. One lock per delivery batch,
/// no closure or allocation per record.
final class AppendDeliveries: KafkaDeliveryReceiver {
    private struct Entry {
        let collector: DeliveryCollector
        var remaining: Int
    }
    private struct State {
        var entries: [Entry?] = []
        var free: [Int] = []
    }
    private let state = Mutex(State())

    /// Takes an append of `records` records; send them with the returned tag.
    func add(_ collector: DeliveryCollector, records: Int) -> UInt64 {
        state.withLock { state in
            let entry = Entry(collector: collector, remaining: records)
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
        let collector = state.withLock { state in Self.count(tag, records: records, in: &state) }
        collector?.complete(records, failure: error)
    }

    func receiveDeliveries(_ deliveries: [KafkaDelivery]) {
        var reports: [(DeliveryCollector, String?)] = []
        reports.reserveCapacity(deliveries.count)
        state.withLock { state in
            for delivery in deliveries {
                guard let collector = Self.count(delivery.tag, records: 1, in: &state) else { continue }
                switch delivery.result {
                case .success: reports.append((collector, nil))
                case .failure(let error): reports.append((collector, "\(error)"))
                }
            }
        }
        for (collector, failure) in reports { collector.complete(1, failure: failure) }
    }

    /// Counts records of `tag` as done; frees its slot after its last record. Returns its collector.
    private static func count(_ tag: UInt64, records: Int, in state: inout State) -> DeliveryCollector? {
        let index = Int(tag)
        guard index < state.entries.count, var entry = state.entries[index] else { return nil }
        entry.remaining -= records
        if entry.remaining <= 0 {
            state.entries[index] = nil
            state.free.append(index)
        } else {
            state.entries[index] = entry
        }
        return entry.collector
    }
}

/// Counts the delivery reports of a group of records. When the last one arrived, with the first failure (or `nil`
/// when every record was acknowledged), it calls its completion or resumes whoever waits (``wait()``).
final class DeliveryCollector: Sendable {
    private struct State {
        var remaining: Int
        var failure: String?
        var waiter: CheckedContinuation<String?, Never>?
    }
    private let state: Mutex<State>
    private let completion: (@Sendable (String?) -> Void)?

    init(count: Int, completion: (@Sendable (String?) -> Void)? = nil) {
        state = Mutex(State(remaining: count))
        self.completion = completion
    }

    /// Counts `count` records as reported: acknowledged (`failure` nil) or failed, or never sent.
    func complete(_ count: Int, failure: String?) {
        let (finished, outcome, waiter) = state.withLock { state in
            let wasDone = state.remaining <= 0
            state.remaining -= count
            if state.failure == nil, let failure { state.failure = failure }
            let finished = !wasDone && state.remaining <= 0
            defer { if finished { state.waiter = nil } }
            return (finished, state.failure, finished ? state.waiter : nil)
        }
        guard finished else { return }
        completion?(outcome)
        waiter?.resume(returning: outcome)
    }

    /// The first failure, or `nil` once every record was acknowledged.
    func wait() async -> String? {
        await withCheckedContinuation { continuation in
            let done = state.withLock { state -> Bool in
                if state.remaining <= 0 { return true }
                state.waiter = continuation
                return false
            }
            if done { continuation.resume(returning: state.withLock { $0.failure }) }
        }
    }
}

