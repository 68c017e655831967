import SluiceStreams
import SluiceTesting
import Synchronization
import Testing

@Suite struct KeyedUnorderedTests {
    @Test func aBlockedKeyDoesNotHoldBackOtherKeysAndEachKeyStaysInOrder() async throws {
        let gate = TestGate()
        let seen = Mutex<[Int: [Int]]>([:])
        let gauge = ConcurrencyGauge()
        // 5 keys × 40 elements; key 0's first element blocks until the gate opens.
        let elements = (0..<40).flatMap { sequence in (0..<5).map { key in (key, sequence) } }
        let completion = try Source(elements)
            .mapAsyncPartitionedUnordered(parallelism: 3, bufferSize: 100, partitionKey: { $0.0 }) { element -> (Int, Int) in
                gauge.enter()
                defer { gauge.leave() }
                if element == (0, 0) { await gate.wait() }
                seen.withLock { $0[element.0, default: []].append(element.1) }
                return element
            }
            .runWith(Sink.collect())
        try await Eventually.require("every other key is done while key 0 is held") {
            seen.withLock { state in (1..<5).allSatisfy { state[$0]?.count == 40 } }
        }
        #expect(seen.withLock { $0[0] } == nil)
        gate.open()
        let output = try await completion.value()
        #expect(output.count == 200)
        for key in 0..<5 {
            #expect(output.filter { $0.0 == key }.map(\.1) == Array(0..<40), "key \(key) out of order")
            #expect(seen.withLock { $0[key] } == Array(0..<40))
        }
        #expect(gauge.peak <= 3)
    }

    @Test func upstreamWaitsWhenTheBufferIsFull() async throws {
        let gate = TestGate()
        let pulled = Mutex(0)
        let completion = try Source.unfold(0) { next -> (Int, Int)? in
            guard next < 1000 else { return nil }
            pulled.withLock { $0 += 1 }
            return (next + 1, next)
        }
        .mapAsyncPartitionedUnordered(parallelism: 4, bufferSize: 20, partitionKey: { _ in 0 }) { value -> Int in
            if value == 0 { await gate.wait() }
            return value
        }
        .runWith(Sink.collect())
        try await Eventually.require("upstream is pulled up to the buffer") { pulled.withLock { $0 } >= 20 }
        // Give upstream a chance to overrun the bound (it must not): poll for a while and check each time.
        for _ in 0..<20 {
            #expect(pulled.withLock { $0 } <= 20 + 2)
            await Task.yield()
        }
        gate.open()
        #expect(try await completion.value() == Array(0..<1000))
    }
}
