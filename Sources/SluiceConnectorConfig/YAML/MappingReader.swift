import Foundation

/// Reads typed values from one YAML mapping, reporting wrong types and missing keys, and (on ``finish()``) every
/// key that was never read, with a did-you-mean suggestion.
final class MappingReader {
    let node: ConfigNode
    let path: String
    private let entries: [(key: ConfigNode, value: ConfigNode)]
    private var read: Set<String> = []
    let diagnostics: DiagnosticCollector

    /// - Parameter path: the mapping's position in the document, used in messages (for example `connectors[0].sink`).
    init?(_ node: ConfigNode, path: String, diagnostics: DiagnosticCollector) {
        self.node = node
        self.path = path
        self.diagnostics = diagnostics
        guard case .mapping(let entries) = node.kind else {
            diagnostics.report(node.location, "'\(path)' must be a mapping (key: value pairs), found \(node.kindName)")
            return nil
        }
        self.entries = entries
        var seen: Set<String> = []
        for entry in entries {
            let key = entry.key.scalar ?? ""
            if !seen.insert(key).inserted { diagnostics.report(entry.key.location, "duplicate key '\(key)' in '\(path)'") }
        }
    }

    var keys: [String] { entries.compactMap { $0.key.scalar } }

    func has(_ key: String) -> Bool { entries.contains { $0.key.scalar == key } }

    /// The value node of `key`, marking the key as known.
    func value(_ key: String) -> ConfigNode? {
        read.insert(key)
        return entries.first { $0.key.scalar == key }?.value
    }

    func keyLocation(_ key: String) -> SourceLocation {
        entries.first { $0.key.scalar == key }?.key.location ?? node.location
    }

    func child(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    func report(_ key: String, _ message: String) {
        diagnostics.report(value(key)?.location ?? node.location, message)
    }

    // MARK: Typed values

    func string(_ key: String, required: Bool = false) -> String? {
        guard let value = value(key), !value.isNull else {
            if required { missing(key) }
            return nil
        }
        guard let text = value.scalar else {
            diagnostics.report(value.location, "'\(child(key))' must be a string, found \(value.kindName)")
            return nil
        }
        if required && text.isEmpty {
            diagnostics.report(value.location, "'\(child(key))' must not be empty")
            return nil
        }
        return text
    }

    func int(_ key: String, range: ClosedRange<Int>? = nil) -> Int? {
        guard let value = value(key), !value.isNull else { return nil }
        guard let text = value.scalar, let number = Int(text.replacingOccurrences(of: "_", with: "")) else {
            diagnostics.report(value.location, "'\(child(key))' must be a whole number, found \(describe(value))")
            return nil
        }
        if let range, !range.contains(number) {
            diagnostics.report(value.location, "'\(child(key))' must be between \(range.lowerBound) and \(range.upperBound), found \(number)")
            return nil
        }
        return number
    }

    func double(_ key: String, range: ClosedRange<Double>? = nil) -> Double? {
        guard let value = value(key), !value.isNull else { return nil }
        guard let text = value.scalar, let number = Double(text) else {
            diagnostics.report(value.location, "'\(child(key))' must be a number, found \(describe(value))")
            return nil
        }
        if let range, !range.contains(number) {
            diagnostics.report(value.location, "'\(child(key))' must be between \(range.lowerBound) and \(range.upperBound), found \(number)")
            return nil
        }
        return number
    }

    func bool(_ key: String) -> Bool? {
        guard let value = value(key), !value.isNull else { return nil }
        switch value.scalar?.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default:
            diagnostics.report(value.location, "'\(child(key))' must be true or false, found \(describe(value))")
            return nil
        }
    }

    func duration(_ key: String) -> Duration? {
        guard let value = value(key), !value.isNull else { return nil }
        guard let text = value.scalar, let duration = DurationParser.parse(text) else {
            diagnostics.report(
                value.location,
                "'\(child(key))' must be a duration such as 250ms, 5s, 1m or 2h, found \(describe(value))")
            return nil
        }
        return duration
    }

    func choice<T>(_ key: String, _ options: [String: T], required: Bool = false) -> T? {
        guard let text = string(key, required: required) else { return nil }
        if let option = options[text.lowercased()] { return option }
        let known = options.keys.sorted()
        diagnostics.report(
            value(key)!.location,
            "'\(child(key))' must be one of \(known.joined(separator: ", ")), found '\(text)'"
                + Suggestions.didYouMean(text, among: known))
        return nil
    }

    func stringList(_ key: String) -> [String]? {
        guard let value = value(key), !value.isNull else { return nil }
        if let single = value.scalar { return [single] }
        guard case .sequence(let items) = value.kind else {
            diagnostics.report(value.location, "'\(child(key))' must be a list of strings, found \(value.kindName)")
            return nil
        }
        var result: [String] = []
        for item in items {
            guard let text = item.scalar, !text.isEmpty else {
                diagnostics.report(item.location, "'\(child(key))' must contain non-empty strings only")
                continue
            }
            result.append(text)
        }
        return result
    }

    /// A mapping of strings to strings (for example raw librdkafka properties or HTTP headers), with locations.
    func stringMap(_ key: String) -> [(name: String, value: String, location: SourceLocation, isInterpolated: Bool)]? {
        guard let value = value(key), !value.isNull else { return nil }
        guard case .mapping(let entries) = value.kind else {
            diagnostics.report(value.location, "'\(child(key))' must be a mapping of names to values, found \(value.kindName)")
            return nil
        }
        var result: [(String, String, SourceLocation, Bool)] = []
        for entry in entries {
            guard let name = entry.key.scalar, let text = entry.value.scalar else {
                diagnostics.report(entry.value.location, "'\(child(key))' values must be strings, numbers or booleans")
                continue
            }
            result.append((name, text, entry.key.location, entry.value.isInterpolated))
        }
        return result
    }

    func mapping(_ key: String, required: Bool = false) -> MappingReader? {
        guard let value = value(key), !value.isNull else {
            if required { missing(key) }
            return nil
        }
        return MappingReader(value, path: child(key), diagnostics: diagnostics)
    }

    func sequence(_ key: String, required: Bool = false) -> [ConfigNode]? {
        guard let value = value(key), !value.isNull else {
            if required { missing(key) }
            return nil
        }
        guard case .sequence(let items) = value.kind else {
            diagnostics.report(value.location, "'\(child(key))' must be a list, found \(value.kindName)")
            return nil
        }
        return items
    }

    func missing(_ key: String) {
        diagnostics.report(node.location, "missing required key '\(key)' in '\(path.isEmpty ? "top level" : path)'")
    }

    /// Reports every key that was not read as unknown, suggesting the closest known one.
    func finish(known extra: [String] = []) {
        let known = Array(read) + extra
        for entry in entries {
            guard let key = entry.key.scalar, !read.contains(key), !extra.contains(key) else { continue }
            diagnostics.report(
                entry.key.location,
                "unknown key '\(key)' in '\(path.isEmpty ? "top level" : path)'" + Suggestions.didYouMean(key, among: known))
        }
    }

    private func describe(_ node: ConfigNode) -> String {
        guard let text = node.scalar else { return node.kindName }
        return node.isInterpolated ? "an interpolated value" : "'\(text)'"
    }
}

/// "Did you mean" suggestions by edit distance.
enum Suggestions {
    static func didYouMean(_ word: String, among candidates: [String]) -> String {
        let scored = candidates.map { (candidate: $0, distance: distance(word.lowercased(), $0.lowercased())) }
        guard let best = scored.min(by: { $0.distance < $1.distance }),
            best.distance <= max(2, word.count / 3)
        else { return "" }
        return " (did you mean '\(best.candidate)'?)"
    }

    static func distance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var previous = Array(0...b.count)
        var current = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            current[0] = i
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            }
            swap(&previous, &current)
        }
        return previous[b.count]
    }
}

/// Durations as written in configuration: `250ms`, `5s`, `1m`, `2h`, `1d`, or combinations like `1m30s`.
public enum DurationParser {
    public static func parse(_ text: String) -> Duration? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        guard !trimmed.isEmpty else { return nil }
        if trimmed == "0" { return .zero }
        var total = Duration.zero
        var digits = ""
        var unit = ""
        func flush() -> Bool {
            guard let amount = Double(digits), !unit.isEmpty else { return false }
            let scale: Double
            switch unit {
            case "ms": scale = 0.001
            case "s": scale = 1
            case "m": scale = 60
            case "h": scale = 3600
            case "d": scale = 86400
            default: return false
            }
            let milliseconds = (amount * scale * 1000).rounded()
            // Longer than a century is a typo, and would not fit in a Duration's milliseconds anyway.
            guard milliseconds.isFinite, milliseconds <= 100 * 365 * 86_400_000 else { return false }
            total += Duration.milliseconds(Int64(milliseconds))
            digits = ""
            unit = ""
            return true
        }
        for character in trimmed {
            if character.isNumber || character == "." {
                if !unit.isEmpty { guard flush() else { return nil } }
                digits.append(character)
            } else if character.isLetter {
                guard !digits.isEmpty else { return nil }
                unit.append(character)
            } else {
                return nil
            }
        }
        guard flush() else { return nil }
        return total
    }
}
