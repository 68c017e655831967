import SluiceStreams
import SluiceTesting
import Synchronization
import Testing

@Suite("Stream composition, materialization and completion")
struct CoreTests {
    @Test("source via flow to sink runs and materializes the sink's value")
    func composeAndRun() async throws {
        let doubled = Flow<Int, Int, Void>().map { $0 * 2 }.filter { $0 % 3 == 0 }
        let total = try Source(1...10).via(doubled).runWith(Sink.fold(0, +))
        #expect(try await total.value() == (6 + 12 + 18))
        let collected = try Source(["a", "b"]).map { $0.uppercased() }.runWith(Sink.collect())
        #expect(try await collected.value() == ["A", "B"])
    }

    @Test("each run materializes afresh")
    func rematerialization() async throws {
        let counter = Mutex(0)
        let source = Source<Int, Int> {
            let run = counter.withLock { value -> Int in
                value += 1
                return value
            }
            return (StreamElements(Source([run]).elementsForTesting()), run)
        }
        let first = try source.toMat(Sink.collect(), Keep.both).run()
        let second = try source.toMat(Sink.collect(), Keep.both).run()
        #expect(first.0 == 1)
        #expect(second.0 == 2)
        #expect(try await first.1.value() == [1])
        #expect(try await second.1.value() == [2])
    }

    @Test("a failing stage fails the stream with its error; recover turns it into a last element")
    func errorsPropagate() async throws {
        struct Boom: Error, Equatable {}
        let failing = try Source(1...5).map { value -> Int in
            if value == 3 { throw Boom() }
            return value
        }.runWith(Sink.collect())
        await #expect(throws: Boom.self) { try await failing.value() }

        let recovered = try Source(1...5).map { value -> Int in
            if value == 3 { throw Boom() }
            return value
        }.recover { _ in -1 }.runWith(Sink.collect())
        #expect(try await recovered.value() == [1, 2, -1])
    }

    @Test("watchTermination reports completion and failure")
    func termination() async throws {
        let (_, completed) = try Source(1...3).watchTermination().to(Sink.ignore()).run()
        try await completed.value()
        struct Boom: Error {}
        let (_, failed) = try Source<Int, Void>.failed(Boom()).watchTermination().to(Sink.ignore()).run()
        await #expect(throws: Boom.self) { try await failed.value() }
    }

    @Test("take completes early and cancels upstream")
    func takeCancelsUpstream() async throws {
        let pulled = Mutex(0)
        let source = Source<Int, Void>.unfold(0) { state in
            pulled.withLock { $0 += 1 }
            return (state + 1, state)
        }
        let first = try await source.take(5).runWith(Sink.collect()).value()
        #expect(first == [0, 1, 2, 3, 4])
        #expect(pulled.withLock { $0 } == 5)
    }
}

extension Source where Materialized == Void {
    /// The source's elements, for building other sources in tests.
    func elementsForTesting() -> StreamElements<Output> { try! materialize().0 }
}
