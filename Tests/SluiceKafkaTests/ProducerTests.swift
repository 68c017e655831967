import Foundation
import SluiceTesting
import Synchronization
import Testing

@testable import SluiceKafka

/// The producer's table of delivery handlers, tested directly (no broker).
@Suite("Producer delivery handler table")
struct DeliveryHandlerTableTests {
    /// A handler that records `id` into `seen` when called.
    private func handler(_ id: Int, _ seen: IDRecorder) -> KafkaProducer.DeliveryHandler {
        { _ in seen.ids.withLock { $0.append(id) } }
    }

    @Test("tickets are unique across chunk growth, each take returns its own handler, and freed slots are reused")
    func growthAndReuse() throws {
        let table = DeliveryHandlerTable()
        let seen = IDRecorder()
        let count = 5_000  // chunks of 1,024, 2,048 and 4,096 slots
        var tickets: [UInt32] = []
        for id in 0..<count { tickets.append(try #require(table.claim(handler(id, seen)))) }
        #expect(Set(tickets).count == count)
        #expect(!tickets.contains(0))
        // Take in a scrambled order; each handler must be the one stored under its ticket.
        var generator = SystemRandomNumberGenerator()
        for (id, ticket) in zip(0..<count, tickets).shuffled(using: &generator) {
            let taken = try #require(table.take(ticket))
            taken(.failure(KafkaError(code: .produce, message: "test")))
            #expect(seen.ids.withLock { $0.last } == id)
        }
        // Every slot is free again: claiming as many again reuses them (no ticket beyond the ones seen).
        var again: [UInt32] = []
        for id in 0..<count { again.append(try #require(table.claim(handler(id, seen)))) }
        #expect(Set(again) == Set(tickets))
        for ticket in again { _ = table.take(ticket) }
    }

    @Test("claims and takes from several threads at once never lose or mix up a handler")
    func concurrentClaimAndTake() async throws {
        let table = DeliveryHandlerTable()
        let calls = Counter()
        let mismatches = Counter()
        let rounds = 50_000
        await withTaskGroup(of: Void.self) { group in
            for worker in 0..<4 {
                group.addTask {
                    var held: [(UInt32, Int)] = []
                    for round in 0..<rounds {
                        let id = worker * rounds + round
                        let ticket = table.claim { result in
                            calls.increment()
                            if case .failure(let error) = result, error.message != "\(id)" {
                                mismatches.increment()
                            }
                        }!
                        held.append((ticket, id))
                        // Keep a varying number in flight, so slots are taken back while others are claimed.
                        if held.count > round % 300 {
                            for (ticket, id) in held {
                                table.take(ticket)?(.failure(KafkaError(code: .produce, message: "\(id)")))
                            }
                            held.removeAll(keepingCapacity: true)
                        }
                    }
                    for (ticket, id) in held {
                        table.take(ticket)?(.failure(KafkaError(code: .produce, message: "\(id)")))
                    }
                }
            }
        }
        #expect(calls.value == 4 * rounds)
        #expect(mismatches.value == 0)
    }
}

@Suite("Producer backpressure against the real broker", .timeLimit(.minutes(2)))
struct ProducerBackpressureTests {
    @Test("a full local queue: trySend refuses, send awaits room, and every message is delivered exactly once")
    func fullQueue() async throws {
        try await withTestTopic(partitions: 2) { topic in
            var configuration = try await makeTestProducerConfiguration()
            configuration.maxQueuedMessages = 10
            configuration.linger = .milliseconds(300)  // keeps the first ten queued while trySend is tried
            let producer = try KafkaProducer(configuration: configuration)
            let delivered = IDRecorder()
            let failures = Counter()
            let record: @Sendable (Int) -> KafkaProducer.DeliveryHandler = { index in
                { result in
                    switch result {
                    case .success: delivered.ids.withLock { $0.append(index) }
                    case .failure: failures.increment()
                    }
                }
            }
            var accepted = 0
            while try producer.trySend(
                KafkaProducerMessage(topic: topic, value: [UInt8]("\(accepted)")), onDelivery: record(accepted))
            {
                accepted += 1
            }
            #expect(accepted == 10)
            // A refused trySend enqueued nothing and will not call back; send waits for room instead.
            let total = 100
            for index in accepted..<total {
                try await producer.send(
                    KafkaProducerMessage(topic: topic, value: [UInt8]("\(index)")), onDelivery: record(index))
            }
            try await producer.flush()
            try await Eventually.require("every delivery reported") {
                delivered.ids.withLock { $0.count } + failures.value == total
            }
            try await producer.close()
            #expect(failures.value == 0)
            #expect(delivered.ids.withLock { $0.sorted() } == Array(0..<total))
        }
    }
}

/// Ids recorded by handlers, in call order.
final class IDRecorder: Sendable {
    let ids = Mutex<[Int]>([])
}
