import SluiceKafka
import Synchronization

/// The offsets of the envelopes a committable sink has in flight, by slot, and the receiver of their delivery
/// reports: each report takes its offset out of its slot and acknowledges it to the committer, a report batch at a
/// time.
///
/// There are at most `capacity` slots; ``reserve(upTo:)`` waits for a free one (the sink's backpressure). Slots come
/// back in whatever order the reports arrive, so they are kept on a free list rather than numbered in turn. The
/// receiver unregisters itself once the sink has stopped sending and every message it sent was reported.
final class OffsetsInFlight: KafkaDeliveryReceiver {
    private struct State {
        /// The offset waiting in each slot; `nil` for a free slot.
        var offsets: [CommittableOffset?] = []
        /// Slots given back, to be reused before new ones are made.
        var free: [UInt64] = []
        var inFlight = 0
        /// The first delivery failure (or failed commit): the sink fails with it.
        var failure: (any Error)?
        var isFinished = false
        var route: KafkaDeliveryRoute?
        /// The sink's task, waiting for a free slot or for the last report.
        var waiter: CheckedContinuation<Void, Never>?
        /// The task of ``watchForFailure()``, and whether it was told to stop.
        var failureWatcher: CheckedContinuation<Void, any Error>?
        var isWatching = true

        /// Keeps the first failure; returns the failure watcher to throw it to.
        mutating func fail(_ error: any Error) -> CheckedContinuation<Void, any Error>? {
            guard failure == nil else { return nil }
            failure = error
            return failureWatcher.take()
        }
    }

    private let capacity: Int
    private let committer: CommitBatcher
    private let unregister: @Sendable (KafkaDeliveryRoute) -> Void
    private let state = Mutex(State())

    init(capacity: Int, committer: CommitBatcher, unregister: @escaping @Sendable (KafkaDeliveryRoute) -> Void) {
        self.capacity = max(capacity, 1)
        self.committer = committer
        self.unregister = unregister
    }

    /// Remembers the route the receiver was registered as, to unregister it when done.
    func registered(as route: KafkaDeliveryRoute) {
        state.withLock { $0.route = route }
    }

    /// Waits for at least one free slot and takes as many as are free, up to `count`.
    /// - Throws: the first delivery failure, or `CancellationError`.
    func reserve(upTo count: Int) async throws -> [UInt64] {
        try await waitUntil { state in state.inFlight < capacity }
        return state.withLock { state in
            let taken = min(count, capacity - state.inFlight)
            var slots: [UInt64] = []
            slots.reserveCapacity(taken)
            while slots.count < taken {
                if let slot = state.free.popLast() {
                    slots.append(slot)
                } else {
                    slots.append(UInt64(state.offsets.count))
                    state.offsets.append(nil)
                }
            }
            state.inFlight += taken
            return slots
        }
    }

    /// Puts offsets in reserved slots, under one lock: `body` calls `expect` with each slot and its offset.
    func expect(_ body: (_ expect: (_ slot: UInt64, _ offset: CommittableOffset) -> Void) -> Void) {
        state.withLock { state in
            body { slot, offset in state.offsets[Int(slot)] = offset }
        }
    }

    func receiveDeliveries(_ deliveries: consuming [KafkaDelivery]) {
        let reports = consume deliveries
        settle(reports.count) { settle in
            for report in reports { settle(report.tag, report.result.error) }
        }
    }

    /// Reports the outcome of the envelope in `slot` (a multi-message or pass-through-only envelope).
    func settle(_ slot: UInt64, _ result: Result<Void, KafkaError>) {
        settle(1) { settle in settle(slot, result.error) }
    }

    /// Gives up the slot of an envelope that was not sent after all.
    func abandon(_ slot: UInt64) {
        let (waiter, done) = state.withLock { state in
            if state.offsets[Int(slot)].take() != nil { Self.release(slot, &state) }
            return (state.waiter.take(), Self.routeIfDone(&state))
        }
        waiter?.resume()
        if let done { unregister(done) }
    }

    /// Waits until every slot was reported, then stops sending (``stopSending()``).
    /// - Throws: the first delivery failure, or `CancellationError`.
    func finish() async throws {
        try await waitUntil { $0.inFlight == 0 }
        stopSending()
    }

    /// The sink sends no more (it finished, failed or was cancelled): the receiver unregisters once the reports of
    /// what was sent are in (at once if they are).
    func stopSending() {
        let done = state.withLock { state in
            state.isFinished = true
            return Self.routeIfDone(&state)
        }
        if let done { unregister(done) }
    }

    /// Takes the offsets of `count` reported slots out of their slots under one lock (`body` calls `settle` with
    /// each slot and its failure, if any), then acknowledges the delivered ones to the committer.
    private func settle(_ count: Int, _ body: (_ settle: (_ slot: UInt64, _ failure: KafkaError?) -> Void) -> Void) {
        var delivered: [CommittableOffset] = []
        delivered.reserveCapacity(count)
        var watcher: CheckedContinuation<Void, any Error>?
        let (waiter, done) = state.withLock { state in
            body { slot, failure in
                // An abandoned slot's report (a multi-message envelope that was sent only in part) is ignored.
                guard let offset = state.offsets[Int(slot)].take() else { return }
                Self.release(slot, &state)
                if let failure {
                    watcher = state.fail(failure) ?? watcher
                } else {
                    delivered.append(offset)
                }
            }
            return (state.waiter.take(), Self.routeIfDone(&state))
        }
        do {
            _ = try committer.acknowledge(delivered)
        } catch {
            watcher = state.withLock { $0.fail(error) } ?? watcher
        }
        waiter?.resume()
        if let watcher, let failure = state.withLock({ $0.failure }) { watcher.resume(throwing: failure) }
        if let done { unregister(done) }
    }

    /// Throws the first delivery failure (or failed commit) as soon as there is one; returns once
    /// ``stopWatching()`` was called or the calling task is cancelled. The sink races it against its sending, so
    /// that a failure fails the sink even while it waits for upstream.
    func watchForFailure() async throws {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let now: Result<Void, any Error>? = state.withLock { state in
                    if let failure = state.failure { return .failure(failure) }
                    if !state.isWatching || Task.isCancelled { return .success(()) }
                    state.failureWatcher = continuation
                    return nil
                }
                if let now { continuation.resume(with: now) }
            }
        } onCancel: {
            state.withLock { $0.failureWatcher.take() }?.resume()
        }
    }

    /// Ends ``watchForFailure()`` without a failure.
    func stopWatching() {
        state.withLock { state in
            state.isWatching = false
            return state.failureWatcher.take()
        }?.resume()
    }

    /// Waits (woken by every report) until `condition` holds.
    private func waitUntil(_ condition: (borrowing State) -> Bool) async throws {
        while true {
            let ready: Bool = try state.withLock { state in
                if let failure = state.failure { throw failure }
                return condition(state)
            }
            if ready { return }
            try Task.checkCancellation()
            await withTaskCancellationHandler {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let resumeNow = state.withLock { state in
                        if state.failure != nil || condition(state) || Task.isCancelled { return true }
                        state.waiter = continuation
                        return false
                    }
                    if resumeNow { continuation.resume() }
                }
            } onCancel: {
                state.withLock { $0.waiter.take() }?.resume()
            }
        }
    }

    private static func release(_ slot: UInt64, _ state: inout State) {
        state.free.append(slot)
        state.inFlight -= 1
    }

    /// The route to unregister, once: when the sink has stopped sending and nothing is in flight.
    private static func routeIfDone(_ state: inout State) -> KafkaDeliveryRoute? {
        guard state.isFinished, state.inFlight == 0 else { return nil }
        return state.route.take()
    }
}

extension Result {
    /// The failure, if any.
    fileprivate var error: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}
