import SluiceStreams
import SluiceTesting
import Synchronization
import Testing

/// Tracks how many calls are in progress at once.
final class ConcurrencyGauge: Sendable {
    private let state = Mutex((current: 0, peak: 0))
    func enter() { state.withLock { $0.current += 1; $0.peak = max($0.peak, $0.current) } }
    func leave() { state.withLock { $0.current -= 1 } }
    var peak: Int { state.withLock { $0.peak } }
    var current: Int { state.withLock { $0.current } }
}

typealias Gate = TestGate


@Suite("Operators")
struct OperatorTests {
    @Test("mapAsync keeps upstream order and never exceeds its parallelism")
    func mapAsyncOrderAndParallelism() async throws {
        let gauge = ConcurrencyGauge()
        let result = try await Source(0..<200).mapAsync(parallelism: 8) { value -> Int in
            gauge.enter()
            defer { gauge.leave() }
            // Later elements finish first half of the time: order must still be kept.
            if value % 2 == 0 { await Task.yield(); await Task.yield() }
            return value
        }.runWith(Sink.collect()).value()
        #expect(result == Array(0..<200))
        #expect(gauge.peak <= 8)
        #expect(gauge.peak > 1)
    }

    @Test("mapAsync runs elements concurrently: all of a parallelism-wide window wait at the same time")
    func mapAsyncIsConcurrent() async throws {
        let gate = Gate()
        let completion = try Source(0..<4).mapAsync(parallelism: 4) { value -> Int in
            await gate.wait()
            return value
        }.runWith(Sink.collect())
        try await Eventually.require("four calls wait at the gate together") { gate.waiting == 4 }
        gate.open()
        #expect(try await completion.value() == [0, 1, 2, 3])
    }

    @Test("mapAsyncUnordered emits in completion order")
    func mapAsyncUnorderedOrder() async throws {
        let gates = (0..<3).map { _ in Gate() }
        let emitted = Mutex<[Int]>([])
        let completion = try Source(0..<3).mapAsyncUnordered(parallelism: 3) { value -> Int in
            await gates[value].wait()
            return value
        }.map { value -> Int in
            emitted.withLock { $0.append(value) }
            return value
        }.runWith(Sink.collect())
        try await Eventually.require("all three wait") { gates.allSatisfy { $0.waiting == 1 } }
        // One call completes at a time, and the next is released only once the previous one was emitted: opening
        // two gates at once would leave their order to the scheduler.
        gates[2].open()
        try await Eventually.require("2 is emitted first") { emitted.withLock { $0 } == [2] }
        gates[0].open()
        try await Eventually.require("then 0") { emitted.withLock { $0 } == [2, 0] }
        gates[1].open()
        #expect(try await completion.value() == [2, 0, 1])
    }

    @Test("mapAsyncPartitioned: one at a time per key, parallel across keys, output in upstream order")
    func mapAsyncPartitioned() async throws {
        let perKey = Mutex<[Int: Int]>([:])
        let overlapPerKey = Mutex(false)
        let gauge = ConcurrencyGauge()
        let input = (0..<300).map { (key: $0 % 5, sequence: $0) }
        let seenOrder = Mutex<[Int: [Int]]>([:])
        let result = try await Source(input).mapAsyncPartitioned(parallelism: 10, partitionKey: { $0.key }) { item -> Int in
            gauge.enter()
            defer { gauge.leave() }
            let concurrent = perKey.withLock { map -> Int in
                map[item.key, default: 0] += 1
                return map[item.key]!
            }
            if concurrent > 1 { overlapPerKey.withLock { $0 = true } }
            seenOrder.withLock { $0[item.key, default: []].append(item.sequence) }
            await Task.yield()
            perKey.withLock { $0[item.key]! -= 1 }
            return item.sequence
        }.runWith(Sink.collect()).value()
        #expect(result == Array(0..<300))
        #expect(!overlapPerKey.withLock { $0 }, "two elements of one key ran at once")
        for (_, sequences) in seenOrder.withLock({ $0 }) { #expect(sequences == sequences.sorted()) }
        #expect(gauge.peak <= 10)
    }

    @Test("grouped and groupedWithin by count")
    func groupedByCount() async throws {
        #expect(try await Source(1...7).grouped(3).runWith(Sink.collect()).value() == [[1, 2, 3], [4, 5, 6], [7]])
        #expect(try await Source(1...7).groupedWithin(3, within: .seconds(3600)).runWith(Sink.collect()).value() == [[1, 2, 3], [4, 5, 6], [7]])
    }

    @Test("groupedWithin emits a partial group when its time is up (manual clock)")
    func groupedWithinByTime() async throws {
        let clock = ManualClock()
        let (elements, feed) = AsyncStream<Int>.makeStream()
        let groups = Mutex<[[Int]]>([])
        let completion = try Source.fromAsyncSequence(elements).groupedWithin(10, within: .seconds(1), clock: clock)
            .runWith(Sink.foreach { group in groups.withLock { $0.append(group) } })
        feed.yield(1)
        feed.yield(2)
        // The stage waits for more until its deadline: a sleeper appears on the clock.
        try await Eventually.require("groupedWithin waits on the clock") { clock.sleeperCount == 1 }
        #expect(groups.withLock { $0 }.isEmpty)
        clock.advance(by: .seconds(1))
        try await Eventually.require("the partial group is emitted") { groups.withLock { $0 } == [[1, 2]] }
        feed.yield(3)
        feed.finish()
        try await completion.value()
        #expect(groups.withLock { $0 } == [[1, 2], [3]])
    }

    @Test("throttle spaces elements by the clock")
    func throttle() async throws {
        let clock = ManualClock()
        let received = Mutex<[Int]>([])
        let completion = try Source(1...3).throttle(elements: 1, per: .seconds(1), clock: clock)
            .runWith(Sink.foreach { value in received.withLock { $0.append(value) } })
        try await Eventually.require("the first element passes at once (burst of 1)") { received.withLock { $0 } == [1] }
        try await Eventually.require("the second waits for a token") { clock.sleeperCount == 1 }
        clock.advance(by: .seconds(1))
        try await Eventually.require("the second element passes") { received.withLock { $0 } == [1, 2] }
        try await Eventually.require("the third waits") { clock.sleeperCount == 1 }
        clock.advance(by: .seconds(1))
        try await completion.value()
        #expect(received.withLock { $0 } == [1, 2, 3])
    }

    @Test("batch aggregates while downstream is busy, up to its maximum")
    func batch() async throws {
        let gate = Gate()
        let batches = Mutex<[[Int]]>([])
        let pulled = Mutex(0)
        let source = Source<Int, Void>.unfold(0) { state in
            guard state < 10 else { return nil }
            pulled.withLock { $0 += 1 }
            return (state + 1, state)
        }
        let completion = try source.batch(max: 4, seed: { [$0] }, aggregate: { $0 + [$1] })
            .runWith(Sink.foreach { batch in
                batches.withLock { $0.append(batch) }
                if batches.withLock({ $0.count }) == 1 { await gate.wait() }
            })
        // Downstream holds the first batch; upstream fills the next one to its maximum (4), pulls one more
        // element and waits with it: backpressure.
        try await Eventually.require("a full batch waits while downstream is busy") {
            batches.withLock { $0.count } == 1 && pulled.withLock { $0 } == batches.withLock { $0[0].count } + 5
        }
        gate.open()
        try await completion.value()
        let all = batches.withLock { $0 }
        #expect(all.flatMap { $0 } == Array(0..<10))
        #expect(all.allSatisfy { $0.count <= 4 })
    }

    @Test("buffer overflow strategies")
    func bufferStrategies() async throws {
        // With a fast consumer, every strategy passes everything through.
        for strategy in [OverflowStrategy.backpressure, .dropHead, .dropTail, .dropNew] {
            #expect(try await Source(1...50).buffer(size: 4, overflow: strategy).runWith(Sink.collect()).value().count <= 50)
        }
        #expect(try await Source(1...50).buffer(size: 4).runWith(Sink.collect()).value() == Array(1...50))

        // With a blocked consumer, dropHead keeps the newest, dropNew the oldest, backpressure loses nothing.
        func run(_ strategy: OverflowStrategy) async throws -> [Int] {
            let gate = Gate()
            let pulled = Mutex(0)
            let received = Mutex<[Int]>([])
            let source = Source<Int, Void>.unfold(1) { state in
                guard state <= 20 else { return nil }
                pulled.withLock { $0 += 1 }
                return (state + 1, state)
            }
            let completion = try source.buffer(size: 3, overflow: strategy)
                .runWith(Sink.foreach { value in
                    if value == 1 { await gate.wait() }
                    received.withLock { $0.append(value) }
                })
            try await Eventually.require("the consumer holds element 1") { gate.waiting == 1 }
            if strategy != .backpressure {
                // Dropping strategies never wait: upstream runs to its end while the consumer is held.
                try await Eventually.require("upstream is exhausted") { pulled.withLock { $0 } == 20 }
            }
            gate.open()
            try await completion.value()
            return received.withLock { $0 }
        }
        let dropHead = try await run(.dropHead)
        #expect(dropHead.first == 1)
        #expect(dropHead.last == 20)
        #expect((4...5).contains(dropHead.count), "\(dropHead)")
        #expect(dropHead == dropHead.sorted())
        let dropNew = try await run(.dropNew)
        #expect(Array(dropNew.prefix(4)) == [1, 2, 3, 4], "\(dropNew)")
        #expect(dropNew.count <= 5)
        let backpressure = try await run(.backpressure)
        #expect(backpressure == Array(1...20))
    }

    @Test("buffer with the fail strategy fails the stream when full")
    func bufferFail() async throws {
        let gate = Gate()
        let pulled = Mutex(0)
        let received = Mutex(0)
        let source = Source<Int, Void>.unfold(1) { state in
            guard state <= 100 else { return nil }
            pulled.withLock { $0 += 1 }
            return (state + 1, state)
        }
        let completion = try source.buffer(size: 2, overflow: .fail)
            .runWith(Sink.foreach { value in
                received.withLock { $0 += 1 }
                if value == 1 { await gate.wait() }
            })
        // Element 1 is held downstream, 2 and 3 fill the buffer, 4 overflows it.
        try await Eventually.require("upstream overflowed the buffer") { pulled.withLock { $0 } >= 4 }
        gate.open()
        await #expect(throws: StreamError.bufferOverflow(size: 2)) { try await completion.value() }
        #expect(pulled.withLock { $0 } == 4, "upstream stops at the overflow")
        #expect(received.withLock { $0 } < 4)
    }

    @Test("merge emits both sources' elements and completes when both do")
    func merge() async throws {
        let result = try await Source(0..<100).merge(Source(100..<200)).runWith(Sink.collect()).value()
        #expect(result.sorted() == Array(0..<200))
        #expect(result.filter { $0 < 100 } == Array(0..<100))
    }

    @Test("a kill switch completes or aborts a running stream and cancels upstream")
    func killSwitch() async throws {
        let upstreamCancelled = Gate()
        let endless = Source<Int, Void>.unfold(0) { state in
            do { try await Task.sleep(for: .milliseconds(1)) } catch { upstreamCancelled.open(); throw error }
            return (state + 1, state)
        }
        let received = Mutex(0)
        let ((_, killSwitch), completion) = try endless.killSwitch()
            .toMat(Sink.foreach { _ in received.withLock { $0 += 1 } }, Keep.both).run()
        try await Eventually.require("elements flow") { received.withLock { $0 } > 3 }
        killSwitch.shutdown()
        try await completion.value()
        try await Eventually.require("upstream was cancelled") { killSwitch.isTriggered }

        struct Stop: Error {}
        let ((_, abortSwitch), aborted) = try endless.killSwitch().toMat(Sink.ignore(), Keep.both).run()
        abortSwitch.abort(Stop())
        await #expect(throws: Stop.self) { try await aborted.value() }
    }

    @Test("cancelling the task that runs a stream cancels every stage")
    func cancellationPropagates() async throws {
        let started = Gate()
        let stageCancelled = Gate()
        let graph = Source(0..<1_000_000).mapAsync(parallelism: 4) { value -> Int in
            started.open()
            do { try await Task.sleep(for: .seconds(3600)) } catch { stageCancelled.open(); throw error }
            return value
        }.to(Sink.ignore())
        let task = Task { try await graph.runHere() }
        await started.wait()
        task.cancel()
        await stageCancelled.wait()
        await #expect(throws: (any Error).self) { try await task.value }
    }
}
