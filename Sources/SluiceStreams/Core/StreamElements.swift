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

    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: any AsyncIteratorProtocol<Element, any Error>

        public mutating func next() async throws -> Element? {
            try await base.next()
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(base: base.makeAsyncIterator())
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
}
