/// The same operators on flows, so chains of operators can be built and reused apart from any source.
extension Flow {
    func transformed<T>(_ transform: @escaping @Sendable (StreamElements<Output>) -> StreamElements<T>) -> Flow<Input, T, Materialized> {
        let materializer = self.materializer
        return Flow<Input, T, Materialized> { upstream in
            let (elements, value) = try materializer(upstream)
            return (transform(elements), value)
        }
    }

    /// Transforms each element.
    public func map<T: Sendable>(_ transform: @escaping @Sendable (Output) async throws -> T) -> Flow<Input, T, Materialized> {
        transformed { $0.map(transform) }
    }

    /// Passes on only the elements for which `isIncluded` is true.
    public func filter(_ isIncluded: @escaping @Sendable (Output) async throws -> Bool) -> Flow<Input, Output, Materialized> {
        transformed { $0.filter(isIncluded) }
    }

    /// Transforms each element, dropping those that become `nil`.
    public func compactMap<T: Sendable>(_ transform: @escaping @Sendable (Output) async throws -> T?) -> Flow<Input, T, Materialized> {
        transformed { $0.compactMap(transform) }
    }

    /// Turns each element into zero or more elements, passed on in order.
    public func mapConcat<T: Sendable>(_ transform: @escaping @Sendable (Output) async throws -> [T]) -> Flow<Input, T, Materialized> {
        transformed { $0.mapConcat(transform) }
    }

    /// Passes on the first `count` elements, then completes (cancelling upstream).
    public func take(_ count: Int) -> Flow<Input, Output, Materialized> {
        transformed { $0.take(count) }
    }

    /// Runs `transform` on up to `parallelism` elements at once and emits the results in upstream order.
    public func mapAsync<T: Sendable>(parallelism: Int, _ transform: @escaping @Sendable (Output) async throws -> T) -> Flow<Input, T, Materialized> {
        transformed { $0.mapAsync(parallelism: parallelism, ordered: true, transform) }
    }

    /// Runs `transform` on up to `parallelism` elements at once and emits the results as they complete.
    public func mapAsyncUnordered<T: Sendable>(parallelism: Int, _ transform: @escaping @Sendable (Output) async throws -> T) -> Flow<Input, T, Materialized> {
        transformed { $0.mapAsync(parallelism: parallelism, ordered: false, transform) }
    }

    /// Runs `transform` on up to `parallelism` elements at once, one at a time per partition key (ordered per key, parallel across keys), and emits the results in upstream order.
    public func mapAsyncPartitioned<T: Sendable, Key: Hashable & Sendable>(parallelism: Int, partitionKey: @escaping @Sendable (Output) -> Key, _ transform: @escaping @Sendable (Output) async throws -> T) -> Flow<Input, T, Materialized> {
        transformed { $0.mapAsyncPartitioned(parallelism: parallelism, partitionKey: partitionKey, transform) }
    }

    /// Runs `transform` one element at a time per partition key (in arrival order per key), on up to `parallelism`
    /// keys at once, and emits results as they complete. Unlike ``mapAsyncPartitioned(parallelism:partitionKey:_:)``
    /// a slow key does not hold back other keys' results: up to `bufferSize` elements may wait for their key while
    /// other keys run (that buffer is the stage's bound; when it is full, upstream waits).
    public func mapAsyncPartitionedUnordered<T: Sendable, Key: Hashable & Sendable>(
        parallelism: Int, bufferSize: Int, partitionKey: @escaping @Sendable (Output) -> Key,
        _ transform: @escaping @Sendable (Output) async throws -> T
    ) -> Flow<Input, T, Materialized> {
        transformed { $0.mapAsyncPartitionedUnordered(parallelism: parallelism, bufferSize: bufferSize, partitionKey: partitionKey, transform) }
    }

    /// Emits groups of `size` elements (the last one may be smaller).
    public func grouped(_ size: Int) -> Flow<Input, [Output], Materialized> {
        transformed { $0.grouped(size) }
    }

    /// Emits a group when it has `size` elements or `duration` has passed since its first element, whichever comes first.
    public func groupedWithin<C: Clock>(_ size: Int, within duration: Duration, clock: C = ContinuousClock()) -> Flow<Input, [Output], Materialized> where C.Duration == Duration {
        transformed { $0.groupedWithin(size, within: duration, clock: clock) }
    }

    /// While downstream is busy, aggregates up to `max` upstream elements into one (`seed` starts a batch, `aggregate` adds to it); upstream is backpressured once a batch is full.
    public func batch<Batch: Sendable>(max: Int, seed: @escaping @Sendable (Output) -> Batch, aggregate: @escaping @Sendable (Batch, Output) -> Batch) -> Flow<Input, Batch, Materialized> {
        transformed { $0.batch(max: max, seed: seed, aggregate: aggregate) }
    }

    /// Emits at most `elements` per `duration` (with bursts of up to `maximumBurst`), backpressuring upstream.
    public func throttle<C: Clock>(elements: Int, per duration: Duration, maximumBurst: Int = 1, clock: C = ContinuousClock()) -> Flow<Input, Output, Materialized> where C.Duration == Duration {
        transformed { $0.throttle(elements: elements, per: duration, maximumBurst: maximumBurst, clock: clock) }
    }

    /// Decouples upstream from downstream with a buffer of `size` elements; `overflow` says what happens when it is full.
    public func buffer(size: Int, overflow: OverflowStrategy = .backpressure) -> Flow<Input, Output, Materialized> {
        transformed { $0.buffer(size: size, overflow: overflow) }
    }

    /// When upstream fails, emits `handler`'s element (if any) and completes instead of failing; rethrow from `handler` to fail after all.
    public func recover(_ handler: @escaping @Sendable (any Error) throws -> Output?) -> Flow<Input, Output, Materialized> {
        transformed { $0.recover(handler) }
    }

    /// Adds a completion that reports how the stream ended (completed, failed, or cancelled).
    public func watchTermination() -> Flow<Input, Output, (Materialized, StreamCompletion<Void>)> {
        let materializer = self.materializer
        return Flow<Input, Output, (Materialized, StreamCompletion<Void>)> { upstream in
            let (elements, value) = try materializer(upstream)
            let completion = StreamCompletion<Void>()
            return (TerminationWatch.watch(elements, completion), (value, completion))
        }
    }
}
