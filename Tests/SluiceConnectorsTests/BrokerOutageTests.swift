import Foundation
import SluiceConnectorConfig
import SluiceKafka
import SluiceTesting
import Synchronization
import Testing

/// A broker that is not there at start-up, then comes, then goes away: the sidecar waits, becomes ready,
/// delivers, turns unready, and never exits on its own.
@Suite struct BrokerOutageTests {
    /// A private Tansu broker on a given port (the shared test broker must not be stopped).
    final class PrivateBroker: Sendable {
        let process: Process
        init(port: Int) throws {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: TestEnvironment.tansuPath)
            process.arguments = ["broker", "--listener-url", "tcp://127.0.0.1:\(port)", "--advertised-listener-url", "tcp://127.0.0.1:\(port)"]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            self.process = process
        }
        /// Kills the broker at once (Tansu may ignore SIGTERM) and waits, without blocking, until it is gone.
        func stop() async throws {
            guard process.isRunning else { return }
            kill(process.processIdentifier, SIGKILL)
            try await Eventually.require(timeout: .seconds(10), "the private broker exits") { !process.isRunning }
        }
    }

    @Test func theSidecarWaitsForAnAbsentBrokerAndTurnsUnreadyWhenItGoes() async throws {
        let port = try FreePort.find()
        let topic = uniqueTestName("outage")
        let app = TestApplication()
        let url = try await app.start()
        defer { app.stop() }
        let sidecar = try await SidecarHarness.start("""
            kafka:
              default: { bootstrap: "127.0.0.1:\(port)" }
            server: { listen: "127.0.0.1:0" }
            connectors:
              - name: outage
                source: { topics: [\(topic)], properties: { session.timeout.ms: "6000", heartbeat.interval.ms: "500", allow.auto.create.topics: "true" } }
                sink: { http: { url: "\(url)" } }
            """)
        // No broker: alive, not ready, still running.
        #expect(try await sidecar.request("GET", "/healthz").status == 200)
        for _ in 0..<5 {
            #expect(try await sidecar.request("GET", "/readyz").status == 503)
        }
        #expect(!sidecar.task.isCancelled)

        // The broker comes: the connector joins, becomes ready and delivers.
        let broker = try PrivateBroker(port: port)
        defer { if broker.process.isRunning { kill(broker.process.processIdentifier, SIGKILL) } }
        let admin = try KafkaAdminClient(configuration: KafkaClientConfiguration(bootstrapServers: ["127.0.0.1:\(port)"]))
        try await Eventually.require(timeout: .seconds(60), "the topic can be created") {
            (try? await admin.createTopic(KafkaTopicSpecification(name: topic, partitions: 1))) != nil
        }
        let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(bootstrapServers: ["127.0.0.1:\(port)"]))
        for number in 0..<5 { _ = try await producer.send(KafkaProducerMessage(topic: topic, key: "key-0", value: "key-0:\(number)")) }
        try await producer.close()
        try await Eventually.require(timeout: .seconds(90), "the messages are delivered") { app.accepted.count == 5 }
        try await Eventually.require(timeout: .seconds(30), "the sidecar is ready") {
            try await sidecar.request("GET", "/readyz").status == 200
        }

        // The broker goes away: readiness turns false, the sidecar keeps running.
        try await broker.stop()
        try await Eventually.require(timeout: .seconds(60), "readiness turns false") {
            try await sidecar.request("GET", "/readyz").status == 503
        }
        #expect(try await sidecar.request("GET", "/healthz").status == 200)
        let status = try await sidecar.request("GET", "/v1/connectors/outage")
        #expect(status.body.contains("brokers unreachable"))
        // The broker comes back before the sidecar is stopped: stopping is not what this test is about, and
        // librdkafka's consumer close can wait for ever for a group coordinator that is gone.
        let returned = try PrivateBroker(port: port)
        defer { if returned.process.isRunning { kill(returned.process.processIdentifier, SIGKILL) } }
        try await sidecar.stop()
    }
}
