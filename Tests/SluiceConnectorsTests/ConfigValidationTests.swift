import Foundation
import SluiceConnectorConfig
import SluiceKafka
import SluiceTesting
import Testing

/// `sluice validate`'s diagnostics: every kind of mistake is reported at the right file, line and column.
@Suite struct ConfigValidationTests {
    /// A valid base configuration; each broken case replaces one line of it (1-based `line`) with `replacement`.
    static let base = """
        kafka:
          default:
            bootstrap: 127.0.0.1:9092
            security:
              protocol: sasl_ssl
              sasl:
                mechanism: PLAIN
                username: app
                password: ${KAFKA_PASSWORD}
            properties:
              socket.keepalive.enable: "true"
        server:
          listen: 127.0.0.1:8474
        connectors:
          - name: orders
            source:
              topics: [orders]
              group: orders-app
            processors:
              - filter: '.status == "paid"'
              - dedupe: { id: .order_id, window: 10m }
            sink:
              http: { url: "http://127.0.0.1:8080/orders", timeout: 5s }
            delivery:
              commit_interval: 1s
            errors:
              retry: { max_attempts: 5, max_backoff: 10s }
              dead_letter: { topic: orders.dlq }
        """

    static let environment = ["KAFKA_PASSWORD": "s3cr3t-pa55"]

    struct BrokenCase: CustomTestStringConvertible, Sendable {
        var name: String
        var line: Int
        var replacement: String
        var expectedLine: Int
        var expectedColumn: Int
        var expectedMessage: String
        var testDescription: String { name }
    }

    static let cases: [BrokenCase] = [
        .init(name: "unknown top-level key", line: 12, replacement: "servr:", expectedLine: 12, expectedColumn: 1, expectedMessage: "unknown key 'servr' in 'top level' (did you mean 'server'?)"),
        .init(name: "unknown connector key", line: 24, replacement: "    delivry:", expectedLine: 24, expectedColumn: 5, expectedMessage: "unknown key 'delivry' in 'connectors[0]' (did you mean 'delivery'?)"),
        .init(name: "unknown nested key", line: 18, replacement: "      gruop: orders-app", expectedLine: 18, expectedColumn: 7, expectedMessage: "unknown key 'gruop' in 'connectors[0].source' (did you mean 'group'?)"),
        .init(name: "wrong type: list expected", line: 17, replacement: "      topics: { a: b }", expectedLine: 17, expectedColumn: 15, expectedMessage: "'connectors[0].source.topics' must be a list of strings, found a mapping"),
        .init(name: "wrong type: number expected", line: 27, replacement: "      retry: { max_attempts: five, max_backoff: 10s }", expectedLine: 27, expectedColumn: 30, expectedMessage: "'connectors[0].errors.retry.max_attempts' must be a whole number, found 'five'"),
        .init(name: "missing required field", line: 15, replacement: "  - nam: orders", expectedLine: 15, expectedColumn: 5, expectedMessage: "missing required key 'name' in 'connectors[0]'"),
        .init(name: "unknown sink type", line: 23, replacement: "      htpp: { url: \"http://127.0.0.1:8080/orders\" }", expectedLine: 23, expectedColumn: 7, expectedMessage: "unknown sink type 'htpp' in 'connectors[0].sink'; known types: kafka, http, stdout, file (did you mean 'http'?)"),
        .init(name: "unknown processor type", line: 21, replacement: "      - dedup: { id: .order_id, window: 10m }", expectedLine: 21, expectedColumn: 9, expectedMessage: "unknown processor type 'dedup' in 'connectors[0].processors[1]'; known types: filter, map, dedupe, aggregate, http (did you mean 'dedupe'?)"),
        .init(name: "invalid duration", line: 25, replacement: "      commit_interval: 1 second", expectedLine: 25, expectedColumn: 24, expectedMessage: "'connectors[0].delivery.commit_interval' must be a duration such as 250ms, 5s, 1m or 2h, found '1 second'"),
        .init(name: "invalid librdkafka property name", line: 11, replacement: "      socket.keepalive.enabled: \"true\"", expectedLine: 11, expectedColumn: 7, expectedMessage: "unknown librdkafka property 'socket.keepalive.enabled'"),
        .init(name: "invalid librdkafka property value", line: 11, replacement: "      socket.keepalive.enable: \"maybe\"", expectedLine: 11, expectedColumn: 7, expectedMessage: "invalid value 'maybe' for 'socket.keepalive.enable'"),
        .init(name: "missing environment variable", line: 3, replacement: "    bootstrap: ${KAFKA_BOOTSTRAP}", expectedLine: 3, expectedColumn: 16, expectedMessage: "environment variable 'KAFKA_BOOTSTRAP' is not set and has no default"),
        .init(name: "filter syntax error", line: 20, replacement: "      - filter: '.status = \"paid\"'", expectedLine: 20, expectedColumn: 26, expectedMessage: "'=' is not an operator: compare with '=='"),
        .init(name: "bad JSON path", line: 21, replacement: "      - dedupe: { id: order_id, window: 10m }", expectedLine: 21, expectedColumn: 23, expectedMessage: "'order_id' is not a key selector"),
        .init(name: "bad enum value", line: 5, replacement: "      protocol: sasl_tls", expectedLine: 5, expectedColumn: 17, expectedMessage: "'kafka.default.security.protocol' must be one of plaintext, sasl_plaintext, sasl_ssl, ssl, found 'sasl_tls'"),
        .init(name: "bad URL", line: 23, replacement: "      http: { url: \"ftp://app/orders\" }", expectedLine: 23, expectedColumn: 20, expectedMessage: "must be an http:// or https:// URL"),
        .init(name: "unknown cluster", line: 16, replacement: "    cluster: prod\n    source:", expectedLine: 15, expectedColumn: 5, expectedMessage: "connector 'orders' uses Kafka cluster 'prod', which no 'kafka:' section declares"),
        .init(name: "number out of range", line: 25, replacement: "      commit_batch: 0", expectedLine: 25, expectedColumn: 21, expectedMessage: "'connectors[0].delivery.commit_batch' must be between 1 and 1000000, found 0"),
        .init(name: "YAML syntax error", line: 13, replacement: "  listen: [127.0.0.1:8474", expectedLine: 14, expectedColumn: 11, expectedMessage: "YAML syntax error"),
        .init(name: "bad listen address", line: 13, replacement: "  listen: localhost", expectedLine: 13, expectedColumn: 11, expectedMessage: "'server.listen' must be host:port"),
        .init(name: "unknown state store", line: 21, replacement: "      - dedupe: { id: .order_id, window: 10m, state: { store: sqlit } }", expectedLine: 21, expectedColumn: 63, expectedMessage: "'connectors[0].processors[1].dedupe.state.store' must be one of kafka, sqlite, found 'sqlit' (did you mean 'sqlite'?)"),
        .init(name: "state path with the Kafka store", line: 21, replacement: "      - dedupe: { id: .order_id, window: 10m, state: { store: kafka, path: /tmp/x.db } }", expectedLine: 21, expectedColumn: 76, expectedMessage: "'connectors[0].processors[1].dedupe.state.path' is for 'store: sqlite'; a Kafka store takes 'topic'"),
        .init(name: "misspelt state key", line: 21, replacement: "      - dedupe: { id: .order_id, window: 10m, state: { stor: sqlite } }", expectedLine: 21, expectedColumn: 56, expectedMessage: "unknown key 'stor' in 'connectors[0].processors[1].dedupe.state' (did you mean 'store'?)"),
        .init(name: "state on an aggregate", line: 21, replacement: "      - aggregate: { function: count, window: 1m, state: { store: sqlite } }", expectedLine: 21, expectedColumn: 58, expectedMessage: "an aggregate needs no state store"),
    ]

    static func broken(_ brokenCase: BrokenCase) -> String {
        var lines = base.components(separatedBy: "\n")
        lines[brokenCase.line - 1] = brokenCase.replacement
        return lines.joined(separator: "\n")
    }

    @Test func theBaseConfigurationIsValid() throws {
        let configuration = try ConfigurationLoader.load(text: Self.base, file: "base.yaml", environment: Self.environment).get()
        #expect(configuration.connectors.map(\.name) == ["orders"])
        #expect(configuration.clusters["default"]?.client.security.saslPassword == "s3cr3t-pa55")
    }

    @Test(arguments: cases)
    func eachMistakeIsReportedWhereItIs(_ brokenCase: BrokenCase) throws {
        let result = ConfigurationLoader.load(text: Self.broken(brokenCase), file: "broken.yaml", environment: Self.environment)
        guard case .failure(let error) = result else {
            Issue.record("\(brokenCase.name): the broken configuration was accepted")
            return
        }
        let match = error.diagnostics.first { $0.message.contains(brokenCase.expectedMessage) }
        #expect(match != nil, "\(brokenCase.name): expected '\(brokenCase.expectedMessage)' in \(error.diagnostics)")
        if let match {
            #expect(match.location.file == "broken.yaml")
            #expect(
                match.location.line == brokenCase.expectedLine && match.location.column == brokenCase.expectedColumn,
                "\(brokenCase.name): reported at \(match.location.line):\(match.location.column)")
        }
        #expect(!error.description.contains("s3cr3t-pa55"), "a secret leaked into diagnostics")
    }

    @Test func aKafkaStateStoreNeedsASingleInputTopic() throws {
        let text = Self.base.replacingOccurrences(of: "topics: [orders]", with: "pattern: \"orders-.*\"")
            .replacingOccurrences(of: "dedupe: { id: .order_id, window: 10m }", with: "dedupe: { id: .order_id, window: 10m, state: { store: kafka } }")
        guard case .failure(let error) = ConfigurationLoader.load(text: text, file: "state.yaml", environment: Self.environment) else {
            Issue.record("a Kafka state store over a pattern source was accepted")
            return
        }
        #expect(error.diagnostics.contains { $0.message.contains("'store: kafka' needs a source with exactly one topic") }, "\(error.diagnostics)")
    }

    @Test func stateStoresAreRead() throws {
        let sqlite = Self.base.replacingOccurrences(of: "dedupe: { id: .order_id, window: 10m }", with: "dedupe: { id: .order_id, window: 10m, state: {} }")
        let kafka = Self.base.replacingOccurrences(of: "dedupe: { id: .order_id, window: 10m }", with: "dedupe: { id: .order_id, window: 10m, state: { store: kafka, topic: orders-seen } }")
        let path = Self.base.replacingOccurrences(of: "dedupe: { id: .order_id, window: 10m }", with: "dedupe: { id: .order_id, window: 10m, state: { path: /var/lib/sluice/orders.db } }")
        let linger = Self.base.replacingOccurrences(of: "dedupe: { id: .order_id, window: 10m }", with: "dedupe: { id: .order_id, window: 10m, state: { store: kafka, linger: 50ms } }")
        var stores: [StateStoreConfiguration?] = []
        for text in [Self.base, sqlite, kafka, path, linger] {
            let connector = try ConfigurationLoader.load(text: text, file: "state.yaml", environment: Self.environment).get().connectors[0]
            guard case .dedupe(let dedupe) = connector.processors[1] else {
                Issue.record("not a dedupe")
                return
            }
            stores.append(dedupe.state)
        }
        #expect(
            stores == [
                nil, .sqlite(path: nil), .kafka(topic: "orders-seen"), .sqlite(path: "/var/lib/sluice/orders.db"),
                .kafka(topic: nil, linger: .milliseconds(50)),
            ])
    }

    @Test func aStateStoreLingerIsForKafkaAndAtMost15Minutes() throws {
        for (state, message) in [
            ("{ linger: 20ms }", "'connectors[0].processors[1].dedupe.state.linger' is for 'store: kafka'"),
            ("{ store: kafka, linger: 16m }", "'connectors[0].processors[1].dedupe.state.linger' must be at most 15m"),
            ("{ store: kafka, linger: soon }", "'connectors[0].processors[1].dedupe.state.linger' must be a duration"),
        ] {
            let text = Self.base.replacingOccurrences(
                of: "dedupe: { id: .order_id, window: 10m }", with: "dedupe: { id: .order_id, window: 10m, state: \(state) }")
            guard case .failure(let error) = ConfigurationLoader.load(text: text, file: "state.yaml", environment: Self.environment) else {
                Issue.record("\(state) was accepted")
                continue
            }
            #expect(error.diagnostics.contains { $0.message.contains(message) }, "\(error.diagnostics)")
        }
    }

    @Test func secretsNeverAppearInDiagnostics() throws {
        let text = Self.base.replacingOccurrences(of: "password: ${KAFKA_PASSWORD}", with: "password: [\"${KAFKA_PASSWORD}\"]")
            .replacingOccurrences(of: "socket.keepalive.enable: \"true\"", with: "sasl.oauthbearer.client.secret: \"${KAFKA_PASSWORD}\"\n      ssl.key.password: 12")
        let result = ConfigurationLoader.load(text: text, file: "secret.yaml", environment: Self.environment)
        guard case .failure(let error) = result else {
            Issue.record("expected the list-valued password to be rejected")
            return
        }
        #expect(error.diagnostics.contains { $0.message.contains("sasl.password' must be a string") }, "\(error.diagnostics)")
        #expect(!error.description.contains("s3cr3t-pa55"))
    }

    @Test func everyProblemIsReportedAtOnce() throws {
        let text = Self.base.replacingOccurrences(of: "servr", with: "")
            .replacingOccurrences(of: "group: orders-app", with: "gruop: orders-app")
            .replacingOccurrences(of: "commit_interval: 1s", with: "commit_interval: soon")
        guard case .failure(let error) = ConfigurationLoader.load(text: text, file: "many.yaml", environment: Self.environment) else {
            Issue.record("accepted")
            return
        }
        #expect(error.diagnostics.count == 2)
        #expect(error.description.hasSuffix("2 problems found; fix them and run `sluice validate` again."))
    }

    @Test func theValidateCommandPrintsFileLineColumnAndFails() async throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let binary = root.appendingPathComponent(".build/debug/sluice").path
        try #require(FileManager.default.isExecutableFile(atPath: binary), "build the sluice binary first (swift build --build-tests)")
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent(uniqueTestName("validate"))
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        for (index, brokenCase) in Self.cases.prefix(4).enumerated() {
            try Self.broken(brokenCase).write(to: folder.appendingPathComponent("case\(index).yaml"), atomically: true, encoding: .utf8)
        }
        let output = try await runExternalProcess(binary, ["validate", folder.path], environment: Self.environment)
        #expect(output.status == 1)
        for (index, brokenCase) in Self.cases.prefix(4).enumerated() {
            let expected = "\(folder.path)/case\(index).yaml:\(brokenCase.expectedLine):\(brokenCase.expectedColumn): "
            #expect(output.standardOutputString.contains(expected + brokenCase.expectedMessage), "missing \(expected) in \(output.standardOutputString)")
        }
        try Self.base.write(to: folder.appendingPathComponent("valid.yaml"), atomically: true, encoding: .utf8)
        let valid = try await runExternalProcess(binary, ["validate", folder.appendingPathComponent("valid.yaml").path], environment: Self.environment)
        #expect(valid.status == 0)
        #expect(!valid.standardOutputString.contains("s3cr3t"))
    }
}
