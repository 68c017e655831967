public import Foundation
import SluiceKafka

/// Reads connector YAML files into a validated ``SluiceConfiguration``, reporting every problem with its file, line
/// and column. Nothing connects to anything.
public enum ConfigurationLoader {
    /// Loads files, and every `.yaml`/`.yml` file of folders, given on the command line.
    ///
    /// - Returns: the configuration, or every problem found.
    public static func load(
        paths: [String], environment: [String: String] = ProcessInfo.processInfo.environment
    ) -> Result<SluiceConfiguration, ConfigValidationError> {
        let diagnostics = DiagnosticCollector()
        var documents: [(file: String, text: String)] = []
        for path in paths {
            for file in expand(path, diagnostics: diagnostics) {
                guard let data = FileManager.default.contents(atPath: file) else {
                    diagnostics.report(SourceLocation(file: file, line: 1, column: 1), "cannot read the file")
                    continue
                }
                guard let text = String(data: data, encoding: .utf8) else {
                    diagnostics.report(SourceLocation(file: file, line: 1, column: 1), "the file is not UTF-8 text")
                    continue
                }
                documents.append((file, text))
            }
        }
        return build(documents, environment: environment, diagnostics: diagnostics)
    }

    /// Loads configuration from YAML text (for tests and embedded configurations).
    public static func load(
        text: String, file: String = "<inline>", environment: [String: String] = [:]
    ) -> Result<SluiceConfiguration, ConfigValidationError> {
        build([(file, text)], environment: environment, diagnostics: DiagnosticCollector())
    }

    private static func expand(_ path: String, diagnostics: DiagnosticCollector) -> [String] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            diagnostics.report(SourceLocation(file: path, line: 1, column: 1), "no such file or folder")
            return []
        }
        guard isDirectory.boolValue else { return [path] }
        let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        let files = names.filter { $0.hasSuffix(".yaml") || $0.hasSuffix(".yml") }.sorted()
        if files.isEmpty {
            diagnostics.report(SourceLocation(file: path, line: 1, column: 1), "the folder holds no .yaml or .yml files")
        }
        return files.map { (path as NSString).appendingPathComponent($0) }
    }

    private static func build(
        _ documents: [(file: String, text: String)], environment: [String: String], diagnostics: DiagnosticCollector
    ) -> Result<SluiceConfiguration, ConfigValidationError> {
        var clusters: [String: ClusterConfiguration] = [:]
        var server: ServerConfiguration?
        var connectors: [ConnectorConfiguration] = []
        var pendingReferences: [(cluster: String, location: SourceLocation, what: String)] = []

        for document in documents {
            guard let root = ConfigNode.parse(document.text, file: document.file, environment: environment, diagnostics: diagnostics)
            else {
                if !diagnostics.diagnostics.contains(where: { $0.location.file == document.file }) {
                    diagnostics.report(SourceLocation(file: document.file, line: 1, column: 1), "the file is empty")
                }
                continue
            }
            guard let top = MappingReader(root, path: "", diagnostics: diagnostics) else { continue }
            if let kafka = top.mapping("kafka") {
                for name in kafka.keys {
                    guard let clusterReader = kafka.mapping(name) else { continue }
                    if clusters[name] != nil {
                        diagnostics.report(kafka.keyLocation(name), "cluster '\(name)' is declared twice")
                    }
                    if let cluster = ClusterReader.read(name: name, clusterReader, environment: environment) {
                        clusters[name] = cluster
                    }
                }
            }
            if let serverReader = top.mapping("server") {
                if server != nil { diagnostics.report(serverReader.node.location, "'server' is declared in more than one file") }
                server = ServerReader.read(serverReader, environment: environment)
            }
            if let items = top.sequence("connectors") {
                for (index, item) in items.enumerated() {
                    guard let reader = MappingReader(item, path: "connectors[\(index)]", diagnostics: diagnostics) else { continue }
                    if let connector = ConnectorReader.read(reader, environment: environment) {
                        if connectors.contains(where: { $0.name == connector.name }) {
                            diagnostics.report(connector.location, "connector '\(connector.name)' is declared twice")
                        }
                        connectors.append(connector)
                        pendingReferences.append((connector.cluster, connector.location, "connector '\(connector.name)'"))
                        if case .kafka(_, let cluster, _) = connector.sink {
                            pendingReferences.append((cluster, connector.location, "the sink of '\(connector.name)'"))
                        }
                        if case .deadLetter(_, let cluster) = connector.errors.afterRetries {
                            pendingReferences.append((cluster, connector.location, "the dead-letter topic of '\(connector.name)'"))
                        }
                    }
                }
            }
            top.finish()
        }
        for reference in pendingReferences where clusters[reference.cluster] == nil {
            let known = clusters.keys.sorted()
            diagnostics.report(
                reference.location,
                "\(reference.what) uses Kafka cluster '\(reference.cluster)', which no 'kafka:' section declares"
                    + (known.isEmpty ? " (add kafka: { \(reference.cluster): { bootstrap: host:9092 } })" : Suggestions.didYouMean(reference.cluster, among: known)))
        }
        if diagnostics.diagnostics.isEmpty, connectors.isEmpty, let first = documents.first {
            diagnostics.report(SourceLocation(file: first.file, line: 1, column: 1), "no connectors declared (add a 'connectors:' list)")
        }
        guard diagnostics.diagnostics.isEmpty else {
            return .failure(ConfigValidationError(diagnostics: diagnostics.diagnostics))
        }
        return .success(SluiceConfiguration(clusters: clusters, server: server ?? ServerConfiguration(), connectors: connectors))
    }
}

/// Checks raw librdkafka properties offline, reporting each rejected one at its key.
enum PropertyChecker {
    static func check(
        _ entries: [(name: String, value: String, location: SourceLocation, isInterpolated: Bool)], path: String,
        diagnostics: DiagnosticCollector
    ) -> [String: String] {
        var result: [String: String] = [:]
        for entry in entries {
            if let problem = KafkaPropertyValidation.problem(name: entry.name, value: entry.value) {
                diagnostics.report(entry.location, "'\(path).\(entry.name)': \(problem)")
            } else {
                result[entry.name] = entry.value
            }
        }
        return result
    }
}

enum ClusterReader {
    static func read(name: String, _ reader: MappingReader, environment: [String: String]) -> ClusterConfiguration? {
        let bootstrap = reader.stringList("bootstrap")
        if bootstrap == nil { reader.missing("bootstrap") }
        var client = KafkaClientConfiguration(bootstrapServers: bootstrap?.flatMap { $0.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) } } ?? [])
        for server in client.bootstrapServers where !server.contains(":") {
            reader.report("bootstrap", "'\(reader.child("bootstrap"))': '\(server)' has no port (write host:9092)")
        }
        if let clientID = reader.string("client_id") { client.clientID = clientID }
        if let security = reader.mapping("security") {
            let protocolName = security.choice(
                "protocol", ["plaintext": "plaintext", "ssl": "ssl", "sasl_plaintext": "sasl_plaintext", "sasl_ssl": "sasl_ssl"])
                ?? "plaintext"
            var settings = KafkaSecurity(securityProtocol: protocolName)
            if let sasl = security.mapping("sasl") {
                settings.saslMechanism = sasl.choice(
                    "mechanism", ["plain": "PLAIN", "scram-sha-256": "SCRAM-SHA-256", "scram-sha-512": "SCRAM-SHA-512", "oauthbearer": "OAUTHBEARER"],
                    required: true)
                settings.saslUsername = sasl.string("username")
                settings.saslPassword = sasl.string("password")
                sasl.finish()
            }
            if let tls = security.mapping("tls") {
                settings.caLocation = tls.string("ca_file")
                settings.certificateLocation = tls.string("cert_file")
                settings.keyLocation = tls.string("key_file")
                settings.keyPassword = tls.string("key_password")
                tls.finish()
            }
            security.finish()
            client.security = settings
        }
        if let properties = reader.stringMap("properties") {
            client.properties = PropertyChecker.check(properties, path: reader.child("properties"), diagnostics: reader.diagnostics)
        }
        reader.finish()
        return bootstrap == nil ? nil : ClusterConfiguration(name: name, client: client)
    }
}

enum ServerReader {
    static func read(_ reader: MappingReader, environment: [String: String]) -> ServerConfiguration {
        var server = ServerConfiguration()
        if let listen = reader.string("listen") {
            let parts = listen.split(separator: ":", omittingEmptySubsequences: false)
            if parts.count == 2, let port = Int(parts[1]), (0...65535).contains(port), !parts[0].isEmpty {
                server.host = String(parts[0])
                server.port = port
            } else {
                reader.report("listen", "'server.listen' must be host:port, such as 127.0.0.1:8474, found '\(listen)'")
            }
        }
        if let tokenVariable = reader.string("token_env") {
            if let token = environment[tokenVariable], !token.isEmpty {
                server.apiToken = token
            } else {
                reader.report("token_env", "'server.token_env' names environment variable '\(tokenVariable)', which is not set or empty")
            }
        }
        if let grace = reader.duration("drain_grace") { server.drainGrace = grace }
        reader.finish()
        return server
    }
}
