import DequeModule
import Synchronization

/// A building block for custom parallel stages.
///
/// The bounded set of elements a parallel stage (mapAsync and friends) has in progress or finished but not yet
/// taken downstream. Reserving a place waits while `capacity` places are taken, which is how the stage limits its
/// parallelism and stays bounded. Results come out in reservation order (ordered) or completion order.
public final class AsyncWindow<Element: Sendable>: Sendable {
    private struct State {
        var issued: UInt64 = 0
        var consumed: UInt64 = 0
        /// Ordered: a place per reserved sequence number not yet taken, from `consumed` on (empty until filled).
        var places = SlotRing<Element>()
        /// Unordered: results in completion order.
        var completed = SlotRing<Element>()
        var isFinished = false
        var failure: (any Error)?
        var reader: CheckedContinuation<Void, Never>?
        var reservers = Deque<CheckedContinuation<Void, Never>>()
    }

    /// At most this many places (in progress plus finished but not taken).
    public let capacity: Int
    /// Whether results come out in reservation order.
    public let isOrdered: Bool
    private let state = Mutex(State())

    private enum ChunkStep { case elements([Element], [CheckedContinuation<Void, Never>]), end, failed(any Error), wait }

    /// Creates a window of `capacity` places.
    public init(capacity: Int, ordered: Bool) {
        self.capacity = max(capacity, 1)
        self.isOrdered = ordered
    }

    /// Waits for a free place and returns its sequence number; `nil` if the window was closed meanwhile.
    public func reserve() async -> UInt64? {
        await reserve(upTo: 1)?.lowerBound
    }

    /// Waits for at least one free place and reserves as many as are free, up to `count` (at least 1): consecutive
    /// sequence numbers; `nil` if the window was closed meanwhile.
    public func reserve(upTo count: Int) async -> Range<UInt64>? {
        while true {
            let reserved: Range<UInt64>?? = state.withLock { state in
                if state.isFinished || state.failure != nil { return .some(nil) }
                let free = UInt64(capacity) - (state.issued - state.consumed)
                if free > 0 {
                    let taken = min(free, UInt64(max(count, 1)))
                    defer { state.issued += taken }
                    if isOrdered { for _ in 0..<taken { state.places.append(nil) } }
                    return .some(state.issued..<(state.issued + taken))
                }
                return nil
            }
            if let reserved { return reserved }
            if Task.isCancelled { return nil }
            await withTaskCancellationHandler {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let resumeNow = state.withLock { state in
                        if state.isFinished || state.failure != nil || state.issued - state.consumed < UInt64(capacity) {
                            return true
                        }
                        state.reservers.append(continuation)
                        return false
                    }
                    if resumeNow { continuation.resume() }
                }
            } onCancel: {
                let waiters = state.withLock { state in
                    defer { state.reservers.removeAll() }
                    return Array(state.reservers)
                }
                for waiter in waiters { waiter.resume() }
            }
        }
    }

    /// Stores the result for a reserved place (moved in, not copied).
    public func fill(_ sequence: UInt64, with element: consuming Element) {
        var incoming: Element? = consume element
        let reader = state.withLock { state -> CheckedContinuation<Void, Never>? in
            place(incoming.take()!, at: sequence, in: &state) ? state.reader.take() : nil
        }
        reader?.resume()
    }

    /// Stores the results of several reserved places under one lock, waking the reader at most once.
    ///
    /// `produce` runs under the window's lock and calls `place` once per result: a reserved sequence number and its
    /// result, moved into its place rather than copied (a copy would retain every reference the result holds). It
    /// must not use the window itself.
    public func fill(_ produce: (_ place: (_ sequence: UInt64, _ element: consuming Element) -> Void) -> Void) {
        let reader = state.withLock { state -> CheckedContinuation<Void, Never>? in
            var readerReady = false
            produce { sequence, element in
                if place(consume element, at: sequence, in: &state) { readerReady = true }
            }
            return readerReady ? state.reader.take() : nil
        }
        reader?.resume()
    }

    /// Stores a result (under the lock); returns whether it makes a result ready for the reader.
    @inline(__always)
    private func place(_ element: consuming Element, at sequence: UInt64, in state: inout State) -> Bool {
        guard isOrdered else {
            state.completed.append(consume element)
            return true
        }
        guard sequence >= state.consumed, sequence - state.consumed < UInt64(state.places.count) else {
            return false  // not reserved, or taken already: ignored
        }
        state.places.put(consume element, at: Int(sequence - state.consumed))
        // The reader waits for the head only: a later place filled first does not make it ready.
        return sequence == state.consumed
    }

    /// No more reservations will come: the reader gets the outstanding results, then the end.
    public func finish() {
        let reader = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.isFinished = true
            return state.reader.take()
        }
        reader?.resume()
    }

    /// Fails the window: the reader's next call throws `error`.
    public func fail(_ error: any Error) {
        let (reader, reservers) = state.withLock { state -> (CheckedContinuation<Void, Never>?, [CheckedContinuation<Void, Never>]) in
            if state.failure == nil { state.failure = error }
            defer { state.reservers.removeAll() }
            return (state.reader.take(), Array(state.reservers))
        }
        reader?.resume()
        for reserver in reservers { reserver.resume() }
    }

    /// The next result (in order, or as completed); `nil` at the end.
    public func next() async throws -> Element? {
        try await nextChunk(maxCount: 1)?.first
    }

    /// The results ready now (at least one, at most `maxCount`; waiting for the first), in order or as completed;
    /// `nil` at the end. One lock for all of them.
    public func nextChunk(maxCount: Int) async throws -> [Element]? {
        while true {
            let step: ChunkStep = state.withLock { state in
                if let failure = state.failure { return .failed(failure) }
                var elements: [Element] = []
                if isOrdered {
                    // Results are moved out of their places (removeFirst), not copied, up to the first place not
                    // filled yet.
                    while elements.count < maxCount, state.places.isFirstFilled,
                        let element = state.places.removeFirst()
                    {
                        elements.append(element)
                    }
                } else {
                    while elements.count < maxCount, let element = state.completed.removeFirst() {
                        elements.append(element)
                    }
                }
                if !elements.isEmpty {
                    state.consumed += UInt64(elements.count)
                    var reservers: [CheckedContinuation<Void, Never>] = []
                    while reservers.count < elements.count, let reserver = state.reservers.popFirst() {
                        reservers.append(reserver)
                    }
                    return .elements(elements, reservers)
                }
                if state.isFinished && state.consumed == state.issued { return .end }
                return .wait
            }
            switch step {
            case .elements(let elements, let reservers):
                for reserver in reservers { reserver.resume() }
                return elements
            case .end:
                return nil
            case .failed(let error):
                throw error
            case .wait:
                try Task.checkCancellation()
                await withTaskCancellationHandler {
                    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                        let resumeNow = state.withLock { state in
                            let ready =
                                state.failure != nil || (state.isFinished && state.consumed == state.issued)
                                || (isOrdered ? state.places.isFirstFilled : !state.completed.isEmpty)
                            if ready { return true }
                            state.reader = continuation
                            return false
                        }
                        if resumeNow { continuation.resume() }
                    }
                } onCancel: {
                    state.withLock { $0.reader.take() }?.resume()
                }
            }
        }
    }
}
