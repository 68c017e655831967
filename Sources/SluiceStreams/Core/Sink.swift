/// A stage with one input: where a stream's elements end up. Running a stream means running its sink's loop,
/// which pulls (demands) elements one at a time.
public struct Sink<Input: Sendable, Materialized>: Sendable {
    let materializer: @Sendable (StreamElements<Input>) throws -> (StreamRun, Materialized)

    /// A sink from a materializer that makes, for each run, the loop that consumes `upstream` and the sink's
    /// materialized value.
    public init(materialize: @escaping @Sendable (StreamElements<Input>) throws -> (StreamRun, Materialized)) {
        self.materializer = materialize
    }

    /// Materializes the sink over `upstream`. Usually called by `run`.
    public func materialize(_ upstream: StreamElements<Input>) throws -> (StreamRun, Materialized) {
        try materializer(upstream)
    }

    /// Replaces the materialized value.
    public func mapMaterializedValue<M>(_ transform: @escaping @Sendable (Materialized) -> M) -> Sink<Input, M> {
        let materializer = self.materializer
        return Sink<Input, M> { upstream in
            let (run, value) = try materializer(upstream)
            return (run, transform(value))
        }
    }
}

/// The loop of a materialized stream: running it pulls elements through every stage until the source completes,
/// a stage fails, or the task running it is cancelled.
public struct StreamRun: Sendable {
    let body: @Sendable () async throws -> Void

    public init(_ body: @escaping @Sendable () async throws -> Void) { self.body = body }

    func callAsFunction() async throws { try await body() }
}

extension Sink {
    /// A sink that runs `body` over all elements; it completes when the stream does.
    public static func fromLoop<Value: Sendable>(
        _ body: @escaping @Sendable (StreamElements<Input>) async throws -> Value
    ) -> Sink<Input, StreamCompletion<Value>> where Materialized == StreamCompletion<Value> {
        Sink<Input, StreamCompletion<Value>> { upstream in
            let completion = StreamCompletion<Value>()
            let run = StreamRun {
                do {
                    completion.complete(.success(try await body(upstream)))
                } catch {
                    completion.complete(.failure(error))
                    throw error
                }
            }
            return (run, completion)
        }
    }

    /// Calls `action` for each element, in order; completes when the stream does.
    public static func foreach(
        _ action: @escaping @Sendable (Input) async throws -> Void
    ) -> Sink<Input, StreamCompletion<Void>> where Materialized == StreamCompletion<Void> {
        fromLoop { elements in
            for try await element in elements { try await action(element) }
        }
    }

    /// Drops every element; completes when the stream does.
    public static func ignore() -> Sink<Input, StreamCompletion<Void>> where Materialized == StreamCompletion<Void> {
        fromLoop { elements in
            for try await _ in elements {}
        }
    }

    /// Collects every element into an array (for tests and small, finite streams).
    public static func collect() -> Sink<Input, StreamCompletion<[Input]>> where Materialized == StreamCompletion<[Input]> {
        fromLoop { elements in
            var all: [Input] = []
            for try await element in elements { all.append(element) }
            return all
        }
    }

    /// Folds every element into an accumulator.
    public static func fold<Value: Sendable>(
        _ initial: Value, _ combine: @escaping @Sendable (Value, Input) async throws -> Value
    ) -> Sink<Input, StreamCompletion<Value>> where Materialized == StreamCompletion<Value> {
        fromLoop { elements in
            var value = initial
            for try await element in elements { value = try await combine(value, element) }
            return value
        }
    }

    /// Takes the first element, then cancels upstream; `nil` if the stream completed empty.
    public static func first() -> Sink<Input, StreamCompletion<Input?>> where Materialized == StreamCompletion<Input?> {
        fromLoop { elements in
            for try await element in elements { return element }
            return nil
        }
    }
}
