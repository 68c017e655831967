import Foundation
import SluiceConnectorConfig
import SluiceConnectors
import SluiceKafka
import SluiceSidecar
import SluiceTesting
import Synchronization
import Testing

/// The sidecar end to end: a real broker, messages produced by kcat, and a real HTTP application.
@Suite struct WebhookSidecarTests {
    static func webhookYAML(
        name: String, topic: String, group: String, appURL: String, extraSink: String = "", errors: String = "",
        server: String = "", requestTimeout: String = "5s"
    ) -> String {
        """
        kafka:
          default:
            bootstrap: ${SLUICE_BOOTSTRAP}
        server:
          listen: 127.0.0.1:0
          drain_grace: 20s
        \(server)
        connectors:
          - name: \(name)
            source:
              topics: [\(topic)]
              group: \(group)
              properties: { session.timeout.ms: "6000", heartbeat.interval.ms: "500" }
            sink:
              http:
                url: \(appURL)
                timeout: \(requestTimeout)
        \(extraSink)
            delivery:
              commit_interval: 100ms
        \(errors)
        """
    }

    @Test func deliversEveryMessageOnceInPerKeyOrderAndCommitsOnlyAfterTheAppsAnswer() async throws {
        try await withTestTopic(partitions: 3, prefix: "webhook") { topic in
            let group = uniqueTestName("webhook")
            let hold = TestGate()
            let held = Mutex<(partition: Int32, offset: Int64)?>(nil)
            let app = TestApplication { delivery in
                if delivery.sequence?.key == "key-0", delivery.sequence?.number == 0 {
                    held.withLock { $0 = (delivery.partition, delivery.offset) }
                    await hold.wait()
                }
                return (200, "{\"status\":\"ok\"}")
            }
            let url = try await app.start()
            defer { app.stop() }
            // The app holds one request until the other keys are through, which on a busy machine can take longer
            // than the usual 5 s request timeout; a timed-out request is retried (at-least-once), which this test,
            // counting exact deliveries, must not provoke.
            let sidecar = try await SidecarHarness.start(
                Self.webhookYAML(name: "orders", topic: topic, group: group, appURL: url, requestTimeout: "120s"))
            try await produceWithKcat(topic: topic, keys: 4, perKey: 25)

            // While the app sits on key-0's first message, the other keys flow on, key-0 waits (per-key order),
            // and key-0's partition is committed no further than that message.
            let (heldPartition, heldOffset) = try await Eventually.value(timeout: .seconds(60), "the app holds key-0:0") { held.withLock { $0 } }
            try await Eventually.require(timeout: .seconds(60), "the other keys are delivered") {
                let byKey = app.acceptedSequencesByKey
                return (1...3).allSatisfy { byKey["key-\($0)"]?.count == 25 }
            }
            #expect(app.acceptedSequencesByKey["key-0"] == nil, "key-0's later messages overtook its first")
            let whileHeld = try await committedOffsets(group: group, topic: topic, partitions: 3)
            #expect((whileHeld[heldPartition] ?? -1) <= heldOffset, "committed past a message the app has not answered")

            hold.open()
            try await Eventually.require(timeout: .seconds(60), "every message is delivered") { app.accepted.count >= 100 }
            let byKey = app.acceptedSequencesByKey
            for key in 0..<4 { #expect(byKey["key-\(key)"] == Array(0..<25), "key-\(key) out of order or duplicated") }
            #expect(app.accepted.count == 100, "exactly once when nothing fails")
            try await Eventually.require(timeout: .seconds(30), "every partition is committed to its end") {
                let committed = try await committedOffsets(group: group, topic: topic, partitions: 3)
                let ends = Dictionary(grouping: app.accepted, by: \.partition).mapValues { ($0.map(\.offset).max() ?? -1) + 1 }
                return ends.allSatisfy { committed[$0.key] == $0.value }
            }
            try await sidecar.stop()
        }
    }

    @Test func anAppFailingWith503ForAWhileLosesNothingAndKeepsPerKeyOrder() async throws {
        try await withTestTopic(partitions: 2, prefix: "webhook503") { topic in
            let failures = Mutex(0)
            let app = TestApplication { _ in
                // The first 40 requests fail with 503, then the app recovers.
                let failing = failures.withLock { count -> Bool in
                    count += 1
                    return count <= 40
                }
                return failing ? (503, "busy") : (200, "")
            }
            let url = try await app.start()
            defer { app.stop() }
            let errors = """
                    errors:
                      retry: { max_attempts: forever, initial_backoff: 20ms, max_backoff: 200ms }
                """
            let sidecar = try await SidecarHarness.start(
                Self.webhookYAML(name: "flaky", topic: topic, group: uniqueTestName("flaky"), appURL: url, errors: errors))
            try await produceWithKcat(topic: topic, keys: 5, perKey: 20)
            try await Eventually.require(timeout: .seconds(90), "every message is delivered") { app.accepted.count >= 100 }
            for key in 0..<5 { #expect(app.acceptedSequencesByKey["key-\(key)"] == Array(0..<20), "key-\(key)") }
            #expect(sidecar.metric("sluice_messages_retried_total", connector: "flaky") >= 40)
            let metrics = try await sidecar.request("GET", "/metrics")
            #expect(metrics.body.contains("sluice_messages_retried_total{connector=\"flaky\"}"))
            #expect(metrics.body.contains("sluice_delivery_duration_seconds_bucket{connector=\"flaky\",le=\"+Inf\"}"))
            try await sidecar.stop()
        }
    }

    @Test func messagesTheAppDropsLandInTheDeadLetterTopicWithTheirContext() async throws {
        try await withTestTopic(partitions: 2, prefix: "webhookdrop") { topic in
            let deadLetters = uniqueTestName("dlq")
            let app = TestApplication { delivery in
                // Every message of key-1 is refused; key-2's are dropped with 422; the rest are accepted.
                switch delivery.sequence?.key {
                case "key-1": (200, "{\"status\":\"drop\",\"reason\":\"unknown customer\"}")
                case "key-2": (422, "bad order")
                default: (200, "")
                }
            }
            let url = try await app.start()
            defer { app.stop() }
            let errors = """
                    errors:
                      dead_letter: { topic: \(deadLetters) }
                """
            let sidecar = try await SidecarHarness.start(
                Self.webhookYAML(name: "dropper", topic: topic, group: uniqueTestName("dropper"), appURL: url, errors: errors))
            try await produceWithKcat(topic: topic, keys: 4, perKey: 5)
            try await Eventually.require(timeout: .seconds(60), "the accepted keys are delivered") { app.accepted.count >= 10 }
            try await Eventually.require(timeout: .seconds(60), "the dropped ones are dead-lettered") {
                sidecar.metric("sluice_messages_dead_lettered_total", connector: "dropper") >= 10
            }
            // Read the dead-letter topic with kcat: original key and value plus the context headers.
            let bootstrap = try await TestBroker.bootstrapServers().joined(separator: ",")
            let output = try await Kcat.run([
                "-C", "-b", bootstrap, "-t", deadLetters, "-o", "beginning", "-c", "10", "-e", "-q",
                "-f", "%k|%s|%h\\n",
            ])
            let lines = output.standardOutputString.split(separator: "\n")
            #expect(lines.count == 10)
            for line in lines {
                let fields = line.split(separator: "|", maxSplits: 2).map(String.init)
                #expect(fields.count == 3)
                #expect(fields[0] == "key-1" || fields[0] == "key-2")
                #expect(fields[1].hasPrefix(fields[0] + ":"))
                let headers = fields[2]
                for name in ["sluice.error.topic=\(topic)", "sluice.error.partition=", "sluice.error.offset=", "sluice.error.connector=dropper", "sluice.error.message=", "sluice.error.attempts=1"] {
                    #expect(headers.contains(name), "missing \(name) in \(headers)")
                }
                #expect(headers.contains(fields[0] == "key-1" ? "sluice.error.class=ApplicationDrop" : "sluice.error.class=HTTPStatus422"))
            }
            #expect(Set(app.accepted.compactMap { $0.sequence?.key }) == ["key-0", "key-3"])
            try await sidecar.stop()
        }
    }

    @Test func batchedDeliveryPostsSeveralMessagesPerRequestInOrder() async throws {
        try await withTestTopic(partitions: 1, prefix: "webhookbatch") { topic in
            let app = TestApplication()
            let url = try await app.start()
            defer { app.stop() }
            let batch = """
                        batch_size: 50
                        linger: 50ms
                """
            let sidecar = try await SidecarHarness.start(
                Self.webhookYAML(name: "batcher", topic: topic, group: uniqueTestName("batch"), appURL: url, extraSink: batch))
            try await produceWithKcat(topic: topic, keys: 3, perKey: 100)
            try await Eventually.require(timeout: .seconds(60), "every message is delivered") { app.accepted.count >= 300 }
            for key in 0..<3 { #expect(app.acceptedSequencesByKey["key-\(key)"] == Array(0..<100)) }
            #expect(app.batchCount < 300 / 2, "messages went in batches (\(app.batchCount) requests for 300)")
            try await sidecar.stop()
        }
    }

    @Test func errorsStopHaltsTheConnectorWithoutCommittingPastTheFailedMessage() async throws {
        try await withTestTopic(partitions: 1, prefix: "webhookstop") { topic in
            let group = uniqueTestName("stop")
            let app = TestApplication { delivery in delivery.sequence?.number == 3 ? (400, "invalid") : (200, "") }
            let url = try await app.start()
            defer { app.stop() }
            let errors = """
                    errors: stop
                """
            let sidecar = try await SidecarHarness.start(Self.webhookYAML(name: "stopper", topic: topic, group: group, appURL: url, errors: errors))
            try await produceWithKcat(topic: topic, keys: 1, perKey: 10)
            try await Eventually.require(timeout: .seconds(60), "the connector halts") {
                sidecar.sidecar.connector(named: "stopper")?.status.state == .halted
            }
            #expect(app.acceptedSequencesByKey["key-0"] == [0, 1, 2])
            let committed = try await committedOffsets(group: group, topic: topic, partitions: 1)
            #expect((committed[0] ?? -1) <= 3, "committed past the failed message (offset 3)")
            let status = try await sidecar.request("GET", "/v1/connectors/stopper")
            #expect(status.body.contains("\"state\":\"halted\""))
            #expect(status.body.contains("HTTPStatus400"))
            let ready = try await sidecar.request("GET", "/readyz")
            #expect(ready.status == 503)
            try await sidecar.stop()
        }
    }

    @Test func tokensProtectTheAPIAndAuthenticateTheSidecarToTheApp() async throws {
        try await withTestTopic(partitions: 1, prefix: "webhookauth") { topic in
            let app = TestApplication()
            let url = try await app.start()
            defer { app.stop() }
            let yaml = Self.webhookYAML(
                name: "secured", topic: topic, group: uniqueTestName("auth"), appURL: url,
                extraSink: "        token_env: TEST_APP_TOKEN", server: "  token_env: TEST_API_TOKEN")
            let sidecar = try await SidecarHarness.start(yaml, environment: ["TEST_API_TOKEN": "api-secret-1", "TEST_APP_TOKEN": "app-secret-2"])
            #expect(try await sidecar.request("GET", "/v1/connectors").status == 401)
            #expect(try await sidecar.request("GET", "/metrics", headers: [("Authorization", "Bearer wrong")]).status == 401)
            #expect(try await sidecar.request("POST", "/v1/publish/\(topic)", body: "{\"value\":\"x\"}").status == 401)
            #expect(try await sidecar.request("GET", "/healthz").status == 200, "probes stay open")
            let authorized = try await sidecar.request("GET", "/v1/connectors", headers: [("Authorization", "Bearer api-secret-1")])
            #expect(authorized.status == 200)
            #expect(!authorized.body.contains("secret"))
            let published = try await sidecar.request(
                "POST", "/v1/publish/\(topic)", body: "{\"key\":\"key-0\",\"value\":\"key-0:0\"}",
                headers: [("Authorization", "Bearer api-secret-1"), ("Content-Type", "application/json")])
            #expect(published.status == 200)
            try await Eventually.require(timeout: .seconds(60), "the published message reaches the app") { app.accepted.count == 1 }
            #expect(app.accepted.first?.authorization == "Bearer app-secret-2")
            let metrics = try await sidecar.request("GET", "/metrics", headers: [("Authorization", "Bearer api-secret-1")])
            #expect(!metrics.body.contains("secret"))
            try await sidecar.stop()
        }
    }
}

@Suite struct SlowApplicationTests {
    @Test func aStalledAppPausesThePartitionsAndKeepsMemoryBounded() async throws {
        try await withTestTopic(partitions: 2, prefix: "slowapp") { topic in
            let gate = TestGate()
            let app = TestApplication { _ in
                await gate.wait()
                return (200, "")
            }
            let url = try await app.start()
            defer { app.stop() }
            let sidecar = try await SidecarHarness.start("""
                kafka:
                  default: { bootstrap: "${SLUICE_BOOTSTRAP}" }
                server: { listen: "127.0.0.1:0" }
                connectors:
                  - name: slow
                    source: { topics: [\(topic)], properties: { session.timeout.ms: "6000", heartbeat.interval.ms: "500" } }
                    sink: { http: { url: "\(url)", concurrency: 4 } }
                    delivery: { max_in_flight_per_partition: 20, commit_interval: 100ms }
                """)
            try await produceWithKcat(topic: topic, keys: 20, perKey: 25)
            let connector = try #require(sidecar.sidecar.connector(named: "slow"))
            // Deliveries are stuck in the app: the connector stops at its in-flight bound and pauses the partitions.
            // (A partition at its in-flight limit is paused; the others stop being read once the stage buffers are
            // full, and would be paused by the consumer's stall policy once its own bounded buffer filled.)
            try await Eventually.require(timeout: .seconds(60), "a partition reaches its in-flight bound and is paused") {
                let rendered = sidecar.sidecar.metrics.render()
                return rendered.contains("sluice_paused_partitions{connector=\"slow\"} 1")
                    || rendered.contains("sluice_paused_partitions{connector=\"slow\"} 2")
            }
            #expect(connector.status.inFlight <= 2 * 20, "in flight: \(connector.status.inFlight)")
            let consumed = sidecar.metric("sluice_messages_consumed_total", connector: "slow")
            #expect(consumed <= 2 * 20 + 4, "\(consumed) of 500 messages were taken in while the app was stalled")
            #expect(app.requestCount <= 4, "at most `concurrency` requests at once")
            gate.open()
            try await Eventually.require(timeout: .seconds(90), "everything is delivered once the app recovers") {
                Set(app.accepted.map { "\($0.partition)/\($0.offset)" }).count == 500
            }
            for (key, sequences) in app.acceptedSequencesByKey { #expect(sequences == Array(0..<25), "\(key)") }
            try await sidecar.stop()
        }
    }
}
