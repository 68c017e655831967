import Foundation

/// Reads one entry of `connectors:`.
enum ConnectorReader {
    static let processorTypes = ["filter", "map", "dedupe", "aggregate", "http"]
    static let sinkTypes = ["kafka", "http", "stdout", "file"]

    static func read(_ reader: MappingReader, environment: [String: String]) -> ConnectorConfiguration? {
        let diagnostics = reader.diagnostics
        let before = diagnostics.diagnostics.count
        let name = reader.string("name", required: true)
        if let name, !name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." }) {
            reader.report("name", "'\(reader.child("name"))' may hold letters, digits, '-', '_' and '.' only (it names metrics and URLs), found '\(name)'")
        }
        let cluster = reader.string("cluster") ?? "default"
        let source = reader.mapping("source", required: true).flatMap { readSource($0, connectorName: name) }
        var entityKey = KeySelector.messageKey
        if let text = reader.string("entity_key") {
            switch KeySelector.parse(text) {
            case .success(let selector): entityKey = selector
            case .failure(let error): reader.report("entity_key", "'\(reader.child("entity_key"))': \(error.message)")
            }
        }
        var processors: [ProcessorConfiguration] = []
        for (index, item) in (reader.sequence("processors") ?? []).enumerated() {
            if let processor = readProcessor(item, path: reader.child("processors[\(index)]"), diagnostics: diagnostics, environment: environment) {
                processors.append(processor)
            }
        }
        let aggregatePositions = processors.indices.filter { if case .aggregate = processors[$0] { true } else { false } }
        if aggregatePositions.count > 1 {
            reader.report("processors", "'\(reader.child("processors"))': at most one aggregate processor per connector")
        } else if let position = aggregatePositions.first, position != processors.count - 1 {
            reader.report("processors", "'\(reader.child("processors"))': the aggregate processor must come last (its output is the window results; put per-record processors before it)")
        }
        if let source, source.pattern != nil || source.topics.count != 1 {
            for (index, processor) in processors.enumerated() {
                guard case .dedupe(let dedupe) = processor, case .kafka = dedupe.state else { continue }
                reader.report(
                    "processors",
                    "'\(reader.child("processors[\(index)]")).dedupe.state': 'store: kafka' needs a source with exactly "
                        + "one topic (the changelog is partitioned like it); use 'store: sqlite' or one topic")
            }
        }
        let sink = readOneOf(reader, key: "sink", types: sinkTypes) { type, node, path in
            readSink(type: type, node: node, path: path, diagnostics: diagnostics, environment: environment, defaultCluster: cluster)
        }
        var delivery = DeliveryConfiguration()
        if let settings = reader.mapping("delivery") {
            delivery.commitBatch = settings.int("commit_batch", range: 1...1_000_000) ?? delivery.commitBatch
            delivery.commitInterval = settings.duration("commit_interval") ?? delivery.commitInterval
            delivery.maxInFlightPerPartition = settings.int("max_in_flight_per_partition", range: 1...1_000_000) ?? delivery.maxInFlightPerPartition
            delivery.maxInFlightPerKey = settings.int("max_in_flight_per_key", range: 1...1) ?? delivery.maxInFlightPerKey
            delivery.parallelism = settings.int("parallelism", range: 1...10_000) ?? delivery.parallelism
            settings.finish()
        }
        let errors = readErrors(reader, defaultCluster: cluster)
        reader.finish()
        guard diagnostics.diagnostics.count == before, let name, let source, let sink else { return nil }
        return ConnectorConfiguration(
            name: name, cluster: cluster, source: source, entityKey: entityKey, processors: processors, sink: sink,
            delivery: delivery, errors: errors, location: reader.node.location)
    }

    private static func readSource(_ reader: MappingReader, connectorName: String?) -> SourceConfiguration? {
        let topics = reader.stringList("topics") ?? []
        let pattern = reader.string("pattern")
        if topics.isEmpty && pattern == nil {
            reader.diagnostics.report(reader.node.location, "'\(reader.path)' needs 'topics' (a list) or 'pattern' (a regular expression)")
        }
        if !topics.isEmpty && pattern != nil {
            reader.report("pattern", "'\(reader.path)' takes 'topics' or 'pattern', not both")
        }
        if let pattern, (try? NSRegularExpression(pattern: pattern)) == nil {
            reader.report("pattern", "'\(reader.child("pattern"))' is not a valid regular expression: '\(pattern)'")
        }
        let group = reader.string("group") ?? connectorName.map { "sluice-\($0)" } ?? ""
        let start = reader.choice("start", ["earliest": SourceConfiguration.StartPosition.earliest, "latest": .latest]) ?? .earliest
        let properties = reader.stringMap("properties").map {
            PropertyChecker.check($0, path: reader.child("properties"), diagnostics: reader.diagnostics)
        } ?? [:]
        reader.finish()
        return SourceConfiguration(
            topics: topics, pattern: pattern.map { $0.hasPrefix("^") ? $0 : "^" + $0 }, groupID: group, start: start,
            properties: properties)
    }

    /// Reads a mapping with exactly one key naming a type (`sink: { http: {...} }`, a processor list item).
    private static func readOneOf<T>(
        _ reader: MappingReader, key: String, types: [String], read: (String, ConfigNode, String) -> T?
    ) -> T? {
        guard let node = reader.value(key) else {
            reader.missing(key)
            return nil
        }
        return readOneOf(node, path: reader.child(key), types: types, diagnostics: reader.diagnostics, what: key, read: read)
    }

    private static func readOneOf<T>(
        _ node: ConfigNode, path: String, types: [String], diagnostics: DiagnosticCollector, what: String,
        read: (String, ConfigNode, String) -> T?
    ) -> T? {
        if let name = node.scalar, !node.isNull {
            // `sink: stdout` — a type without settings.
            guard types.contains(name) else {
                diagnostics.report(node.location, "unknown \(what) type '\(name)' in '\(path)'; known types: \(types.joined(separator: ", "))" + Suggestions.didYouMean(name, among: types))
                return nil
            }
            return read(name, node, "\(path).\(name)")
        }
        guard case .mapping(let entries) = node.kind, entries.count == 1, let type = entries[0].key.scalar else {
            diagnostics.report(node.location, "'\(path)' must name exactly one \(what) type (one of \(types.joined(separator: ", ")))")
            return nil
        }
        guard types.contains(type) else {
            diagnostics.report(entries[0].key.location, "unknown \(what) type '\(type)' in '\(path)'; known types: \(types.joined(separator: ", "))" + Suggestions.didYouMean(type, among: types))
            return nil
        }
        return read(type, entries[0].value, "\(path).\(type)")
    }

    private static func readProcessor(
        _ node: ConfigNode, path: String, diagnostics: DiagnosticCollector, environment: [String: String]
    ) -> ProcessorConfiguration? {
        readOneOf(node, path: path, types: processorTypes, diagnostics: diagnostics, what: "processor") { type, value, path in
            switch type {
            case "filter":
                guard let text = value.scalar, !value.isNull else {
                    diagnostics.report(value.location, "'\(path)' must be an expression such as '.status == \"paid\"'")
                    return nil
                }
                switch FilterExpression.parse(text) {
                case .success(let expression): return .filter(expression)
                case .failure(let error):
                    var location = value.location
                    if case .scalar(_, let quoted) = value.kind, !value.isInterpolated { location.column += error.position + (quoted ? 1 : 0) }
                    diagnostics.report(location, "'\(path)': \(error.message)")
                    return nil
                }
            case "map":
                guard let reader = MappingReader(value, path: path, diagnostics: diagnostics) else { return nil }
                return readMap(reader)
            case "dedupe":
                guard let reader = MappingReader(value, path: path, diagnostics: diagnostics) else { return nil }
                let id = selector(reader, "id", required: true)
                let window = reader.duration("window") ?? .seconds(600)
                let maxIDs = reader.int("max_ids", range: 1...100_000_000) ?? 100_000
                let state = reader.mapping("state").flatMap(readStateStore)
                reader.finish()
                return id.map {
                    .dedupe(DedupeProcessorConfiguration(id: $0, window: window, maxIDs: maxIDs, state: state))
                }
            case "aggregate":
                guard let reader = MappingReader(value, path: path, diagnostics: diagnostics) else { return nil }
                return readAggregate(reader)
            default:
                return readEndpoint(value, path: path, diagnostics: diagnostics, environment: environment).map { .http($0) }
            }
        }
    }

    private static func selector(_ reader: MappingReader, _ key: String, required: Bool) -> KeySelector? {
        guard let text = reader.string(key, required: required) else { return nil }
        switch KeySelector.parse(text) {
        case .success(let selector): return selector
        case .failure(let error):
            reader.report(key, "'\(reader.child(key))': \(error.message)")
            return nil
        }
    }

    private static func path(_ reader: MappingReader, node: ConfigNode, label: String) -> JSONPath? {
        guard let text = node.scalar else {
            reader.diagnostics.report(node.location, "'\(label)' must be a JSON path such as .order.id")
            return nil
        }
        switch JSONPath.parse(text) {
        case .success(let path): return path
        case .failure(let error):
            reader.diagnostics.report(node.location, "'\(label)': bad JSON path '\(text)': \(error.message)")
            return nil
        }
    }

    private static func readMap(_ reader: MappingReader) -> ProcessorConfiguration? {
        var select: [(String, JSONPath)] = []
        if let selectReader = reader.mapping("select") {
            for name in selectReader.keys {
                if let node = selectReader.value(name), let parsed = path(reader, node: node, label: selectReader.child(name)) {
                    select.append((name, parsed))
                }
            }
        }
        var set: [(String, JSONValue)] = []
        if let setReader = reader.mapping("set") {
            for name in setReader.keys {
                guard let node = setReader.value(name), case .scalar(let text, let isQuoted) = node.kind else {
                    reader.diagnostics.report(setReader.node.location, "'\(setReader.child(name))' must be a string, number, boolean or null")
                    continue
                }
                // Quoted values are strings; plain ones are read as JSON scalars (42, true, null) when they are.
                set.append((name, isQuoted ? .string(text) : (JSONValue.parse(Array(text.utf8)) ?? .string(text))))
            }
        }
        var drop: [JSONPath] = []
        for node in reader.sequence("drop") ?? [] {
            if let parsed = path(reader, node: node, label: reader.child("drop")) { drop.append(parsed) }
        }
        if select.isEmpty && set.isEmpty && drop.isEmpty {
            reader.diagnostics.report(reader.node.location, "'\(reader.path)' needs at least one of select, set, drop")
        }
        reader.finish()
        return .map(MapProcessorConfiguration(select: select, set: set, drop: drop))
    }

    /// `state: { store: sqlite, path: … }` or `state: { store: kafka, topic: …, linger: … }`.
    private static func readStateStore(_ reader: MappingReader) -> StateStoreConfiguration? {
        let store = reader.choice("store", ["sqlite": "sqlite", "kafka": "kafka"]) ?? "sqlite"
        let path = reader.string("path")
        let topic = reader.string("topic")
        let linger = reader.duration("linger")
        if store == "sqlite", topic != nil {
            reader.report("topic", "'\(reader.child("topic"))' is for 'store: kafka'; an SQLite store takes 'path'")
        }
        if store == "sqlite", linger != nil {
            reader.report(
                "linger", "'\(reader.child("linger"))' is for 'store: kafka' (its changelog producer); remove it")
        }
        if let linger, linger > .seconds(900) {
            reader.report("linger", "'\(reader.child("linger"))' must be at most 15m (librdkafka's linger.ms limit)")
        }
        if store == "kafka", path != nil {
            reader.report("path", "'\(reader.child("path"))' is for 'store: sqlite'; a Kafka store takes 'topic'")
        }
        if let path, path.isEmpty { reader.report("path", "'\(reader.child("path"))' must not be empty") }
        reader.finish()
        return store == "kafka" ? .kafka(topic: topic, linger: linger) : .sqlite(path: path)
    }

    private static func readAggregate(_ reader: MappingReader) -> ProcessorConfiguration? {
        let before = reader.diagnostics.diagnostics.count
        if reader.has("state") {
            reader.report(
                "state",
                "'\(reader.child("state"))': an aggregate needs no state store: its inputs stay uncommitted until their "
                    + "window is emitted and delivered, so a restart or rebalance rebuilds open windows from Kafka "
                    + "(see docs/connectors.md); remove 'state'")
        }
        let key = selector(reader, "key", required: false) ?? .messageKey
        let function = reader.choice(
            "function", Dictionary(uniqueKeysWithValues: AggregateProcessorConfiguration.Function.allCases.map { ($0.rawValue, $0) }),
            required: true)
        var field: JSONPath?
        if let node = reader.value("field"), !node.isNull { field = path(reader, node: node, label: reader.child("field")) }
        if let function, function != .count, field == nil, !reader.has("field") {
            reader.diagnostics.report(reader.node.location, "'\(reader.path)': function '\(function.rawValue)' needs 'field' (the JSON path to fold)")
        }
        let window = reader.duration("window")
        if window == nil, !reader.has("window") { reader.missing("window") }
        if let window, window <= .zero { reader.report("window", "'\(reader.child("window"))' must be longer than zero") }
        let grace = reader.duration("grace") ?? .zero
        let idle = reader.duration("idle_close") ?? .seconds(30)
        reader.finish(known: ["state"])
        guard reader.diagnostics.diagnostics.count == before, let function, let window else { return nil }
        return .aggregate(
            AggregateProcessorConfiguration(key: key, function: function, field: field, window: window, grace: grace, idleClose: idle))
    }

    private static func readEndpoint(
        _ node: ConfigNode, path: String, diagnostics: DiagnosticCollector, environment: [String: String]
    ) -> HTTPEndpointConfiguration? {
        guard let reader = MappingReader(node, path: path, diagnostics: diagnostics) else { return nil }
        let url = reader.string("url", required: true)
        if let url {
            let parsed = URL(string: url)
            if parsed?.host == nil || !["http", "https"].contains(parsed?.scheme ?? "") {
                reader.report("url", "'\(reader.child("url"))' must be an http:// or https:// URL, found '\(url)'")
            }
        }
        var endpoint = HTTPEndpointConfiguration(url: url ?? "")
        endpoint.format = reader.choice("format", ["json": HTTPEndpointConfiguration.Format.json, "raw": .raw]) ?? .json
        endpoint.timeout = reader.duration("timeout") ?? endpoint.timeout
        endpoint.batchSize = reader.int("batch_size", range: 1...10_000) ?? 1
        if endpoint.batchSize > 1, endpoint.format == .raw {
            reader.report("batch_size", "'\(reader.child("batch_size"))': batches need format json (raw posts one value per request)")
        }
        endpoint.linger = reader.duration("linger") ?? endpoint.linger
        endpoint.concurrency = reader.int("concurrency", range: 1...10_000) ?? endpoint.concurrency
        if let tokenVariable = reader.string("token_env") {
            if let token = environment[tokenVariable], !token.isEmpty {
                endpoint.appToken = token
            } else {
                reader.report("token_env", "'\(reader.child("token_env"))' names environment variable '\(tokenVariable)', which is not set or empty")
            }
        }
        endpoint.headers = (reader.stringMap("headers") ?? []).map { ($0.name, $0.value) }
        reader.finish()
        return url == nil ? nil : endpoint
    }

    private static func readSink(
        type: String, node: ConfigNode, path: String, diagnostics: DiagnosticCollector, environment: [String: String],
        defaultCluster: String
    ) -> SinkConfiguration? {
        switch type {
        case "stdout":
            if !node.isNull, node.scalar != "stdout", let reader = MappingReader(node, path: path, diagnostics: diagnostics) { reader.finish() }
            return .stdout
        case "file":
            guard let reader = MappingReader(node, path: path, diagnostics: diagnostics) else { return nil }
            let filePath = reader.string("path", required: true)
            reader.finish()
            return filePath.map { .file(path: $0) }
        case "kafka":
            guard let reader = MappingReader(node, path: path, diagnostics: diagnostics) else { return nil }
            let topic = reader.string("topic", required: true)
            let cluster = reader.string("cluster") ?? defaultCluster
            let key = selector(reader, "key", required: false)
            reader.finish()
            return topic.map { .kafka(topic: $0, cluster: cluster, key: key) }
        default:
            return readEndpoint(node, path: path, diagnostics: diagnostics, environment: environment).map { .http($0) }
        }
    }

    private static func readErrors(_ reader: MappingReader, defaultCluster: String) -> ErrorHandlingConfiguration {
        var errors = ErrorHandlingConfiguration()
        guard let node = reader.value("errors"), !node.isNull else { return errors }
        if let text = node.scalar {
            if text == "stop" { return errors }
            reader.diagnostics.report(node.location, "'\(reader.child("errors"))' must be 'stop' or a mapping with retry, dead_letter, on_failure")
            return errors
        }
        guard let settings = MappingReader(node, path: reader.child("errors"), diagnostics: reader.diagnostics) else { return errors }
        if let retry = settings.mapping("retry") {
            if retry.value("max_attempts")?.scalar == "forever" {
                errors.maxAttempts = nil
            } else {
                errors.maxAttempts = retry.int("max_attempts", range: 1...1_000_000) ?? errors.maxAttempts
            }
            errors.initialBackoff = retry.duration("initial_backoff") ?? errors.initialBackoff
            errors.maxBackoff = retry.duration("max_backoff") ?? errors.maxBackoff
            errors.jitter = retry.double("jitter", range: 0...1) ?? errors.jitter
            retry.finish()
        }
        var deadLetter: (topic: String, cluster: String)?
        if let dlq = settings.mapping("dead_letter") {
            if let topic = dlq.string("topic", required: true) { deadLetter = (topic, dlq.string("cluster") ?? defaultCluster) }
            dlq.finish()
        }
        let onFailure = settings.choice("on_failure", ["dead_letter": "dead_letter", "stop": "stop"]) ?? (deadLetter == nil ? "stop" : "dead_letter")
        if onFailure == "dead_letter" {
            if let deadLetter {
                errors.afterRetries = .deadLetter(topic: deadLetter.topic, cluster: deadLetter.cluster)
            } else {
                settings.report("on_failure", "'\(settings.child("on_failure"))' is dead_letter but no 'dead_letter: { topic: ... }' is given")
            }
        }
        settings.finish()
        return errors
    }
}
