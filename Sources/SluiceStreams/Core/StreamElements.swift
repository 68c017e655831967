/// The elements flowing out of a stage: a type-erased, `Sendable`, pull-based `AsyncSequence`.
///
/// Pulling is demand: a stage produces only when the stage after it asks for the next element, so a slow stage
/// slows everything upstream of it. Iterate it from one task.
public struct StreamElements<Element: Sendable>: AsyncSequence, Sendable {
    public typealias Failure = any Error
    let base: any AsyncSequence<Element, any Error> & Sendable

    /// Wraps any `Sendable` async sequence.
    public init<Base: AsyncSequence & Sendable>(_ base: Base) where Base.Element == Element {
        if let already = base as? StreamElements<Element> {
            self = already
        } else {
            self.base = ErasedFailure(base: base)
        }
    }

    /// Wraps a sequence that already fails with `any Error`, keeping its type visible (for fusion).
    init(erased base: any AsyncSequence<Element, any Error> & Sendable) {
        self.base = base
    }

    /// Pulls elements one at a time; from a stage that hands out chunks (``ChunkedElements``), it takes a chunk at a
    /// time and serves its elements from memory, so the asynchronous call through the type-erased stage is paid once
    /// per chunk, not once per element.
    public struct AsyncIterator: AsyncIteratorProtocol {
        private var base: (any AsyncIteratorProtocol<Element, any Error>)?
        private var nextChunkFunction: (() async throws -> [Element]?)?
        private var chunk: [Element] = []
        private var index = 0

        init(base: any AsyncIteratorProtocol<Element, any Error>) { self.base = base }
        init(chunks: @escaping () async throws -> [Element]?) { self.nextChunkFunction = chunks }

        public mutating func next() async throws -> Element? {
            if index < chunk.count {
                defer { index += 1 }
                return chunk[index]
            }
            guard let nextChunkFunction else { return try await base?.next() }
            guard let next = try await nextChunkFunction(), !next.isEmpty else {
                chunk = []
                index = 0
                return nil
            }
            chunk = next
            index = 1
            return next[0]
        }

        /// The elements still buffered, or else the next chunk (one element from a stage without chunks); `nil` at
        /// the end. For stages that work on several elements at a time.
        public mutating func nextChunk() async throws -> [Element]? {
            if index < chunk.count {
                defer {
                    chunk = []
                    index = 0
                }
                return index == 0 ? chunk : Array(chunk[index...])
            }
            guard let nextChunkFunction else { return try await base?.next().map { [$0] } }
            chunk = []
            index = 0
            guard let next = try await nextChunkFunction(), !next.isEmpty else { return nil }
            return next
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        if let chunked = base as? any ChunkedElements<Element> { return AsyncIterator(chunks: chunked.makeNextChunk()) }
        return AsyncIterator(base: base.makeAsyncIterator())
    }

    /// Whether the stage hands out chunks.
    var isChunked: Bool { base is any ChunkedElements<Element> }
}

/// A stage that can hand out its elements several at a time. ``StreamElements`` recognises it and pulls chunks.
protocol ChunkedElements<Element>: AsyncSequence, Sendable where Element: Sendable, Failure == any Error {
    /// A function returning the next chunk (never empty; `nil` at the end), made afresh for each iteration.
    func makeNextChunk() -> () async throws -> [Element]?
}

/// A chunked stage defined by a closure that makes its `nextChunk` function.
struct ClosureChunkElements<Element: Sendable>: ChunkedElements {
    typealias Failure = any Error
    let makeNextChunkFunction: @Sendable () -> (() async throws -> [Element]?)

    func makeNextChunk() -> () async throws -> [Element]? { makeNextChunkFunction() }

    /// Element by element, for whoever iterates the stage directly rather than through ``StreamElements``.
    func makeAsyncIterator() -> StreamElements<Element>.AsyncIterator {
        StreamElements<Element>.AsyncIterator(chunks: makeNextChunkFunction())
    }
}

/// Adapts any async sequence to one whose failure type is `any Error`.
private struct ErasedFailure<Base: AsyncSequence & Sendable>: AsyncSequence, Sendable {
    typealias Element = Base.Element
    typealias Failure = any Error
    let base: Base

    struct AsyncIterator: AsyncIteratorProtocol {
        var base: Base.AsyncIterator
        mutating func next() async throws -> Base.Element? { try await base.next() }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(base: base.makeAsyncIterator()) }
}

/// An async sequence defined by a closure that makes its iterator's `next` function: the building block of
/// Sluice's operators.
struct ClosureElements<Element: Sendable>: AsyncSequence, Sendable {
    typealias Failure = any Error
    let makeNext: @Sendable () -> (() async throws -> Element?)

    struct AsyncIterator: AsyncIteratorProtocol {
        let nextElement: () async throws -> Element?
        mutating func next() async throws -> Element? { try await nextElement() }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(nextElement: makeNext()) }
}

extension StreamElements {
    /// Elements produced by a `next` function made afresh for each iteration: the way to write a custom stage.
    /// The returned function is called from one task at a time; `nil` ends the stream.
    public static func make(_ makeNext: @escaping @Sendable () -> (() async throws -> Element?)) -> StreamElements {
        StreamElements(ClosureElements(makeNext: makeNext))
    }

    /// Elements produced several at a time by a `nextChunk` function made afresh for each iteration (for a stage
    /// that has several elements at hand at once, such as a batch read from Kafka). The function is called from one
    /// task at a time, only when the previous chunk was taken; it returns at least one element, or `nil` at the end.
    /// A chunk is taken from upstream before the stage downstream asked for every element in it: keep chunks small
    /// (tens of elements) so that the stream stays bounded.
    public static func makeChunked(
        _ makeNextChunk: @escaping @Sendable () -> (() async throws -> [Element]?)
    ) -> StreamElements {
        StreamElements(erased: ClosureChunkElements(makeNextChunkFunction: makeNextChunk))
    }
}
