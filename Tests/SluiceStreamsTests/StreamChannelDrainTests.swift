import SluiceStreams
import Testing

@Suite("StreamChannel chunked receive (drain)")
struct StreamChannelDrainTests {
    @Test("drain takes buffered elements in order, at most maxCount, and leaves the end for receive")
    func drainOrderAndBound() async throws {
        let channel = StreamChannel<Int>(capacity: 10)
        for value in 0..<7 { #expect(channel.trySend(value)) }
        #expect(channel.drain(maxCount: 0) == [])
        #expect(channel.drain(maxCount: 3) == [0, 1, 2])
        channel.finish()
        #expect(channel.drain(maxCount: 100) == [3, 4, 5, 6])
        #expect(channel.drain(maxCount: 100) == [])
        #expect(try await channel.receive() == nil)
    }

    @Test("draining wakes senders waiting for room; nothing is lost or reordered; the buffer never exceeds capacity")
    func drainWakesSenders() async throws {
        let channel = StreamChannel<Int>(capacity: 4)
        let total = 10_000
        let sender = Task {
            for value in 0..<total { guard await channel.send(value) else { return } }
            channel.finish()
        }
        var received: [Int] = []
        while true {
            #expect(channel.count <= 4)
            guard let first = try await channel.receive() else { break }
            received.append(first)
            received.append(contentsOf: channel.drain(maxCount: 3))
        }
        await sender.value
        #expect(received == Array(0..<total))
    }

    @Test("a failure is thrown by receive after drained elements")
    func drainThenFailure() async throws {
        struct Boom: Error {}
        let channel = StreamChannel<Int>(capacity: 4)
        #expect(channel.trySend(1))
        channel.fail(Boom())
        #expect(channel.drain(maxCount: 4) == [1])
        await #expect(throws: Boom.self) { try await channel.receive() }
    }
}
