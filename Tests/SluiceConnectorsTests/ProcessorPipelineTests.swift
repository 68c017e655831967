import Foundation
import SluiceConnectorConfig
import SluiceConnectors
import SluiceKafka
import SluiceSidecar
import SluiceTesting
import Synchronization
import Testing

@Suite struct ProcessorPipelineTests {
    @Test func filterMapDedupeAndAnHTTPEnrichmentFeedAKafkaSink() async throws {
        try await withTestTopic(partitions: 2, prefix: "enrich") { topic in
            let output = uniqueTestName("enriched")
            // The application enriches each order: it answers with the order plus a tier computed from the amount.
            let app = TestApplication { delivery in
                guard case .object(var order) = delivery.value else { return (400, "not an object") }
                order["tier"] = .string((order["total"]?.number ?? 0) >= 100 ? "gold" : "standard")
                return (200, String(decoding: JSONValue.object(order).serialized(), as: UTF8.self))
            }
            let url = try await app.start()
            defer { app.stop() }
            let sidecar = try await SidecarHarness.start("""
                kafka:
                  default: { bootstrap: "${SLUICE_BOOTSTRAP}" }
                server: { listen: "127.0.0.1:0" }
                connectors:
                  - name: enrich
                    source: { topics: [\(topic)], properties: { session.timeout.ms: "6000", heartbeat.interval.ms: "500" } }
                    entity_key: .customer
                    processors:
                      - filter: '.status == "paid" and exists(.amount)'
                      - dedupe: { id: .id, window: 10m }
                      - map: { select: { id: .id, customer: .customer, total: .amount }, set: { source: "sluice" } }
                      - http: { url: "\(url)" }
                    sink: { kafka: { topic: \(output) } }
                """)
            var lines: [String] = []
            for index in 0..<40 {
                let status = index % 4 == 3 ? "open" : "paid"
                lines.append("c\(index % 5)|{\"id\":\"o\(index)\",\"customer\":\"c\(index % 5)\",\"status\":\"\(status)\",\"amount\":\(index * 5)}")
            }
            // Redeliveries of the same orders (same ids) are dropped by the dedupe processor.
            lines += lines.prefix(8)
            let bootstrap = try await TestBroker.bootstrapServers().joined(separator: ",")
            let produced = try await Kcat.run(["-P", "-b", bootstrap, "-t", topic, "-K", "|"], input: Array((lines.joined(separator: "\n") + "\n").utf8))
            #expect(produced.status == 0)

            let expected = (0..<40).filter { $0 % 4 != 3 }  // the paid ones
            try await Eventually.require(timeout: .seconds(60), "the enriched orders reach the output topic") {
                sidecar.metric("sluice_messages_delivered_total", connector: "enrich") >= Double(expected.count)
            }
            let read = try await Kcat.run(["-C", "-b", bootstrap, "-t", output, "-o", "beginning", "-c", "\(expected.count)", "-e", "-q", "-f", "%k|%s\\n"])
            var seen: [Int: JSONValue] = [:]
            for line in read.standardOutputString.split(separator: "\n") {
                let parts = line.split(separator: "|", maxSplits: 1).map(String.init)
                guard case .object(let order)? = JSONValue.parse(Array(parts[1].utf8)), case .string(let id)? = order["id"],
                    let number = Int(id.dropFirst())
                else {
                    Issue.record("unexpected output \(line)")
                    continue
                }
                #expect(parts[0] == "c\(number % 5)", "the key is preserved")
                #expect(order["source"] == .string("sluice"))
                #expect(order["total"]?.number == Double(number * 5))
                #expect(order["tier"] == .string(number * 5 >= 100 ? "gold" : "standard"))
                #expect(order["status"] == nil, "map dropped the fields it did not select")
                seen[number] = .object(order)
            }
            #expect(seen.keys.sorted() == expected)
            #expect(sidecar.metric("sluice_messages_skipped_total", connector: "enrich") == Double(10 + 8), "10 open orders filtered, 8 duplicates")
            try await sidecar.stop()
        }
    }

    @Test func pauseStopsDeliveryAndResumeContinuesIt() async throws {
        try await withTestTopic(partitions: 1, prefix: "pause") { topic in
            let app = TestApplication()
            let url = try await app.start()
            defer { app.stop() }
            let sidecar = try await SidecarHarness.start(WebhookSidecarTests.webhookYAML(name: "pausable", topic: topic, group: uniqueTestName("pause"), appURL: url))
            try await produceWithKcat(topic: topic, keys: 1, perKey: 10)
            try await Eventually.require(timeout: .seconds(60), "the first batch is delivered") { app.accepted.count == 10 }
            let paused = try await sidecar.request("POST", "/v1/connectors/pausable/pause")
            #expect(paused.status == 200)
            #expect(paused.body.contains("\"state\":\"paused\""))
            try await produceWithKcat(topic: topic, keys: 1, perKey: 10, startingAt: 10)
            // While paused, the next record waits at the gate (unacknowledged) and nothing more is taken in.
            let connector = try #require(sidecar.sidecar.connector(named: "pausable"))
            try await Eventually.require(timeout: .seconds(30), "a new record waits at the gate") { connector.status.inFlight >= 1 }
            #expect(app.accepted.count == 10, "delivered while paused")
            #expect(try await sidecar.request("POST", "/v1/connectors/pausable/resume").status == 200)
            try await Eventually.require(timeout: .seconds(60), "delivery continues after resume") { app.accepted.count == 20 }
            #expect(app.acceptedSequencesByKey["key-0"] == Array(0..<20))
            #expect(try await sidecar.request("POST", "/v1/connectors/nosuch/pause").status == 404)
            try await sidecar.stop()
        }
    }
}
