/// Fusion of synchronous operators: consecutive `map`, `filter` and `compactMap` stages with synchronous closures
/// become one stage that applies the composed function inline, so a chain of them costs one asynchronous hop per
/// element, not one per operator (measured: about 200 ns per unfused stage).
protocol SyncComposable<Element>: AsyncSequence, Sendable where Element: Sendable, Failure == any Error {
    func composing<T: Sendable>(_ next: @escaping @Sendable (consuming Element) throws -> T?) -> StreamElements<T>
}

/// Upstream elements passed through a synchronous function (`nil` drops the element), one at a time: for an upstream
/// that does not hand out chunks (see ``StreamElements/fusedCompactMap(_:)``).
struct SyncMapped<Base: AsyncSequence & Sendable, Element: Sendable>: SyncComposable where Base.Element: Sendable {
    typealias Failure = any Error
    let base: Base
    let transform: @Sendable (consuming Base.Element) throws -> Element?

    func composing<T: Sendable>(_ next: @escaping @Sendable (consuming Element) throws -> T?) -> StreamElements<T> {
        let transform = self.transform
        return StreamElements(erased: SyncMapped<Base, T>(base: base) { element in
            guard let transformed = try transform(element) else { return nil }
            return try next(transformed)
        })
    }

    struct AsyncIterator: AsyncIteratorProtocol {
        var base: Base.AsyncIterator
        let transform: @Sendable (consuming Base.Element) throws -> Element?

        mutating func next() async throws -> Element? {
            while let element = try await base.next() {
                if let transformed = try transform(consume element) { return transformed }
            }
            return nil
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(base: base.makeAsyncIterator(), transform: transform) }
}

extension StreamElements {
    /// Applies a synchronous function, fused with the stage before it when that is synchronous too.
    ///
    /// Over a chunked upstream (a Kafka source, a sequence, a windowed stage) it maps whole chunks and hands them on
    /// as chunks: the stream pays its asynchronous hop once per chunk, and the loop over a chunk is made here, where
    /// the element types are known (specialized), not in type-erased generic code. Consecutive maps chain their
    /// chunk loops. Over any other upstream it maps element by element, composing consecutive transforms.
    func fusedCompactMap<T: Sendable>(
        _ transform: @escaping @Sendable (consuming Element) throws -> T?
    ) -> StreamElements<T> {
        if isChunked {
            let upstream = self
            return .makeChunked {
                var inputs = upstream.makeAsyncIterator()
                // A transform that throws midway through a chunk: the elements mapped before it go out first.
                var pendingFailure: (any Error)?
                return {
                    if let failure = pendingFailure { throw failure }
                    while var chunk = try await inputs.nextChunk() {
                        var outputs: [T] = []
                        outputs.reserveCapacity(chunk.count)
                        // Each input is moved out of the chunk (popLast after reversing), not copied: a copy would
                        // retain every reference the element holds, and dropping the chunk release it again.
                        chunk.reverseByMoving()
                        while let input = chunk.popLast() {
                            do {
                                if let output = try transform(consume input) { outputs.append(output) }
                            } catch {
                                guard !outputs.isEmpty else { throw error }
                                pendingFailure = error
                                return outputs
                            }
                        }
                        if !outputs.isEmpty { return outputs }
                    }
                    return nil
                }
            }
        }
        if let composable = base as? any SyncComposable<Element> {
            return composable.composing(transform)
        }
        return StreamElements<T>(erased: SyncMapped(base: self, transform: transform))
    }
}

extension Source {
    /// Transforms each element with a synchronous function (fused with neighbouring synchronous stages). The
    /// function owns the element it is given (the stage keeps no copy of it), so it may move the element's parts
    /// into its result.
    public func map<T: Sendable>(_ transform: @escaping @Sendable (consuming Output) throws -> T) -> Source<T, Materialized> {
        transformed { $0.fusedCompactMap(transform) }
    }

    /// Passes on only the elements for which `isIncluded` is true (synchronous, fused).
    public func filter(_ isIncluded: @escaping @Sendable (Output) throws -> Bool) -> Source<Output, Materialized> {
        transformed { $0.fusedCompactMap { element in try isIncluded(element) ? element : nil } }
    }

    /// Transforms each element, dropping those that become `nil` (synchronous, fused).
    public func compactMap<T: Sendable>(_ transform: @escaping @Sendable (consuming Output) throws -> T?) -> Source<T, Materialized> {
        transformed { $0.fusedCompactMap(transform) }
    }
}

extension Flow {
    /// Transforms each element with a synchronous function (fused with neighbouring synchronous stages). The
    /// function owns the element it is given (the stage keeps no copy of it), so it may move the element's parts
    /// into its result.
    public func map<T: Sendable>(_ transform: @escaping @Sendable (consuming Output) throws -> T) -> Flow<Input, T, Materialized> {
        transformed { $0.fusedCompactMap(transform) }
    }

    /// Passes on only the elements for which `isIncluded` is true (synchronous, fused).
    public func filter(_ isIncluded: @escaping @Sendable (Output) throws -> Bool) -> Flow<Input, Output, Materialized> {
        transformed { $0.fusedCompactMap { element in try isIncluded(element) ? element : nil } }
    }

    /// Transforms each element, dropping those that become `nil` (synchronous, fused).
    public func compactMap<T: Sendable>(_ transform: @escaping @Sendable (consuming Output) throws -> T?) -> Flow<Input, T, Materialized> {
        transformed { $0.fusedCompactMap(transform) }
    }
}
