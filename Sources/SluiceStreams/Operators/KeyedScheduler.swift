import DequeModule
import Synchronization

extension StreamElements {
    /// See ``Flow/mapAsyncPartitionedUnordered(parallelism:bufferSize:partitionKey:_:)``.
    func mapAsyncPartitionedUnordered<T: Sendable, Key: Hashable & Sendable>(
        parallelism: Int, bufferSize: Int, partitionKey: @escaping @Sendable (Element) -> Key,
        _ transform: @escaping @Sendable (Element) async throws -> T
    ) -> StreamElements<T> {
        precondition(parallelism > 0 && bufferSize > 0, "mapAsyncPartitionedUnordered needs a parallelism and buffer size of at least 1")
        let upstream = self
        return .make {
            let pump = Pump<T>(capacity: parallelism) { channel in
                let scheduler = KeyedScheduler<Element, Key>(parallelism: parallelism, bufferSize: bufferSize)
                try await withThrowingDiscardingTaskGroup { group in
                    for try await element in upstream {
                        guard await scheduler.waitForRoom() else { return }
                        guard let key = scheduler.enqueue(element, key: partitionKey(element)) else { continue }
                        group.addTask {
                            var current = key
                            do {
                                while true {
                                    while let next = scheduler.take(current) {
                                        let result = try await transform(next)
                                        guard await channel.send(result) else { return }
                                        scheduler.emitted()
                                    }
                                    guard let other = scheduler.finished(current) else { return }
                                    current = other
                                }
                            } catch {
                                // Fail downstream at once (the body may be waiting on a quiet upstream).
                                channel.fail(error)
                                scheduler.cancel()
                                throw error
                            }
                        }
                    }
                }
            }
            return { try await pump.next() }
        }
    }
}

/// Which keys may run: at most `parallelism` at once, one element at a time each, in arrival order per key; at most
/// `bufferSize` elements accepted and not yet emitted (waiting for their key, running, or being sent downstream).
final class KeyedScheduler<Element: Sendable, Key: Hashable & Sendable>: Sendable {
    private struct State {
        var queues: [Key: Deque<Element>] = [:]
        var runnable: Deque<Key> = []
        var active = 0
        var accepted = 0
        var roomWaiter: CheckedContinuation<Bool, Never>?
        var isCancelled = false
    }
    private let state = Mutex(State())
    private let parallelism: Int
    private let bufferSize: Int

    init(parallelism: Int, bufferSize: Int) {
        self.parallelism = parallelism
        self.bufferSize = bufferSize
    }

    /// Waits until fewer than `bufferSize` elements are accepted; `false` when cancelled.
    func waitForRoom() async -> Bool {
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let immediate: Bool? = state.withLock { state in
                    if state.isCancelled || Task.isCancelled { return false }
                    if state.accepted < bufferSize { return true }
                    state.roomWaiter = continuation
                    return nil
                }
                if let immediate { continuation.resume(returning: immediate) }
            }
        } onCancel: {
            cancel()
        }
    }

    /// Accepts an element; returns its key when a new worker must start for it.
    func enqueue(_ element: Element, key: Key) -> Key? {
        state.withLock { state in
            state.accepted += 1
            if state.queues[key] != nil {
                state.queues[key]!.append(element)
                return nil
            }
            state.queues[key] = [element]
            if state.active < parallelism {
                state.active += 1
                return key
            }
            state.runnable.append(key)
            return nil
        }
    }

    /// The next element of `key`, or `nil` when its queue is empty.
    func take(_ key: Key) -> Element? {
        state.withLock { $0.queues[key]?.popFirst() }
    }

    /// An element was sent downstream: room for one more.
    func emitted() {
        let waiter = state.withLock { state -> CheckedContinuation<Bool, Never>? in
            state.accepted -= 1
            return state.accepted < bufferSize ? state.roomWaiter.take() : nil
        }
        waiter?.resume(returning: true)
    }

    /// `key` has nothing more for now: returns the next waiting key for the same worker, or `nil` (worker ends).
    func finished(_ key: Key) -> Key? {
        state.withLock { state in
            if let queue = state.queues[key], !queue.isEmpty { return key }
            state.queues[key] = nil
            if let next = state.runnable.popFirst() { return next }
            state.active -= 1
            return nil
        }
    }

    func cancel() {
        let waiter = state.withLock { state -> CheckedContinuation<Bool, Never>? in
            state.isCancelled = true
            return state.roomWaiter.take()
        }
        waiter?.resume(returning: false)
    }
}
