import Synchronization

/// The element-level implementations of Sluice's operators. `Source` and `Flow` expose them (see
/// `Source+Operators.swift` and `Flow+Operators.swift`).
extension StreamElements {
    func map<T: Sendable>(_ transform: @escaping @Sendable (Element) async throws -> T) -> StreamElements<T> {
        let upstream = self
        return .make {
            var iterator = upstream.makeAsyncIterator()
            return {
                guard let element = try await iterator.next() else { return nil }
                return try await transform(element)
            }
        }
    }

    func compactMap<T: Sendable>(_ transform: @escaping @Sendable (Element) async throws -> T?) -> StreamElements<T> {
        let upstream = self
        return .make {
            var iterator = upstream.makeAsyncIterator()
            return {
                while let element = try await iterator.next() {
                    if let transformed = try await transform(element) { return transformed }
                }
                return nil
            }
        }
    }

    func mapConcat<T: Sendable>(_ transform: @escaping @Sendable (Element) async throws -> [T]) -> StreamElements<T> {
        let upstream = self
        return .make {
            var iterator = upstream.makeAsyncIterator()
            var pending: [T] = []
            var index = 0
            return {
                while index >= pending.count {
                    guard let element = try await iterator.next() else { return nil }
                    pending = try await transform(element)
                    index = 0
                }
                defer { index += 1 }
                return pending[index]
            }
        }
    }

    func filter(_ isIncluded: @escaping @Sendable (Element) async throws -> Bool) -> StreamElements<Element> {
        compactMap { try await isIncluded($0) ? $0 : nil }
    }

    func take(_ count: Int) -> StreamElements<Element> {
        let upstream = self
        return .make {
            var iterator = upstream.makeAsyncIterator()
            var remaining = count
            return {
                guard remaining > 0 else { return nil }
                remaining -= 1
                return try await iterator.next()
            }
        }
    }

    func grouped(_ size: Int) -> StreamElements<[Element]> {
        precondition(size > 0, "grouped(_:) needs a size of at least 1")
        let upstream = self
        return .make {
            var iterator = upstream.makeAsyncIterator()
            return {
                var group: [Element] = []
                group.reserveCapacity(size)
                while group.count < size, let element = try await iterator.next() { group.append(element) }
                return group.isEmpty ? nil : group
            }
        }
    }

    func mapAsync<T: Sendable>(
        parallelism: Int, ordered: Bool, _ transform: @escaping @Sendable (Element) async throws -> T
    ) -> StreamElements<T> {
        precondition(parallelism > 0, "mapAsync needs a parallelism of at least 1")
        let upstream = self
        return .makeChunked {
            let window = AsyncWindow<T>(capacity: parallelism, ordered: ordered)
            let pump = WindowPump(window: window) {
                try await withThrowingDiscardingTaskGroup { group in
                    for try await element in upstream {
                        guard let slot = await window.reserve() else { return }
                        group.addTask {
                            do {
                                window.fill(slot, with: try await transform(element))
                            } catch {
                                // Fail downstream at once: the group's body may be waiting on a quiet upstream,
                                // and a group's failure does not cancel the task running its body.
                                window.fail(error)
                                throw error
                            }
                        }
                    }
                }
            }
            return { try await pump.nextChunk(maxCount: Swift.min(parallelism, windowChunkSize)) }
        }
    }

    func mapAsyncPartitioned<T: Sendable, Key: Hashable & Sendable>(
        parallelism: Int, partitionKey: @escaping @Sendable (Element) -> Key,
        _ transform: @escaping @Sendable (Element) async throws -> T
    ) -> StreamElements<T> {
        precondition(parallelism > 0, "mapAsyncPartitioned needs a parallelism of at least 1")
        let upstream = self
        return .makeChunked {
            let window = AsyncWindow<T>(capacity: parallelism, ordered: true)
            let chains = KeyChains<Key>()
            let pump = WindowPump(window: window) {
                try await withThrowingDiscardingTaskGroup { group in
                    for try await element in upstream {
                        guard let slot = await window.reserve() else { return }
                        let key = partitionKey(element)
                        let (previous, mine) = chains.append(key)
                        group.addTask {
                            defer { chains.done(key, mine) }
                            await previous?.wait()
                            do {
                                window.fill(slot, with: try await transform(element))
                            } catch {
                                window.fail(error)
                                throw error
                            }
                        }
                    }
                }
            }
            return { try await pump.nextChunk(maxCount: Swift.min(parallelism, windowChunkSize)) }
        }
    }

    func buffer(size: Int, overflow: OverflowStrategy) -> StreamElements<Element> {
        let upstream = self
        return .make {
            let pump = Pump<Element>(capacity: size) { channel in
                for try await element in upstream {
                    switch overflow.kind {
                    case .backpressure:
                        guard await channel.send(element) else { return }
                    case .dropHead:
                        if !channel.trySend(element) {
                            channel.withBuffer { buffer in
                                if buffer.count >= size { buffer.removeFirst() }
                                buffer.append(element)
                            }
                        }
                    case .dropTail:
                        if !channel.trySend(element) {
                            channel.withBuffer { buffer in
                                if buffer.count >= size { buffer.removeLast() }
                                buffer.append(element)
                            }
                        }
                    case .dropNew:
                        _ = channel.trySend(element)
                    case .fail:
                        if !channel.trySend(element) {
                            // Fail at once: what is still buffered is not passed on after an overflow.
                            channel.failDiscarding(StreamError.bufferOverflow(size: size))
                            return
                        }
                    }
                }
            }
            return { try await pump.next() }
        }
    }

    func merge(_ other: StreamElements<Element>, capacity: Int) -> StreamElements<Element> {
        let upstream = self
        return .make {
            let pump = Pump<Element>(capacity: capacity) { channel in
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for source in [upstream, other] {
                        group.addTask {
                            for try await element in source {
                                guard await channel.send(element) else { return }
                            }
                        }
                    }
                    try await group.waitForAll()
                }
            }
            return { try await pump.next() }
        }
    }

    func recover(_ handler: @escaping @Sendable (any Error) throws -> Element?) -> StreamElements<Element> {
        let upstream = self
        return .make {
            var iterator = upstream.makeAsyncIterator()
            var isDone = false
            return {
                guard !isDone else { return nil }
                do {
                    return try await iterator.next()
                } catch is CancellationError {
                    throw CancellationError()
                } catch {
                    isDone = true
                    return try handler(error)
                }
            }
        }
    }
}

/// A building block for custom parallel stages: runs the stage's producing loop in a background task (started on
/// the first pull, cancelled when the reader goes away) that fills an ``AsyncWindow``; the reader takes results.
public final class WindowPump<Element: Sendable>: @unchecked Sendable {
    // @unchecked Sendable: `handle` is only touched by `next()`, called from the stream's single reading task.
    private let window: AsyncWindow<Element>
    private let produce: @Sendable () async throws -> Void
    private var handle: TaskHandle?

    /// Creates a pump for `window`; `produce` reserves places and fills them, and returning ends the window.
    public init(window: AsyncWindow<Element>, produce: @escaping @Sendable () async throws -> Void) {
        self.window = window
        self.produce = produce
    }

    /// The next result; starts the producing loop on first call.
    public func next() async throws -> Element? {
        if handle == nil { start() }
        return try await window.next()
    }

    private func start() {
        let window = self.window
        let produce = self.produce
        handle = TaskHandle(
            Task {
                do {
                    try await produce()
                    window.finish()
                } catch {
                    window.fail(error)
                }
            })
    }

    /// The results ready now (at least one, at most `maxCount`), waiting for the first; starts the producing loop on
    /// first call.
    public func nextChunk(maxCount: Int) async throws -> [Element]? {
        if handle == nil { start() }
        return try await window.nextChunk(maxCount: maxCount)
    }
}

/// Results a windowed stage hands downstream at a time, at most (never more than its parallelism either): whatever is
/// ready when downstream asks, so results go on as soon as they are ready, in one hop for several.
public let windowChunkSize = 64

/// Per-key chains of work for ``StreamElements/mapAsyncPartitioned``: each element of a key waits for the one
/// before it. Finished chains are forgotten, so the map holds only keys with work in progress.
final class KeyChains<Key: Hashable & Sendable>: Sendable {
    private let lastByKey = Mutex<[Key: OneShotSignal]>([:])

    /// Registers a new element of `key`: returns the signal to wait for (the previous element's) and its own.
    func append(_ key: Key) -> (previous: OneShotSignal?, mine: OneShotSignal) {
        let mine = OneShotSignal()
        let previous = lastByKey.withLock { map in
            defer { map[key] = mine }
            return map[key]
        }
        return (previous, mine)
    }

    /// Marks an element done; forgets the key if no later element of it is waiting.
    func done(_ key: Key, _ signal: OneShotSignal) {
        signal.fire()
        lastByKey.withLock { map in
            if map[key] === signal { map[key] = nil }
        }
    }
}

/// A building block for custom stages: a signal that fires once; waiting after it fired returns at once.
public final class OneShotSignal: Sendable {
    private let state = Mutex<(fired: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    public init() {}

    /// Whether ``fire()`` was called.
    public var isFired: Bool { state.withLock { $0.fired } }

    /// Fires the signal: every waiter, present and future, goes on.
    public func fire() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.fired = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Returns once the signal fired.
    public func wait() async {
        await withCheckedContinuation { continuation in
            let fired = state.withLock { state in
                if !state.fired { state.waiters.append(continuation) }
                return state.fired
            }
            if fired { continuation.resume() }
        }
    }
}

/// What a ``Source/buffer(size:overflow:)`` stage does when its buffer is full.
public struct OverflowStrategy: Hashable, Sendable {
    enum Kind { case backpressure, dropHead, dropTail, dropNew, fail }
    let kind: Kind

    /// Stop pulling from upstream until there is room (the default everywhere in Sluice).
    public static let backpressure = OverflowStrategy(kind: .backpressure)
    /// Drop the oldest buffered element to make room.
    public static let dropHead = OverflowStrategy(kind: .dropHead)
    /// Drop the youngest buffered element to make room.
    public static let dropTail = OverflowStrategy(kind: .dropTail)
    /// Drop the incoming element.
    public static let dropNew = OverflowStrategy(kind: .dropNew)
    /// Fail the stream with ``StreamError/bufferOverflow(size:)``.
    public static let fail = OverflowStrategy(kind: .fail)
}

/// Errors raised by Sluice's stream operators.
public enum StreamError: Error, Hashable, Sendable, CustomStringConvertible {
    /// A `buffer(size:overflow: .fail)` stage was full when an element arrived.
    case bufferOverflow(size: Int)
    /// A kill switch aborted the stream without an error of its own.
    case aborted

    public var description: String {
        switch self {
        case .bufferOverflow(let size):
            "a buffer of \(size) elements overflowed (its overflow strategy is .fail): the stage downstream is slower "
                + "than upstream; raise the size or choose another overflow strategy"
        case .aborted: "the stream was aborted by its kill switch"
        }
    }
}
