/// Fusion of synchronous operators: consecutive `map`, `filter` and `compactMap` stages with synchronous closures
/// become one stage that applies the composed function inline, so a chain of them costs one asynchronous hop per
/// element, not one per operator (measured: about 200 ns per unfused stage).
protocol SyncComposable<Element>: AsyncSequence, Sendable where Element: Sendable, Failure == any Error {
    func composing<T: Sendable>(_ next: @escaping @Sendable (Element) throws -> T?) -> StreamElements<T>
}

/// Upstream elements passed through a synchronous function (`nil` drops the element).
///
/// Over a chunked upstream (a Kafka source, a sequence) it maps whole chunks and hands them on as chunks, so the
/// stream pays its asynchronous hops once per chunk; over any other upstream it maps element by element.
struct SyncMapped<Input: Sendable, Element: Sendable>: SyncComposable, ChunkedElements {
    typealias Failure = any Error
    let base: StreamElements<Input>
    let transform: @Sendable (Input) throws -> Element?

    func composing<T: Sendable>(_ next: @escaping @Sendable (Element) throws -> T?) -> StreamElements<T> {
        let transform = self.transform
        return StreamElements(erased: SyncMapped<Input, T>(base: base) { element in try transform(element).flatMap(next) })
    }

    var isChunked: Bool { base.isChunked }

    func makeNextChunk() -> () async throws -> [Element]? {
        var upstream = base.makeAsyncIterator()
        let transform = self.transform
        // A transform that throws midway through a chunk: the elements mapped before it go out first, then the error.
        var pendingFailure: (any Error)?
        return {
            if let failure = pendingFailure { throw failure }
            while let inputs = try await upstream.nextChunk() {
                var outputs: [Element] = []
                outputs.reserveCapacity(inputs.count)
                for input in inputs {
                    do {
                        if let output = try transform(input) { outputs.append(output) }
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

    struct AsyncIterator: AsyncIteratorProtocol {
        var upstream: StreamElements<Input>.AsyncIterator
        let transform: @Sendable (Input) throws -> Element?

        mutating func next() async throws -> Element? {
            while let element = try await upstream.next() {
                if let transformed = try transform(element) { return transformed }
            }
            return nil
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(upstream: base.makeAsyncIterator(), transform: transform) }
}

extension StreamElements {
    /// Applies a synchronous function, fused with the stage before it when that is synchronous too.
    func fusedCompactMap<T: Sendable>(_ transform: @escaping @Sendable (Element) throws -> T?) -> StreamElements<T> {
        if let composable = base as? any SyncComposable<Element> {
            return composable.composing(transform)
        }
        return StreamElements<T>(erased: SyncMapped(base: self, transform: transform))
    }
}

extension Source {
    /// Transforms each element with a synchronous function (fused with neighbouring synchronous stages).
    public func map<T: Sendable>(_ transform: @escaping @Sendable (Output) throws -> T) -> Source<T, Materialized> {
        transformed { $0.fusedCompactMap(transform) }
    }

    /// Passes on only the elements for which `isIncluded` is true (synchronous, fused).
    public func filter(_ isIncluded: @escaping @Sendable (Output) throws -> Bool) -> Source<Output, Materialized> {
        transformed { $0.fusedCompactMap { try isIncluded($0) ? $0 : nil } }
    }

    /// Transforms each element, dropping those that become `nil` (synchronous, fused).
    public func compactMap<T: Sendable>(_ transform: @escaping @Sendable (Output) throws -> T?) -> Source<T, Materialized> {
        transformed { $0.fusedCompactMap(transform) }
    }
}

extension Flow {
    /// Transforms each element with a synchronous function (fused with neighbouring synchronous stages).
    public func map<T: Sendable>(_ transform: @escaping @Sendable (Output) throws -> T) -> Flow<Input, T, Materialized> {
        transformed { $0.fusedCompactMap(transform) }
    }

    /// Passes on only the elements for which `isIncluded` is true (synchronous, fused).
    public func filter(_ isIncluded: @escaping @Sendable (Output) throws -> Bool) -> Flow<Input, Output, Materialized> {
        transformed { $0.fusedCompactMap { try isIncluded($0) ? $0 : nil } }
    }

    /// Transforms each element, dropping those that become `nil` (synchronous, fused).
    public func compactMap<T: Sendable>(_ transform: @escaping @Sendable (Output) throws -> T?) -> Flow<Input, T, Materialized> {
        transformed { $0.fusedCompactMap(transform) }
    }
}
