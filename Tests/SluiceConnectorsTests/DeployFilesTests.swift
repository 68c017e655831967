import Foundation
import SluiceConnectorConfig
import SluiceKafka
import Testing
import Yams

/// The shipped example connectors and deployment files stay valid: every connector file loads, the Kubernetes
/// manifest and the compose file parse and agree with Sluice's probes, drain grace and listen port, the Dockerfile
/// builds in stages and runs as non-root, and the systemd unit runs `sluice run` with a stop timeout.
@Suite struct DeployFilesTests {
    /// The repository root: this file is Tests/SluiceConnectorsTests/DeployFilesTests.swift.
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    static func path(_ relative: String) -> String { root.appendingPathComponent(relative).path }

    static func text(_ relative: String) throws -> String {
        try String(contentsOfFile: path(relative), encoding: .utf8)
    }

    /// Every YAML document of a file, as plain Swift values.
    static func documents(_ relative: String) throws -> [[String: Any]] {
        var sequence = try Yams.load_all(yaml: try text(relative))
        var documents: [[String: Any]] = []
        while let document = sequence.next() {
            guard let mapping = document as? [String: Any] else {
                Issue.record("\(relative): a document is not a mapping")
                continue
            }
            documents.append(mapping)
        }
        if let error = sequence.error { throw error }
        return documents
    }

    static func connectorFiles() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: path("connectors"))
            .filter { $0.hasSuffix(".yaml") || $0.hasSuffix(".yml") }
            .sorted()
            .map { "connectors/\($0)" }
    }

    /// The configuration, or a failed expectation listing every diagnostic.
    static func expectValid(_ result: Result<SluiceConfiguration, ConfigValidationError>, _ what: String)
        -> SluiceConfiguration?
    {
        switch result {
        case .success(let configuration): return configuration
        case .failure(let error):
            Issue.record("\(what) does not validate:\n\(error)")
            return nil
        }
    }

    @Test func everyExampleConnectorValidatesWithItsDefaults() throws {
        let files = try Self.connectorFiles()
        #expect(files.count >= 4, "connectors/ holds demo.yaml and the three examples")
        var ports: [Int: String] = [:]
        for file in files {
            // No environment at all: every variable the examples use has a default, so they run as they are.
            guard
                let configuration = Self.expectValid(
                    ConfigurationLoader.load(paths: [Self.path(file)], environment: [:]), file)
            else { continue }
            #expect(!configuration.connectors.isEmpty, "\(file) declares connectors")
            if let other = ports[configuration.server.port] {
                Issue.record("\(file) and \(other) both listen on port \(configuration.server.port) by default")
            }
            ports[configuration.server.port] = file
        }
        for example in ["orders-webhook.yaml", "clickstream-aggregation.yaml", "topic-bridge.yaml"] {
            #expect(files.contains("connectors/\(example)"), "connectors/\(example) exists")
        }
    }

    @Test func theExamplesShowWhatTheyPromise() throws {
        let environment = [
            "SLUICE_BOOTSTRAP": "broker-a:9092", "TARGET_BOOTSTRAP": "broker-b:9092",
            "APP_URL": "http://app:8080/orders",
        ]
        let orders = try #require(
            Self.expectValid(
                ConfigurationLoader.load(
                    paths: [Self.path("connectors/orders-webhook.yaml")], environment: environment),
                "orders-webhook.yaml"))
        let webhook = try #require(orders.connectors.first)
        guard case .http(let endpoint) = webhook.sink else {
            Issue.record("orders-webhook.yaml: the sink is \(webhook.sink.typeName), not http")
            return
        }
        #expect(endpoint.url == "http://app:8080/orders")
        guard case .deadLetter(let topic, _) = webhook.errors.afterRetries else {
            Issue.record("orders-webhook.yaml: no dead-letter topic")
            return
        }
        #expect(topic == "orders.dlq")

        let clicks = try #require(
            Self.expectValid(
                ConfigurationLoader.load(
                    paths: [Self.path("connectors/clickstream-aggregation.yaml")], environment: environment),
                "clickstream-aggregation.yaml"))
        let aggregation = try #require(clicks.connectors.first)
        let aggregate = aggregation.processors.compactMap { if case .aggregate(let a) = $0 { a } else { nil } }.first
        #expect(aggregate?.function == .count)
        #expect(aggregate?.key == .messageKey)
        #expect(aggregate?.window == .seconds(60))
        if case .kafka(let sinkTopic, _, _) = aggregation.sink {
            #expect(sinkTopic == "clicks-per-user-minute")
        } else {
            Issue.record("clickstream-aggregation.yaml: the sink is not kafka")
        }

        let bridge = try #require(
            Self.expectValid(
                ConfigurationLoader.load(paths: [Self.path("connectors/topic-bridge.yaml")], environment: environment),
                "topic-bridge.yaml"))
        #expect(bridge.clusters["target"]?.client.bootstrapServers == ["broker-b:9092"])
        if case .kafka(let sinkTopic, let cluster, _) = try #require(bridge.connectors.first).sink {
            #expect(sinkTopic == "events.filtered")
            #expect(cluster == "target")
        } else {
            Issue.record("topic-bridge.yaml: the sink is not kafka")
        }
    }

    @Test func kubernetesManifestProbesGraceAndEmbeddedConnector() throws {
        let documents = try Self.documents("deploy/kubernetes/sluice-sidecar.yaml")
        let configMap = try #require(documents.first { $0["kind"] as? String == "ConfigMap" }, "a ConfigMap")
        let deployment = try #require(documents.first { $0["kind"] as? String == "Deployment" }, "a Deployment")

        let data = try #require(configMap["data"] as? [String: String], "the ConfigMap has data")
        let (file, yaml) = try #require(data.first, "the ConfigMap embeds a connector file")
        let configuration = try #require(
            Self.expectValid(
                ConfigurationLoader.load(
                    text: yaml, file: file,
                    environment: [
                        "SLUICE_BOOTSTRAP": "kafka:9092", "SLUICE_API_TOKEN": "api-token",
                        "SLUICE_APP_TOKEN": "app-token",
                    ]),
                "the ConfigMap's \(file)"))
        let connector = try #require(configuration.connectors.first)
        if case .http(let endpoint) = connector.sink {
            #expect(
                endpoint.url.hasPrefix("http://127.0.0.1:8080/"), "the webhook goes to the app container over loopback")
        } else {
            Issue.record("the embedded connector's sink is \(connector.sink.typeName), not http")
        }

        let spec = try #require((deployment["spec"] as? [String: Any])?["template"] as? [String: Any])
        let podSpec = try #require(spec["spec"] as? [String: Any])
        let containers = try #require(podSpec["containers"] as? [[String: Any]])
        #expect(containers.count >= 2, "an app container and the sluice sidecar")
        let sluice = try #require(containers.first { $0["name"] as? String == "sluice" }, "a container named sluice")

        func probe(_ name: String) -> (path: String?, port: Int?) {
            let httpGet = (sluice[name] as? [String: Any])?["httpGet"] as? [String: Any]
            return (httpGet?["path"] as? String, httpGet?["port"] as? Int)
        }
        #expect(probe("livenessProbe").path == "/healthz")
        #expect(probe("readinessProbe").path == "/readyz")
        #expect(probe("livenessProbe").port == configuration.server.port)
        #expect(probe("readinessProbe").port == configuration.server.port)
        #expect(configuration.server.port == 8474)
        #expect(configuration.server.host != "127.0.0.1", "the kubelet probes the pod IP, not loopback")

        let grace = try #require(
            podSpec["terminationGracePeriodSeconds"] as? Int, "terminationGracePeriodSeconds is set")
        let drain = configuration.server.drainGrace.components.seconds
        #expect(
            Int64(grace) > drain,
            "terminationGracePeriodSeconds (\(grace)) leaves a margin above drain_grace (\(drain)s)")

        // The ConfigMap is what the sidecar reads, and the variables its file needs are in the sidecar's environment.
        let mounts = try #require(sluice["volumeMounts"] as? [[String: Any]])
        let mount = try #require(mounts.first { $0["mountPath"] as? String == "/etc/sluice/connectors" })
        let volumes = try #require(podSpec["volumes"] as? [[String: Any]])
        let volume = try #require(volumes.first { $0["name"] as? String == mount["name"] as? String })
        let configMapName = (configMap["metadata"] as? [String: Any])?["name"] as? String
        #expect((volume["configMap"] as? [String: Any])?["name"] as? String == configMapName)
        let environmentNames = Set(((sluice["env"] as? [[String: Any]]) ?? []).compactMap { $0["name"] as? String })
        for name in ["SLUICE_BOOTSTRAP", "SLUICE_API_TOKEN", "SLUICE_APP_TOKEN"] {
            #expect(environmentNames.contains(name), "the sluice container sets \(name)")
        }
        let tokenFromSecret = ((sluice["env"] as? [[String: Any]]) ?? []).first {
            $0["name"] as? String == "SLUICE_API_TOKEN"
        }
        #expect(
            ((tokenFromSecret?["valueFrom"] as? [String: Any])?["secretKeyRef"]) != nil,
            "the API token comes from a Secret")
    }

    @Test func composeFileParsesAndMountsValidConnectors() throws {
        let documents = try Self.documents("deploy/compose/compose.yaml")
        let compose = try #require(documents.first)
        let services = try #require(compose["services"] as? [String: Any])
        let kafka = try #require(services["kafka"] as? [String: Any])
        #expect((kafka["image"] as? String)?.hasPrefix("apache/kafka") == true)
        let kafkaEnvironment = try #require(kafka["environment"] as? [String: Any])
        #expect((kafkaEnvironment["KAFKA_PROCESS_ROLES"] as? String)?.contains("controller") == true, "KRaft mode")

        let sluice = try #require(services["sluice"] as? [String: Any])
        let build = try #require(sluice["build"] as? [String: Any])
        let context = URL(fileURLWithPath: Self.path("deploy/compose")).appendingPathComponent(
            build["context"] as? String ?? "."
        )
        .standardizedFileURL
        #expect(context.path == Self.root.standardizedFileURL.path, "the build context is the repository root")
        #expect(build["dockerfile"] as? String == "deploy/Dockerfile")

        let environment = (sluice["environment"] as? [String: Any] ?? [:]).compactMapValues { "\($0)" }
        let volumes = try #require(sluice["volumes"] as? [String])
        var mounted = 0
        for volume in volumes {
            let parts = volume.split(separator: ":").map(String.init)
            guard parts.count >= 2, parts[1].hasPrefix("/etc/sluice/connectors") else { continue }
            let source = URL(fileURLWithPath: Self.path("deploy/compose")).appendingPathComponent(parts[0])
                .standardizedFileURL.path
            mounted += 1
            _ = Self.expectValid(
                ConfigurationLoader.load(paths: [source], environment: environment), "compose's \(parts[0])")
        }
        #expect(mounted > 0, "sluice mounts connector files at /etc/sluice/connectors")
    }

    @Test func dockerfileBuildsInStagesAndRunsAsNonRoot() throws {
        let lines = try Self.text("deploy/Dockerfile").split(separator: "\n").map {
            $0.trimmingCharacters(in: .whitespaces)
        }
        let stages = lines.filter { $0.uppercased().hasPrefix("FROM ") }
        #expect(stages.count >= 2, "a build stage and a runtime stage")
        let user = try #require(lines.last { $0.uppercased().hasPrefix("USER ") }, "a USER instruction")
        let name = user.dropFirst("USER ".count).split(separator: ":").first.map(String.init) ?? ""
        #expect(!["root", "0", ""].contains(name), "the image runs as a non-root user, found '\(user)'")
        #expect(lines.contains { $0.hasPrefix("ENTRYPOINT") && $0.contains("\"sluice\"") })
        #expect(lines.contains("CMD [\"run\", \"/etc/sluice/connectors\"]"))
        #expect(lines.contains { $0.contains("scripts/setup") }, "librdkafka 2.8.0 comes from scripts/setup")
    }

    @Test func systemdUnitRunsSluiceWithAStopTimeout() throws {
        let lines = try Self.text("deploy/systemd/sluice.service").split(separator: "\n").map {
            $0.trimmingCharacters(in: .whitespaces)
        }
        func value(_ key: String) -> String? {
            lines.last { $0.hasPrefix("\(key)=") }.map { String($0.dropFirst(key.count + 1)) }
        }
        let execStart = try #require(value("ExecStart"))
        #expect(execStart.contains("sluice run"), "ExecStart runs `sluice run`, found '\(execStart)'")
        let timeout = try #require(value("TimeoutStopSec"), "TimeoutStopSec is set")
        let stopTimeout = try #require(DurationParser.parse(timeout), "TimeoutStopSec '\(timeout)' is a duration")
        #expect(
            stopTimeout > ServerConfiguration().drainGrace,
            "TimeoutStopSec leaves a margin above the default drain_grace")
        #expect(value("KillSignal") == "SIGTERM")
        #expect(value("Restart") == "on-failure")
    }
}
