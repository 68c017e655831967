import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import SluiceSidecar
import SluiceConnectorConfig
import SluiceConnectors
import SluiceKafka
import SluiceTesting
import Testing

/// Runs a sidecar in this process from YAML text (its listener on a free port), for tests.
final class SidecarHarness: Sendable {
    let sidecar: Sidecar
    let task: Task<Void, any Error>
    let baseURL: String
    let http: HTTPClient

    /// Loads `yaml` (with `SLUICE_BOOTSTRAP` set to the test broker), starts the sidecar and waits for its port.
    static func start(_ yaml: String, environment: [String: String] = [:]) async throws -> SidecarHarness {
        let bootstrap = try await TestBroker.bootstrapServers().joined(separator: ",")
        let configuration = try ConfigurationLoader.load(
            text: yaml, file: "test.yaml", environment: environment.merging(["SLUICE_BOOTSTRAP": bootstrap]) { a, _ in a }
        ).get()
        var logger = Logger(label: "sluice.test")
        logger.logLevel = ProcessInfo.processInfo.environment["SLUICE_TEST_LOG_LEVEL"].flatMap { Logger.Level(rawValue: $0) } ?? .notice
        let sidecar = Sidecar(configuration: configuration, logger: logger)
        let task = Task { try await sidecar.run(handleSignals: false) }
        let port = try await Eventually.value(timeout: .seconds(20), "the sidecar listens") { sidecar.port }
        return SidecarHarness(sidecar: sidecar, task: task, baseURL: "http://127.0.0.1:\(port)")
    }

    private init(sidecar: Sidecar, task: Task<Void, any Error>, baseURL: String) {
        self.sidecar = sidecar
        self.task = task
        self.baseURL = baseURL
        http = HTTPClient.shared
    }

    /// Drains and stops the sidecar, then waits for it.
    func stop() async throws {
        sidecar.shutdown()
        try await task.value
    }

    /// Sends a request to the sidecar; returns status and body.
    func request(
        _ method: String, _ path: String, body: String? = nil, headers: [(String, String)] = [("Content-Type", "application/json")]
    ) async throws -> (status: Int, body: String) {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = .init(rawValue: method)
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body { request.body = .bytes(Array(body.utf8)) }
        let response = try await http.execute(request, timeout: .seconds(30))
        let bytes = try await response.body.collect(upTo: 16 * 1024 * 1024)
        return (Int(response.status.code), String(buffer: bytes))
    }

    /// A counter's value from `/metrics`.
    func metric(_ name: String, connector: String) -> Double {
        sidecar.metrics.counter(name, labels: [("connector", connector)])
    }
}

/// The committed offset of each partition for `group`, asked by a consumer that does not join the group.
func committedOffsets(group: String, topic: String, partitions: Int32) async throws -> [Int32: Int64] {
    let inspector = try KafkaConsumer(configuration: try await makeTestConsumerConfiguration(groupID: group))
    defer { Task { await inspector.close() } }
    let offsets = try await inspector.committed((0..<partitions).map { KafkaTopicPartition(topic: topic, partition: $0) })
    return Dictionary(uniqueKeysWithValues: offsets.map { ($0.topicPartition.partition, $0.offset) })
}

/// Produces `perKey` messages for each of `keys` keys with kcat (an independent client), values `"<key>:<n>"`.
/// Returns each partition's end offset per kcat's report.
func produceWithKcat(topic: String, keys: Int, perKey: Int, startingAt start: Int = 0) async throws {
    var input = ""
    for number in start..<(start + perKey) {
        for key in 0..<keys { input += "key-\(key)|key-\(key):\(number)\n" }
    }
    let bootstrap = try await TestBroker.bootstrapServers().joined(separator: ",")
    let output = try await Kcat.run(["-P", "-b", bootstrap, "-t", topic, "-K", "|", "-z", "none"], input: Array(input.utf8))
    #expect(output.status == 0, "kcat failed: \(output.standardError)")
}
