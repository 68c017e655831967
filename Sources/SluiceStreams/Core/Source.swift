/// A stage with one output: where a stream's elements come from.
///
/// A `Source` is a blueprint: nothing runs until it is joined with a ``Sink`` and run. Each run materializes it
/// afresh, producing its elements and a materialized value (for Kafka sources, a control handle).
///
/// ```swift
/// let total = try await Source(1...100).map { $0 * 2 }.filter { $0 % 3 == 0 }
///     .runWith(Sink.fold(0, +)).value()
/// ```
public struct Source<Output: Sendable, Materialized>: Sendable {
    let materializer: @Sendable () throws -> (StreamElements<Output>, Materialized)

    /// A source from a materializer that makes its elements and materialized value for each run.
    public init(materialize: @escaping @Sendable () throws -> (StreamElements<Output>, Materialized)) {
        self.materializer = materialize
    }

    /// Materializes the source: its elements and its materialized value. Usually called by `run`.
    public func materialize() throws -> (StreamElements<Output>, Materialized) {
        try materializer()
    }

    /// Attaches a flow, keeping this source's materialized value.
    public func via<T, M>(_ flow: Flow<Output, T, M>) -> Source<T, Materialized> {
        viaMat(flow, Keep.left)
    }

    /// Attaches a flow, combining both materialized values.
    public func viaMat<T, M, Combined>(
        _ flow: Flow<Output, T, M>, _ combine: @escaping @Sendable (Materialized, M) -> Combined
    ) -> Source<T, Combined> {
        let materializer = self.materializer
        return Source<T, Combined> {
            let (elements, left) = try materializer()
            let (transformed, right) = try flow.materialize(elements)
            return (transformed, combine(left, right))
        }
    }

    /// Joins a sink, keeping this source's materialized value.
    public func to<M>(_ sink: Sink<Output, M>) -> RunnableGraph<Materialized> {
        toMat(sink, Keep.left)
    }

    /// Joins a sink, combining both materialized values.
    public func toMat<M, Combined>(
        _ sink: Sink<Output, M>, _ combine: @escaping @Sendable (Materialized, M) -> Combined
    ) -> RunnableGraph<Combined> {
        let materializer = self.materializer
        return RunnableGraph {
            let (elements, left) = try materializer()
            let (run, right) = try sink.materialize(elements)
            return (run, combine(left, right))
        }
    }

    /// Joins a sink and runs the stream, returning the sink's materialized value (usually its completion).
    @discardableResult
    public func runWith<M>(_ sink: Sink<Output, M>) throws -> M {
        try toMat(sink, Keep.right).run()
    }

    /// Replaces the materialized value.
    public func mapMaterializedValue<M>(_ transform: @escaping @Sendable (Materialized) -> M) -> Source<Output, M> {
        let materializer = self.materializer
        return Source<Output, M> {
            let (elements, value) = try materializer()
            return (elements, transform(value))
        }
    }
}

extension Source where Materialized == Void {
    /// A source emitting the elements of a sequence, then completing.
    public init<S: Sequence & Sendable>(_ elements: S) where S.Element == Output {
        self.init {
            let chunks = StreamElements<Output>.makeChunked {
                var iterator = elements.makeIterator()
                return {
                    var chunk: [Output] = []
                    while chunk.count < sequenceChunkSize, let element = iterator.next() {
                        if chunk.isEmpty { chunk.reserveCapacity(sequenceChunkSize) }
                        chunk.append(element)
                    }
                    return chunk.isEmpty ? nil : chunk
                }
            }
            return (chunks, ())
        }
    }

    /// A source emitting the elements of an async sequence (made afresh for each run).
    public static func fromAsyncSequence<S: AsyncSequence & Sendable>(_ sequence: S) -> Source
    where S.Element == Output {
        Source { (StreamElements(sequence), ()) }
    }

    /// A source emitting one element.
    public static func single(_ element: Output) -> Source { Source([element]) }

    /// A source that completes at once.
    public static func empty() -> Source { Source([]) }

    /// A source that fails at once with `error`.
    public static func failed(_ error: any Error) -> Source {
        Source { (StreamElements.make { { throw error } }, ()) }
    }

    /// A source that produces each element by calling `next` until it returns `nil`.
    public static func unfold<State: Sendable>(
        _ initial: State, _ next: @escaping @Sendable (State) async throws -> (State, Output)?
    ) -> Source {
        Source {
            (
                StreamElements.make {
                    var state: State? = initial
                    return {
                        guard let current = state, let (following, element) = try await next(current) else {
                            state = nil
                            return nil
                        }
                        state = following
                        return element
                    }
                }, ()
            )
        }
    }
}

/// Elements a sequence source hands out at a time: its elements cost nothing to make, so it may run ahead of demand.
let sequenceChunkSize = 32
