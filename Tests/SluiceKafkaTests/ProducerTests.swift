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

@Suite("Producer refusals against the real broker", .timeLimit(.minutes(2)))
struct ProducerRefusalTests {
    /// Sends that librdkafka refuses at once must throw with its own code, whichever librdkafka call Sluice used
    /// (`rd_kafka_produce` for messages without headers or timestamp, `rd_kafka_produceva` otherwise), and leave
    /// the producer working.
    @Test("an unknown partition and an oversized message are refused with librdkafka's code, with and without headers")
    func refusedAtOnce() async throws {
        try await withTestTopic(partitions: 1) { topic in
            let producer = try KafkaProducer(configuration: try await makeTestProducerConfiguration())
            // A delivered message first: from then on librdkafka knows the topic has one partition.
            _ = try await producer.send(KafkaProducerMessage(topic: topic, partition: 0, value: [1]))
            let headers = [KafkaHeader(name: "h", string: "v")]
            let oversized = [UInt8](repeating: 7, count: 2_000_000)  // message.max.bytes is 1,000,000 by default
            let cases: [(String, KafkaProducerMessage, KafkaErrorCode)] = [
                ("unknown partition", KafkaProducerMessage(topic: topic, partition: 7, value: [1]), .unknownPartition),
                (
                    "unknown partition, headers",
                    KafkaProducerMessage(topic: topic, partition: 7, value: [1], headers: headers), .unknownPartition
                ),
                ("oversized", KafkaProducerMessage(topic: topic, value: oversized), .messageSizeTooLarge),
                (
                    "oversized, timestamp",
                    KafkaProducerMessage(topic: topic, value: oversized, timestampMilliseconds: 1_700_000_000_000),
                    .messageSizeTooLarge
                ),
            ]
            for (label, message, expected) in cases {
                do {
                    _ = try await producer.send(message)
                    Issue.record("\(label): accepted")
                } catch let error as KafkaError {
                    #expect(error.code == .produce, "\(label): \(error)")
                    #expect(error.librdkafkaCode == expected, "\(label): \(error)")
                }
            }
            let report = try await producer.send(KafkaProducerMessage(topic: topic, key: [2], value: [3]))
            #expect(report.partition == 0)
            try await producer.close()
        }
    }
}

/// Ids recorded by handlers, in call order.
final class IDRecorder: Sendable {
    let ids = Mutex<[Int]>([])
}

/// Records every delivery a receiver is given, with the size of the batch it came in.
final class RecordingReceiver: KafkaDeliveryReceiver {
    let deliveries = Mutex<[KafkaDelivery]>([])
    let batchSizes = Mutex<[Int]>([])

    func receiveDeliveries(_ deliveries: [KafkaDelivery]) {
        self.deliveries.withLock { $0.append(contentsOf: deliveries) }
        batchSizes.withLock { $0.append(deliveries.count) }
    }

    var tags: [UInt64] { deliveries.withLock { $0.map(\.tag) } }
}

@Suite("Producer delivery receivers")
struct DeliveryReceiverTests {
    @Test("a message's opaque carries its route and its tag, and an unregistered route is not handed out again while fresh ones are left")
    func routeTable() throws {
        let maxTag = DeliveryRouteTable.maxTag
        for (route, tag) in [(UInt64(1), UInt64(0)), (7, 12_345), (65_535, maxTag)] {
            let bits = DeliveryRouteTable.opaque(route: route, tag: tag)
            #expect(DeliveryRouteTable.route(ofOpaque: bits) == route)
            #expect(DeliveryRouteTable.tag(ofOpaque: bits) == tag)
        }
        let table = DeliveryRouteTable()
        let first = try #require(table.register(RecordingReceiver()))
        let second = try #require(table.register(RecordingReceiver()))
        #expect(first != DeliveryRouteTable.closureRoute && second != first)
        #expect(table.unregister(first))
        #expect(!table.unregister(first))
        #expect(table.receiver(first) == nil)
        // A late report for the unregistered receiver must not reach a new one: the new one gets a fresh route.
        let third = try #require(table.register(RecordingReceiver()))
        #expect(third != first && third != second)
        #expect(table.count == 2)
    }

    @Test("two receivers and closures share a producer through a full queue: each gets exactly its own reports, all in before flush returns")
    func receiversThroughAFullQueue() async throws {
        try await withTestTopic(partitions: 3) { topic in
            var configuration = try await makeTestProducerConfiguration()
            configuration.maxQueuedMessages = 10  // most sends below wait for room
            let producer = try KafkaProducer(configuration: configuration)
            let even = RecordingReceiver()
            let odd = RecordingReceiver()
            let evenRoute = try producer.register(even)
            let oddRoute = try producer.register(odd)
            let closureCalls = IDRecorder()
            let total = 600
            for index in 0..<total {
                let message = KafkaProducerMessage(topic: topic, key: "k\(index % 7)", value: "\(index)")
                switch index % 3 {
                case 0: try await producer.send(message) { _ in closureCalls.ids.withLock { $0.append(index) } }
                default: try await producer.send(message, route: index % 2 == 0 ? evenRoute : oddRoute, tag: UInt64(index))
                }
            }
            try await producer.flush()
            // Reports reach their receivers before librdkafka counts the messages done, so flush has waited for them.
            let expectedEven = (0..<total).filter { $0 % 3 != 0 && $0 % 2 == 0 }.map(UInt64.init)
            let expectedOdd = (0..<total).filter { $0 % 3 != 0 && $0 % 2 == 1 }.map(UInt64.init)
            #expect(even.tags.sorted() == expectedEven)
            #expect(odd.tags.sorted() == expectedOdd)
            #expect(closureCalls.ids.withLock { $0.sorted() } == (0..<total).filter { $0 % 3 == 0 })
            // Every report says where its message went, and one partition's offsets rise in send order.
            var lastOffset: [Int32: (tag: UInt64, offset: Int64)] = [:]
            for delivery in even.deliveries.withLock({ $0 }) {
                let report = try delivery.result.get()
                #expect(report.topic == topic)
                if let last = lastOffset[report.partition] {
                    #expect(delivery.tag > last.tag && report.offset > last.offset)
                }
                lastOffset[report.partition] = (delivery.tag, report.offset)
            }
            producer.unregister(evenRoute)
            producer.unregister(oddRoute)
            try await producer.close()
        }
    }

    @Test("a route of another producer and a tag of 2^48 are refused with an error, and nothing is sent")
    func badRoutesAndTags() async throws {
        let configuration = try await makeTestProducerConfiguration()
        let producer = try KafkaProducer(configuration: configuration)
        let other = try KafkaProducer(configuration: configuration)
        let receiver = RecordingReceiver()
        let foreign = try other.register(receiver)
        let route = try producer.register(receiver)
        let message = KafkaProducerMessage(topic: "never-created", value: Array("x".utf8))
        #expect {
            try producer.trySend(message, route: foreign, tag: 0)
        } throws: { ($0 as? KafkaError)?.message.contains("another producer") == true }
        #expect {
            try producer.trySend(message, route: route, tag: 1 << 48)
        } throws: { ($0 as? KafkaError)?.message.contains("out of range") == true }
        #expect(producer.outstandingCount == 0)
        try await producer.close()
        try await other.close()
        #expect(receiver.tags.isEmpty)
    }
}
