/// A stage with one input and one output: a transformation of a stream.
///
/// Like ``Source``, a `Flow` is a blueprint, materialized afresh on each run.
public struct Flow<Input: Sendable, Output: Sendable, Materialized>: Sendable {
    let materializer: @Sendable (StreamElements<Input>) throws -> (StreamElements<Output>, Materialized)

    /// A flow from a materializer that turns upstream elements into downstream elements for each run.
    public init(
        materialize: @escaping @Sendable (StreamElements<Input>) throws -> (StreamElements<Output>, Materialized)
    ) {
        self.materializer = materialize
    }

    /// Materializes the flow over `upstream`. Usually called by `run`.
    public func materialize(_ upstream: StreamElements<Input>) throws -> (StreamElements<Output>, Materialized) {
        try materializer(upstream)
    }

    /// Attaches another flow, keeping this flow's materialized value.
    public func via<T, M>(_ next: Flow<Output, T, M>) -> Flow<Input, T, Materialized> {
        viaMat(next, Keep.left)
    }

    /// Attaches another flow, combining both materialized values.
    public func viaMat<T, M, Combined>(
        _ next: Flow<Output, T, M>, _ combine: @escaping @Sendable (Materialized, M) -> Combined
    ) -> Flow<Input, T, Combined> {
        let materializer = self.materializer
        return Flow<Input, T, Combined> { upstream in
            let (elements, left) = try materializer(upstream)
            let (transformed, right) = try next.materialize(elements)
            return (transformed, combine(left, right))
        }
    }

    /// Joins a sink, making a sink with this flow in front of it (keeping the flow's materialized value).
    public func to<M>(_ sink: Sink<Output, M>) -> Sink<Input, Materialized> {
        toMat(sink, Keep.left)
    }

    /// Joins a sink, combining both materialized values.
    public func toMat<M, Combined>(
        _ sink: Sink<Output, M>, _ combine: @escaping @Sendable (Materialized, M) -> Combined
    ) -> Sink<Input, Combined> {
        let materializer = self.materializer
        return Sink<Input, Combined> { upstream in
            let (elements, left) = try materializer(upstream)
            let (run, right) = try sink.materialize(elements)
            return (run, combine(left, right))
        }
    }

    /// Replaces the materialized value.
    public func mapMaterializedValue<M>(_ transform: @escaping @Sendable (Materialized) -> M) -> Flow<Input, Output, M> {
        let materializer = self.materializer
        return Flow<Input, Output, M> { upstream in
            let (elements, value) = try materializer(upstream)
            return (elements, transform(value))
        }
    }
}

extension Flow where Materialized == Void {
    /// A flow that passes elements through unchanged: the start of a reusable chain of operators.
    public init() where Input == Output {
        self.init { upstream in (upstream, ()) }
    }

    /// A flow from a function over the whole upstream sequence.
    public static func fromElements(
        _ transform: @escaping @Sendable (StreamElements<Input>) -> StreamElements<Output>
    ) -> Flow {
        Flow { upstream in (transform(upstream), ()) }
    }
}
