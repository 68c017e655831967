import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import SluiceConnectorConfig
import SluiceKafka
import SluiceTesting
import Synchronization
import Testing

/// The `sluice` binary as users run it: SIGTERM drains, a restart resumes from the committed offsets.
@Suite struct LifecycleTests {
    static var binary: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent(".build/debug/sluice").path
    }

    /// A running `sluice` process.
    final class SluiceProcess: Sendable {
        let process: Process
        let exit = StreamCompletionBox()

        init(arguments: [String], environment: [String: String], log: String) throws {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: LifecycleTests.binary)
            process.arguments = arguments
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
            _ = FileManager.default.createFile(atPath: log, contents: nil)
            let handle = FileHandle(forWritingAtPath: log)
            process.standardOutput = handle
            process.standardError = handle
            let exit = self.exit
            process.terminationHandler = { exit.complete($0.terminationStatus) }
            try process.run()
            self.process = process
        }

        func signal(_ number: Int32) { kill(process.processIdentifier, number) }

        func waitForExit(timeout: Duration) async throws -> Int32 {
            try await Eventually.value(timeout: timeout, "sluice exits") { exit.status }
        }
    }

    final class StreamCompletionBox: Sendable {
        private let value = Mutex<Int32?>(nil)
        func complete(_ status: Int32) { value.withLock { $0 = status } }
        var status: Int32? { value.withLock { $0 } }
    }

    @Test func sigtermDrainsAndARestartDeliversEverythingAtLeastOnce() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.binary), "build the sluice binary first (swift build --build-tests)")
        try await withTestTopic(partitions: 3, prefix: "lifecycle") { topic in
            let group = uniqueTestName("lifecycle")
            let app = TestApplication { _ in
                try? await Task.sleep(for: .milliseconds(20))  // the app's own work per message
                return (200, "")
            }
            let url = try await app.start()
            defer { app.stop() }
            let folder = FileManager.default.temporaryDirectory.appendingPathComponent(uniqueTestName("lifecycle"))
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: folder) }
            let config = folder.appendingPathComponent("webhook.yaml").path
            try """
                kafka:
                  default: { bootstrap: "${SLUICE_BOOTSTRAP}" }
                server: { listen: "127.0.0.1:0", drain_grace: 20s }
                connectors:
                  - name: lifecycle
                    source: { topics: [\(topic)], group: \(group), properties: { session.timeout.ms: "6000", heartbeat.interval.ms: "500" } }
                    sink: { http: { url: "\(url)", concurrency: 2 } }
                    delivery: { commit_batch: 50, commit_interval: 200ms, max_in_flight_per_partition: 20 }
                """.write(toFile: config, atomically: true, encoding: .utf8)
            let environment = ["SLUICE_BOOTSTRAP": try await TestBroker.bootstrapServers().joined(separator: ",")]
            try await produceWithKcat(topic: topic, keys: 6, perKey: 200)
            let total = 1200

            let first = try SluiceProcess(arguments: ["run", config, "--log-format", "json"], environment: environment, log: folder.appendingPathComponent("first.log").path)
            try await Eventually.require(timeout: .seconds(60), "the first run delivers some messages") { app.accepted.count >= 200 }
            first.signal(SIGTERM)
            let firstStatus = try await first.waitForExit(timeout: .seconds(40))
            let firstLog = try String(contentsOfFile: folder.appendingPathComponent("first.log").path, encoding: .utf8)
            #expect(firstStatus == 0, "sluice did not exit 0 after SIGTERM: \(firstLog.suffix(2000))")
            #expect(firstLog.contains("drained"))
            let deliveredBeforeRestart = app.accepted.count
            #expect(deliveredBeforeRestart < total, "the SIGTERM came mid-stream")

            let second = try SluiceProcess(arguments: ["run", config], environment: environment, log: folder.appendingPathComponent("second.log").path)
            try await Eventually.require(timeout: .seconds(90), "every message is delivered after the restart") {
                Set(app.accepted.map { "\($0.partition)/\($0.offset)" }).count == total
            }
            second.signal(SIGTERM)
            let secondStatus = try await second.waitForExit(timeout: .seconds(40))
            let secondLog = try String(contentsOfFile: folder.appendingPathComponent("second.log").path, encoding: .utf8)
            #expect(secondStatus == 0, "\(secondLog.suffix(3000))")

            let deliveries = app.accepted
            let unique = Set(deliveries.map { "\($0.partition)/\($0.offset)" })
            #expect(unique.count == total, "a message was lost")
            let duplicates = deliveries.count - unique.count
            // A clean drain commits everything it delivered: duplicates stay within one commit batch at most.
            #expect(duplicates <= 50, "\(duplicates) duplicates")
            for (key, sequences) in app.acceptedSequencesByKey {
                var seen = Set<Int>()
                let firstOccurrences = sequences.filter { seen.insert($0).inserted }
                #expect(firstOccurrences == Array(0..<200), "\(key) out of order")
            }
        }
    }

    @Test func aSecondSignalExitsAtOnce() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.binary))
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent(uniqueTestName("signals"))
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let config = folder.appendingPathComponent("c.yaml").path
        // Nothing listens on the app's port: the one message retries forever, so the drain keeps waiting for it.
        let topic = uniqueTestName("signals")
        try """
            kafka:
              default: { bootstrap: "${SLUICE_BOOTSTRAP}" }
            server: { listen: "127.0.0.1:0", drain_grace: 60s }
            connectors:
              - name: stuck
                source: { topics: [\(topic)], properties: { session.timeout.ms: "6000" } }
                sink: { http: { url: "http://127.0.0.1:9/nothing", timeout: 1s } }
                errors: { retry: { max_attempts: forever, max_backoff: 200ms } }
            """.write(toFile: config, atomically: true, encoding: .utf8)
        try await produceWithKcat(topic: topic, keys: 1, perKey: 1)
        let environment = ["SLUICE_BOOTSTRAP": try await TestBroker.bootstrapServers().joined(separator: ",")]
        let process = try SluiceProcess(arguments: ["run", config], environment: environment, log: folder.appendingPathComponent("log").path)
        let port = try await Eventually.value(timeout: .seconds(30), "sluice listens") { () -> Int? in
            let log = (try? String(contentsOfFile: folder.appendingPathComponent("log").path, encoding: .utf8)) ?? ""
            guard let range = log.range(of: "HTTP interface listening on 127.0.0.1:") else { return nil }
            return Int(log[range.upperBound...].prefix { $0.isNumber })
        }
        try await Eventually.require(timeout: .seconds(60), "the delivery is being retried") {
            var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/metrics")
            request.method = .GET
            guard let response = try? await HTTPClient.shared.execute(request, timeout: .seconds(5)),
                let body = try? await response.body.collect(upTo: 1 << 20)
            else { return false }
            return String(buffer: body).contains("sluice_messages_retried_total{connector=\"stuck\"}")
        }
        process.signal(SIGINT)
        try await Eventually.require(timeout: .seconds(10), "the first signal is logged") {
            (try? String(contentsOfFile: folder.appendingPathComponent("log").path, encoding: .utf8))?.contains("draining") ?? false
        }
        #expect(process.exit.status == nil, "still draining after the first signal")
        process.signal(SIGINT)
        let status = try await process.waitForExit(timeout: .seconds(10))
        #expect(status == 130, "the second signal exits at once with status 130")
    }
}
