import SluiceKafka
import SluiceTesting
import Testing

@Suite("Producer and consumer round trips against the real broker", .timeLimit(.minutes(2)))
struct RoundTripTests {
    @Test("keys, headers and timestamps survive the round trip; records without headers read none")
    func keysHeadersTimestamps() async throws {
        try await withTestTopic(partitions: 1) { topic in
            let timestamp: Int64 = 1_700_000_000_123
            let headers = [
                KafkaHeader(name: "trace", string: "abc"), KafkaHeader(name: "bin", value: [0, 255, 7]),
                KafkaHeader(name: "trace", string: "repeat"), KafkaHeader(name: "null", value: nil),
            ]
            // In one batch, records with and without headers (whose header section is just the count 0: the
            // set-up's librdkafka patch skips parsing that) and one header with an empty name and value.
            let reports = try await produceAll([
                KafkaProducerMessage(topic: topic, key: "k0", value: "v0"),
                KafkaProducerMessage(
                    topic: topic, key: "k1", value: "v1", headers: headers, timestampMilliseconds: timestamp),
                KafkaProducerMessage(topic: topic, key: "k2", value: "v2"),
                KafkaProducerMessage(topic: topic, key: "k3", value: "v3", headers: [KafkaHeader(name: "", value: [])]),
            ])
            #expect(reports.map(\.partition) == [0, 0, 0, 0])
            #expect(Set(reports.map(\.offset)) == [0, 1, 2, 3])

            let consumer = try KafkaConsumer(configuration: try await makeTestConsumerConfiguration())
            try consumer.subscribe(topics: [topic])
            let messages = try await consume(4, from: consumer)
            await consumer.close()
            let byKey = Dictionary(uniqueKeysWithValues: messages.map { ($0.keyString ?? "", $0) })
            #expect(byKey.mapValues(\.valueString) == ["k0": "v0", "k1": "v1", "k2": "v2", "k3": "v3"])
            #expect(byKey.mapValues(\.headers) == ["k0": [], "k1": headers, "k2": [], "k3": [KafkaHeader(name: "", value: [])]])
            let message = try #require(byKey["k1"])
            #expect(message.topic == topic)
            #expect(message.timestamp == KafkaTimestamp(milliseconds: timestamp, kind: .createTime))
            #expect(message.offset == reports[1].offset)
        }
    }

    @Test("messages of one partition arrive in the order produced")
    func orderingWithinPartition() async throws {
        try await withTestTopic(partitions: 3) { topic in
            let count = 3000
            let producer = try KafkaProducer(configuration: try await makeTestProducerConfiguration())
            let failures = Counter()
            for index in 0..<count {
                // Keys spread messages over partitions; each key's sequence numbers must come back in order.
                try await producer.send(
                    KafkaProducerMessage(topic: topic, key: "key-\(index % 7)", value: "\(index)")
                ) { result in if case .failure = result { failures.increment() } }
            }
            try await producer.close()
            #expect(failures.value == 0)

            let consumer = try KafkaConsumer(configuration: try await makeTestConsumerConfiguration())
            try consumer.subscribe(topics: [topic])
            let messages = try await consume(count, from: consumer)
            await consumer.close()
            var lastPerKey: [String: Int] = [:]
            var lastOffsetPerPartition: [Int32: Int64] = [:]
            for message in messages {
                let sequence = Int(message.valueString!)!
                let key = message.keyString!
                #expect(sequence > lastPerKey[key, default: -1], "key \(key) went backwards")
                lastPerKey[key] = sequence
                #expect(message.offset > lastOffsetPerPartition[message.partition, default: -1])
                lastOffsetPerPartition[message.partition] = message.offset
            }
            #expect(Set(messages.map { Int($0.valueString!)! }).count == count)
        }
    }

    @Test("empty and null keys and values stay distinct")
    func emptyAndNullKeysAndValues() async throws {
        try await withTestTopic(partitions: 1) { topic in
            let cases: [([UInt8]?, [UInt8]?)] = [(nil, nil), ([], []), (nil, []), ([], nil), ([1], nil), (nil, [2])]
            _ = try await produceAll(
                cases.map { KafkaProducerMessage(topic: topic, partition: 0, key: $0.0, value: $0.1) })
            let consumer = try KafkaConsumer(configuration: try await makeTestConsumerConfiguration())
            try consumer.subscribe(topics: [topic])
            let messages = try await consume(cases.count, from: consumer).sorted { $0.offset < $1.offset }
            await consumer.close()
            // produceAll sends concurrently, so match by content rather than by offset.
            let received = messages.map { [$0.key.map { [1] + $0 } ?? [0], $0.value.map { [1] + $0 } ?? [0]] }
            let expected = cases.map { [$0.0.map { [1] + $0 } ?? [0], $0.1.map { [1] + $0 } ?? [0]] }
            #expect(received.sorted { "\($0)" < "\($1)" } == expected.sorted { "\($0)" < "\($1)" })
        }
    }

    @Test("a 1 MiB value round-trips intact")
    func oneMebibyteValue() async throws {
        try await withTestTopic(partitions: 1) { topic in
            var generator = SystemRandomNumberGenerator()
            let value = (0..<(1 << 20)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            var configuration = try await makeTestProducerConfiguration()
            configuration.client.properties["message.max.bytes"] = "4194304"
            _ = try await produceAll([KafkaProducerMessage(topic: topic, key: Array("big".utf8), value: value)], configuration: configuration)
            var consumerConfiguration = try await makeTestConsumerConfiguration()
            consumerConfiguration.client.properties["fetch.message.max.bytes"] = "4194304"
            let consumer = try KafkaConsumer(configuration: consumerConfiguration)
            try consumer.subscribe(topics: [topic])
            let message = try #require(try await consume(1, from: consumer).first)
            await consumer.close()
            #expect(message.value?.count == value.count)
            #expect(message.value == value)
        }
    }
}

/// A thread-safe counter for delivery callbacks.
final class Counter: Sendable {
    private let count = LockedCount()
    func increment() { count.add(1) }
    var value: Int { count.get() }
}

import Synchronization

final class LockedCount: Sendable {
    private let mutex = Mutex(0)
    func add(_ amount: Int) { mutex.withLock { $0 += amount } }
    func get() -> Int { mutex.withLock { $0 } }
}
