import Yams

/// A YAML node of a configuration file, with its location, after environment interpolation.
struct ConfigNode {
    enum Kind {
        case scalar(String, isQuoted: Bool)
        case mapping([(key: ConfigNode, value: ConfigNode)])
        case sequence([ConfigNode])
    }

    let kind: Kind
    let location: SourceLocation
    /// Whether the value came (partly) from an environment variable: it may be a secret, so never echo it.
    let isInterpolated: Bool

    /// Parses `text` and interpolates environment variables in every scalar; problems go to `diagnostics`.
    /// - Returns: the document's root, or `nil` for an empty file or a YAML syntax error (reported).
    static func parse(
        _ text: String, file: String, environment: [String: String], diagnostics: DiagnosticCollector
    ) -> ConfigNode? {
        do {
            guard let root = try Yams.compose(yaml: text) else { return nil }
            return ConfigNode(root, file: file, environment: environment, diagnostics: diagnostics)
        } catch let error as YamlError {
            let (mark, problem): (Mark?, String) =
                switch error {
                case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _),
                    .composer(_, let problem, let mark, _):
                    (mark, problem)
                case .duplicatedKeysInMapping(let duplicates, _):
                    (nil, "duplicate keys \(duplicates.joined(separator: ", "))")
                default: (nil, "\(error)")
                }
            diagnostics.report(
                SourceLocation(file: file, line: mark?.line ?? 1, column: mark?.column ?? 1), "YAML syntax error: \(problem)")
            return nil
        } catch {
            diagnostics.report(SourceLocation(file: file, line: 1, column: 1), "YAML syntax error: \(error)")
            return nil
        }
    }

    private init(_ node: Node, file: String, environment: [String: String], diagnostics: DiagnosticCollector) {
        let mark = node.mark
        location = SourceLocation(file: file, line: mark?.line ?? 1, column: mark?.column ?? 1)
        switch node {
        case .scalar(let scalar):
            switch EnvironmentInterpolation.interpolate(scalar.string, environment: environment) {
            case .success(let result):
                kind = .scalar(result.value, isQuoted: scalar.style != .plain)
                isInterpolated = result.substituted
            case .failure(let problem):
                diagnostics.report(location, problem.description)
                kind = .scalar("", isQuoted: true)
                isInterpolated = true
            }
        case .mapping(let mapping):
            kind = .mapping(
                mapping.map {
                    (
                        ConfigNode($0.key, file: file, environment: [:], diagnostics: diagnostics),
                        ConfigNode($0.value, file: file, environment: environment, diagnostics: diagnostics)
                    )
                })
            isInterpolated = false
        case .sequence(let sequence):
            kind = .sequence(sequence.map { ConfigNode($0, file: file, environment: environment, diagnostics: diagnostics) })
            isInterpolated = false
        case .alias:
            kind = .scalar("", isQuoted: true)
            isInterpolated = false
            diagnostics.report(location, "YAML aliases are not supported in Sluice configuration")
        }
    }

    /// The scalar's text, or `nil` for mappings and sequences.
    var scalar: String? {
        if case .scalar(let value, _) = kind { return value }
        return nil
    }

    /// Whether the node is YAML's null (`~`, `null` or an empty value).
    var isNull: Bool {
        if case .scalar(let value, let quoted) = kind { return !quoted && ["", "~", "null", "Null", "NULL"].contains(value) }
        return false
    }

    var kindName: String {
        switch kind {
        case .scalar: "a scalar"
        case .mapping: "a mapping"
        case .sequence: "a list"
        }
    }
}
