/// A source joined with a sink: ready to run.
public struct RunnableGraph<Materialized>: Sendable {
    let materializer: @Sendable () throws -> (StreamRun, Materialized)

    /// A graph from a materializer making the stream's loop and materialized value.
    public init(materialize: @escaping @Sendable () throws -> (StreamRun, Materialized)) {
        self.materializer = materialize
    }

    /// Starts the stream in a task of its own and returns its materialized value (a completion, a control, a
    /// kill switch...). Errors surface through the materialized completion.
    @discardableResult
    public func run() throws -> Materialized {
        let (loop, value) = try materializer()
        Task { try? await loop() }
        return value
    }

    /// Runs the stream in the calling task until it completes; cancelling that task cancels the stream.
    /// - Returns: the materialized value, once the stream has completed.
    /// - Throws: the error the stream failed with.
    public func runHere() async throws -> Materialized {
        let (loop, value) = try materializer()
        try await loop()
        return value
    }

    /// Replaces the materialized value.
    public func mapMaterializedValue<M>(_ transform: @escaping @Sendable (Materialized) -> M) -> RunnableGraph<M> {
        let materializer = self.materializer
        return RunnableGraph<M> {
            let (loop, value) = try materializer()
            return (loop, transform(value))
        }
    }
}
