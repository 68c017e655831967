import Foundation
import SluiceKafka
import SluiceTesting
import Testing

/// Sluice against clients nobody here wrote: `kcat` and the PyPI `confluent-kafka` client.
@Suite("Interoperability with kcat and confluent-kafka", .timeLimit(.minutes(2)))
struct InteroperabilityTests {
    @Test("messages produced by kcat are read by Sluice byte for byte, keys and headers included")
    func kcatToSluice() async throws {
        try await withTestTopic(partitions: 1) { topic in
            let servers = try await TestBroker.bootstrapServers().joined(separator: ",")
            let lines = ["k1\tvalue one", "ключ\tzürich ✓ 東京", "k3\t{\"json\": [1, 2, 3]}"]
            _ = try await Kcat.run(
                ["-b", servers, "-P", "-t", topic, "-p", "0", "-K", "\t", "-H", "origin=kcat", "-H", "bytes=é\u{1}"],
                input: Array((lines.joined(separator: "\n") + "\n").utf8))
            let consumer = try KafkaConsumer(configuration: try await makeTestConsumerConfiguration())
            try consumer.subscribe(topics: [topic])
            let messages = try await consume(3, from: consumer)
            await consumer.close()
            for (message, line) in zip(messages, lines) {
                let parts = line.split(separator: "\t", maxSplits: 1).map(String.init)
                #expect(message.key == Array(parts[0].utf8))
                #expect(message.value == Array(parts[1].utf8))
                #expect(message.headers == [KafkaHeader(name: "origin", string: "kcat"), KafkaHeader(name: "bytes", string: "é\u{1}")])
            }
        }
    }

    @Test("messages produced by Sluice are read by kcat")
    func sluiceToKcat() async throws {
        try await withTestTopic(partitions: 1) { topic in
            let servers = try await TestBroker.bootstrapServers().joined(separator: ",")
            let producer = try KafkaProducer(configuration: try await makeTestProducerConfiguration())
            for index in 0..<3 {
                _ = try await producer.send(
                    KafkaProducerMessage(
                        topic: topic, key: "key-\(index)", value: "välue-\(index)",
                        headers: [KafkaHeader(name: "n", string: "\(index)")]))
            }
            try await producer.close()
            let output = try await Kcat.run(
                ["-b", servers, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%k|%s|%h|%p|%o\n"])
            #expect(output.standardOutputString == (0..<3).map { "key-\($0)|välue-\($0)|n=\($0)|0|\($0)\n" }.joined())
        }
    }

    @Test("binary keys, values and headers produced by Sluice are read byte for byte by confluent-kafka (Python)")
    func sluiceToConfluentKafka() async throws {
        try await withTestTopic(partitions: 1) { topic in
            let servers = try await TestBroker.bootstrapServers().joined(separator: ",")
            var generator = SystemRandomNumberGenerator()
            let sent = (0..<20).map { index in
                KafkaProducerMessage(
                    topic: topic, key: (0..<8).map { _ in UInt8.random(in: 0...255, using: &generator) },
                    value: index == 0 ? nil : (0..<(index * 37)).map { _ in UInt8.random(in: 0...255, using: &generator) },
                    headers: [KafkaHeader(name: "h\(index)", value: [0, 10, 13, 255, UInt8(index)])])
            }
            let producer = try KafkaProducer(configuration: try await makeTestProducerConfiguration())
            for message in sent { _ = try await producer.send(message) }
            try await producer.close()

            let script = """
                import json, sys
                from confluent_kafka import Consumer
                c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": sys.argv[3], "auto.offset.reset": "earliest",
                              "session.timeout.ms": 6000})
                c.subscribe([sys.argv[2]])
                out = []
                while len(out) < int(sys.argv[4]):
                    m = c.poll(10)
                    if m is None or m.error(): continue
                    out.append({"key": m.key().hex() if m.key() is not None else None,
                                "value": m.value().hex() if m.value() is not None else None,
                                "headers": [[k, v.hex()] for k, v in (m.headers() or [])]})
                c.close()
                print(json.dumps(out))
                """
            let output = try await runExternalProcess(
                "/usr/bin/env", ["python3", "-c", script, servers, topic, uniqueTestName("py"), "\(sent.count)"])
            #expect(output.status == 0, "python: \(output.standardError)")
            struct Received: Decodable { let key: String?; let value: String?; let headers: [[String]] }
            let received = try JSONDecoder().decode([Received].self, from: Data(output.standardOutput))
            #expect(received.count == sent.count)
            for (got, message) in zip(received, sent) {
                #expect(got.key == message.key.map(hex))
                #expect(got.value == message.value.map(hex))
                #expect(got.headers == message.headers.map { [$0.name, hex($0.value ?? [])] })
            }
        }
    }
}

private func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }
