import Synchronization

/// Operators that depend on time. Each takes the clock to measure it with, so tests can drive time by hand.
extension StreamElements {
    func groupedWithin<C: Clock>(
        _ size: Int, within duration: Duration, clock: C
    ) -> StreamElements<[Element]> where C.Duration == Duration {
        precondition(size > 0, "groupedWithin needs a size of at least 1")
        let upstream = self
        return .make {
            let pump = Pump<Element>(capacity: size) { channel in
                for try await element in upstream {
                    guard await channel.send(element) else { return }
                }
            }
            return {
                pump.start()
                // The window opens with the group's first element.
                guard let first = try await pump.channel.receive() else { return nil }
                var group = [first]
                let deadline = clock.now.advanced(by: duration)
                while group.count < size {
                    switch try await pump.channel.receive(until: deadline, clock: clock) {
                    case .element(let element): group.append(element)
                    case .timedOut, .finished: return group
                    }
                }
                return group
            }
        }
    }

    func throttle<C: Clock>(
        elements: Int, per duration: Duration, maximumBurst: Int, clock: C
    ) -> StreamElements<Element> where C.Duration == Duration {
        precondition(elements > 0 && maximumBurst >= 1, "throttle needs elements > 0 and a burst of at least 1")
        let upstream = self
        let interval = duration / elements
        return .make {
            var iterator = upstream.makeAsyncIterator()
            // A token bucket: one token per `interval`, at most `maximumBurst` saved up.
            var tokens = maximumBurst
            var lastRefill = clock.now
            return {
                guard let element = try await iterator.next() else { return nil }
                while true {
                    let now = clock.now
                    let earned = Int(lastRefill.duration(to: now) / interval)
                    if earned > 0 {
                        tokens = Swift.min(maximumBurst, tokens + earned)
                        lastRefill = lastRefill.advanced(by: interval * earned)
                    }
                    if tokens > 0 {
                        tokens -= 1
                        return element
                    }
                    try await clock.sleep(until: lastRefill.advanced(by: interval), tolerance: nil)
                }
            }
        }
    }

    func batch<Batch: Sendable>(
        max: Int, seed: @escaping @Sendable (Element) -> Batch,
        aggregate: @escaping @Sendable (Batch, Element) -> Batch
    ) -> StreamElements<Batch> {
        precondition(max > 0, "batch needs a maximum of at least 1")
        let upstream = self
        return .make {
            let cell = ConflatingCell<Batch>(max: max)
            let handle = LazyTask()
            return {
                handle.startOnce {
                    do {
                        for try await element in upstream {
                            guard await cell.add(element, seed: seed, aggregate: aggregate) else { return }
                        }
                        cell.finish(nil)
                    } catch {
                        cell.finish(error)
                    }
                }
                return try await cell.take()
            }
        }
    }
}

/// Holds the batch being aggregated while downstream is busy (``StreamElements/batch``): upstream adds to it until
/// `max` elements are in it, then waits; downstream takes the whole batch at once.
final class ConflatingCell<Batch: Sendable>: Sendable {
    private struct State {
        var batch: Batch?
        var count = 0
        var isFinished = false
        var failure: (any Error)?
        var taker: CheckedContinuation<Void, Never>?
        var adder: CheckedContinuation<Void, Never>?
    }
    private let state = Mutex(State())

    private enum AddStep { case added(CheckedContinuation<Void, Never>?), full, closed }
    private enum TakeStep { case batch(Batch, CheckedContinuation<Void, Never>?), end, failed(any Error), wait }
    let max: Int

    init(max: Int) { self.max = max }

    /// Adds an element to the current batch, waiting while it is full. `false` if the cell was closed.
    func add<Element>(
        _ element: Element, seed: (Element) -> Batch, aggregate: (Batch, Element) -> Batch
    ) async -> Bool {
        while true {
            let step: AddStep = state.withLock { state in
                if state.isFinished { return .closed }
                if state.count >= max { return .full }
                state.batch = state.batch.map { aggregate($0, element) } ?? seed(element)
                state.count += 1
                return .added(state.taker.take())
            }
            switch step {
            case .added(let taker):
                taker?.resume()
                return true
            case .closed:
                return false
            case .full:
                if Task.isCancelled { return false }
                await withTaskCancellationHandler {
                    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                        let resumeNow = state.withLock { state in
                            if state.count < max || state.isFinished { return true }
                            state.adder = continuation
                            return false
                        }
                        if resumeNow { continuation.resume() }
                    }
                } onCancel: {
                    state.withLock { $0.adder.take() }?.resume()
                }
            }
        }
    }

    func finish(_ failure: (any Error)?) {
        let taker = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.isFinished = true
            state.failure = failure
            return state.taker.take()
        }
        taker?.resume()
    }

    /// Takes the current batch, waiting for one; `nil` at the end.
    func take() async throws -> Batch? {
        while true {
            let step: TakeStep = state.withLock { state in
                if let batch = state.batch {
                    state.batch = nil
                    state.count = 0
                    return .batch(batch, state.adder.take())
                }
                if let failure = state.failure { return .failed(failure) }
                if state.isFinished { return .end }
                return .wait
            }
            switch step {
            case .batch(let batch, let adder):
                adder?.resume()
                return batch
            case .end: return nil
            case .failed(let error): throw error
            case .wait:
                try Task.checkCancellation()
                await withTaskCancellationHandler {
                    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                        let resumeNow = state.withLock { state in
                            if state.batch != nil || state.isFinished { return true }
                            state.taker = continuation
                            return false
                        }
                        if resumeNow { continuation.resume() }
                    }
                } onCancel: {
                    state.withLock { $0.taker.take() }?.resume()
                }
            }
        }
    }
}

/// A building block for custom stages: a background task started on first use (from the stream's reading task)
/// and cancelled when its owner goes away.
public final class LazyTask: @unchecked Sendable {
    // @unchecked Sendable: only the stream's single reading task calls `startOnce`.
    private var handle: TaskHandle?

    public init() {}

    /// Starts `body` unless it was started already.
    public func startOnce(_ body: @escaping @Sendable () async -> Void) {
        guard handle == nil else { return }
        handle = TaskHandle(Task { await body() })
    }
}
