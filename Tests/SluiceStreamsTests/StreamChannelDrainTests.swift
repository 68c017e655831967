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

    @Test("send(contentsOf:) keeps order across a waiting receiver and a full buffer, and never exceeds capacity")
    func sendContentsOf() async throws {
        let channel = StreamChannel<Int>(capacity: 3)
        let total = 5_000
        // A receiver that waits on an empty buffer takes the first element of the next send directly (here at the start,
        // if the receiving task runs first, and whenever the receiver catches up with the sender).
        let first = Task { try await channel.receive() }
        let sender = Task {
            var next = 0
            while next < total {
                let chunk = Array(next..<min(next + 7, total))  // more than the capacity at once
                guard await channel.send(contentsOf: chunk) else { return false }
                next += chunk.count
            }
            channel.finish()
            return true
        }
        var received = [try #require(try await first.value)]
        while let value = try await channel.receive() {
            #expect(channel.count <= 3)
            received.append(value)
        }
        #expect(await sender.value)
        #expect(received == Array(0..<total))
    }

    @Test("send(contentsOf:) into a finished channel is refused")
    func sendContentsOfFinished() async {
        let channel = StreamChannel<Int>(capacity: 3)
        channel.finish()
        #expect(await channel.send(contentsOf: [1, 2]) == false)
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
