import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import SluiceConnectorConfig
import SluiceConnectors
import SluiceKafka
import SluiceSidecar
import SluiceTesting
import Synchronization
import Testing

@Suite struct PublishAndAggregationTests {
    @Test func aThousandConcurrentPublishesAreAllAcknowledgedAndReadableWithKcat() async throws {
        try await withTestTopic(partitions: 3, prefix: "publish") { topic in
            let sink = FileManager.default.temporaryDirectory.appendingPathComponent(uniqueTestName("publish-sink")).path
            defer { try? FileManager.default.removeItem(atPath: sink) }
            let sidecar = try await SidecarHarness.start("""
                kafka:
                  default: { bootstrap: "${SLUICE_BOOTSTRAP}" }
                server: { listen: "127.0.0.1:0" }
                connectors:
                  - name: idle
                    source: { topics: [\(uniqueTestName("unused"))], properties: { session.timeout.ms: "6000" } }
                    sink: { file: { path: \(sink) } }
                """)
            let results = try await withThrowingTaskGroup(of: (Int, Int, String).self) { group in
                for index in 0..<1000 {
                    group.addTask {
                        let body = "{\"key\":\"k\(index % 10)\",\"value\":{\"n\":\(index)},\"headers\":{\"source\":\"test\"}}"
                        let response = try await sidecar.request("POST", "/v1/publish/\(topic)", body: body)
                        return (index, response.status, response.body)
                    }
                }
                var results: [(Int, Int, String)] = []
                for try await result in group { results.append(result) }
                return results
            }
            #expect(results.count == 1000)
            #expect(results.allSatisfy { $0.1 == 200 }, "\(results.filter { $0.1 != 200 }.prefix(3))")
            var positions = Set<String>()
            for (_, _, body) in results {
                guard case .object(let members)? = JSONValue.parse(Array(body.utf8)),
                    let partition = members["partition"]?.number, let offset = members["offset"]?.number
                else {
                    Issue.record("no partition/offset in \(body)")
                    continue
                }
                positions.insert("\(Int(partition))/\(Int(offset))")
            }
            #expect(positions.count == 1000, "every publish got its own offset")
            let bootstrap = try await TestBroker.bootstrapServers().joined(separator: ",")
            let read = try await Kcat.run(["-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-c", "1000", "-e", "-q", "-f", "%p/%o|%k|%s|%h\\n"])
            let lines = read.standardOutputString.split(separator: "\n")
            #expect(lines.count == 1000)
            var readPositions = Set<String>()
            var numbers = Set<Int>()
            for line in lines {
                let fields = line.split(separator: "|").map(String.init)
                readPositions.insert(fields[0])
                if case .object(let value)? = JSONValue.parse(Array(fields[2].utf8)), let n = value["n"]?.number {
                    numbers.insert(Int(n))
                    #expect(fields[1] == "k\(Int(n) % 10)")
                }
                #expect(fields[3] == "source=test")
            }
            #expect(readPositions == positions)
            #expect(numbers == Set(0..<1000))
            // A malformed body is refused with 400 and a message saying what is wrong.
            let bad = try await sidecar.request("POST", "/v1/publish/\(topic)", body: "{\"value\": 1, \"colour\": 2}")
            #expect(bad.status == 400)
            #expect(bad.body.contains("unknown field 'colour'"))
            try await sidecar.stop()
        }
    }

    @Test func perUserMinuteCountsMatchAnIndependentComputation() async throws {
        try await withTestTopic(partitions: 2, prefix: "clicks") { topic in
            let output = uniqueTestName("clicks-per-minute")
            let deadLetters = uniqueTestName("clicks-dlq")
            let sidecar = try await SidecarHarness.start("""
                kafka:
                  default: { bootstrap: "${SLUICE_BOOTSTRAP}" }
                server: { listen: "127.0.0.1:0" }
                connectors:
                  - name: clicks
                    source: { topics: [\(topic)], properties: { session.timeout.ms: "6000", heartbeat.interval.ms: "500" } }
                    processors:
                      - aggregate: { key: key, function: count, window: 1m, grace: 10s, idle_close: 120s }
                    sink: { kafka: { topic: \(output) } }
                    delivery: { commit_interval: 100ms, max_in_flight_per_partition: 100000 }
                    errors: { dead_letter: { topic: \(deadLetters) } }
                """)
            // Clicks over four minutes of event time, slightly out of order (within the grace), for 6 users. The
            // windows are closed by event time: a record far ahead on each partition, once the clicks are in,
            // moves stream time past every window's end and grace. The idle close (wall-clock time without
            // records) is long so that it never decides: on a machine busy with other tests, a partition the
            // consumer merely reaches late looked idle (for 2 s once, for 8 s in a full CI run), closed its windows
            // mid-stream, and the rest of their records were late.
            let base: Int64 = 1_800_000_000_000 - (1_800_000_000_000 % 60_000)
            var generator = SeededGenerator(seed: 42)
            var expected: [String: Int] = [:]
            let producer = try KafkaProducer(configuration: try await makeTestProducerConfiguration())
            var clock: Int64 = 0
            for _ in 0..<1200 {
                clock += Int64(generator.next() % 400)
                let jitter = Int64(generator.next() % 5000)
                let timestamp = base + max(0, clock - jitter)
                let user = "user-\(generator.next() % 6)"
                expected["\(user)@\(timestamp - timestamp % 60_000)", default: 0] += 1
                _ = try await producer.send(KafkaProducerMessage(
                    topic: topic, key: user, value: "{\"page\":\"/\"}", timestampMilliseconds: timestamp))
            }
            try await producer.flush()
            for partition: Int32 in [0, 1] {
                _ = try await producer.send(KafkaProducerMessage(
                    topic: topic, partition: partition, key: "stream-time", value: "{\"page\":\"/\"}",
                    timestampMilliseconds: base + 10 * 60_000))
            }
            let consumer = try KafkaConsumer(configuration: try await makeTestConsumerConfiguration())
            try consumer.subscribe(topics: [output])
            var actual: [String: Int] = [:]
            try await Eventually.require(timeout: .seconds(90), "every window is emitted") {
                while case .messages(let batch)? = try await withTimeout(.milliseconds(200), { try await consumer.readBatch(maxCount: 500) }) ?? nil {
                    for message in batch {
                        guard case .object(let members)? = message.value.flatMap({ JSONValue.parse($0) }),
                            let start = members["window_start"]?.number, let count = members["count"]?.number
                        else { continue }
                        #expect(message.keyString == members["key"]?.keyText)
                        // The stream-time records' own windows close only when idle: not counted if they come.
                        guard message.keyString != "stream-time" else { continue }
                        actual["\(message.keyString ?? "")@\(Int64(start))", default: 0] += Int(count)
                    }
                }
                return actual.values.reduce(0, +) >= 1200
            }
            #expect(actual == expected)

            // A record for a long-closed window is late: counted and dead-lettered, not folded in.
            _ = try await producer.send(KafkaProducerMessage(topic: topic, partition: 0, key: "user-0", value: "{}", timestampMilliseconds: base))
            _ = try await producer.send(KafkaProducerMessage(topic: topic, partition: 1, key: "user-1", value: "{}", timestampMilliseconds: base))
            try await Eventually.require(timeout: .seconds(30), "late records are counted") {
                sidecar.metric("sluice_late_records_total", connector: "clicks") == 2
                    && sidecar.metric("sluice_messages_dead_lettered_total", connector: "clicks") == 2
            }
            try await producer.close()
            await consumer.close()
            try await sidecar.stop()
        }
    }
}

/// Runs `body`, giving up (returning `nil`) after `timeout`.
func withTimeout<T: Sendable>(_ timeout: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T? {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: timeout)
            return nil
        }
        let first = try await group.next()!
        group.cancelAll()
        return first
    }
}
