
/// A JSON value as processors see it: parsed once per message, serialized once on output.
public enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    /// Parses UTF-8 JSON (RFC 8259); `nil` when the bytes are not one complete JSON value.
    public static func parse(_ bytes: some Collection<UInt8>) -> JSONValue? {
        var parser = JSONParser(bytes: Array(bytes))
        return parser.parseDocument()
    }

    /// Compact JSON text with sorted keys (deterministic output).
    public func serialized() -> [UInt8] {
        var output: [UInt8] = []
        write(to: &output)
        return output
    }

    private func write(to output: inout [UInt8]) {
        switch self {
        case .null: output += Array("null".utf8)
        case .bool(let value): output += Array((value ? "true" : "false").utf8)
        case .number(let value):
            if value.isFinite, value == value.rounded(), abs(value) < 1e15 {
                output += Array(String(Int64(value)).utf8)
            } else if value.isFinite {
                output += Array("\(value)".utf8)
            } else {
                output += Array("null".utf8)
            }
        case .string(let value): JSONValue.writeString(value, to: &output)
        case .array(let values):
            output.append(UInt8(ascii: "["))
            for (index, value) in values.enumerated() {
                if index > 0 { output.append(UInt8(ascii: ",")) }
                value.write(to: &output)
            }
            output.append(UInt8(ascii: "]"))
        case .object(let members):
            output.append(UInt8(ascii: "{"))
            for (index, key) in members.keys.sorted().enumerated() {
                if index > 0 { output.append(UInt8(ascii: ",")) }
                JSONValue.writeString(key, to: &output)
                output.append(UInt8(ascii: ":"))
                members[key]!.write(to: &output)
            }
            output.append(UInt8(ascii: "}"))
        }
    }

    /// Writes a JSON string literal with the escapes RFC 8259 requires.
    public static func writeString(_ value: String, to output: inout [UInt8]) {
        output.append(UInt8(ascii: "\""))
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "\""): output += [UInt8(ascii: "\\"), UInt8(ascii: "\"")]
            case UInt8(ascii: "\\"): output += [UInt8(ascii: "\\"), UInt8(ascii: "\\")]
            case UInt8(ascii: "\n"): output += [UInt8(ascii: "\\"), UInt8(ascii: "n")]
            case UInt8(ascii: "\r"): output += [UInt8(ascii: "\\"), UInt8(ascii: "r")]
            case UInt8(ascii: "\t"): output += [UInt8(ascii: "\\"), UInt8(ascii: "t")]
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                output += Array("\\u00".utf8) + [hex[Int(byte >> 4)], hex[Int(byte & 0xF)]]
            default: output.append(byte)
            }
        }
        output.append(UInt8(ascii: "\""))
    }

    /// The value's text for keys and ids: strings as they are, other scalars in JSON form.
    public var keyText: String {
        switch self {
        case .string(let value): value
        default: String(decoding: serialized(), as: UTF8.self)
        }
    }

    public var number: Double? {
        switch self {
        case .number(let value): value
        case .string(let text): Double(text)
        default: nil
        }
    }

    var isTruthy: Bool {
        switch self {
        case .null: false
        case .bool(let value): value
        case .number(let value): value != 0
        case .string(let value): !value.isEmpty
        case .array(let values): !values.isEmpty
        case .object: true
        }
    }
}

/// A path into a JSON value, written jq-style: `.order.id`, `.items[0].sku`, `.["odd key"]`; `.` is the whole value.
public struct JSONPath: Sendable, Hashable, CustomStringConvertible {
    enum Component: Sendable, Hashable {
        case member(String)
        case index(Int)
    }

    let components: [Component]
    public let description: String

    /// Parses a path; the error says what is wrong with it.
    public static func parse(_ text: String) -> Result<JSONPath, PathError> {
        var components: [Component] = []
        let characters = Array(text)
        guard characters.first == "." else { return .failure(PathError(message: "a JSON path starts with '.', as in .order.id")) }
        var index = 0
        while index < characters.count {
            if characters[index] == "." {
                index += 1
                if index == characters.count {
                    if components.isEmpty { break }
                    return .failure(PathError(message: "a JSON path must not end with '.'"))
                }
                if characters[index] == "[" { continue }
                var name = ""
                while index < characters.count, characters[index] != ".", characters[index] != "[" {
                    name.append(characters[index])
                    index += 1
                }
                guard !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" }) else {
                    return .failure(PathError(message: "invalid member name '\(name)' (quote odd names: .[\"my key\"])"))
                }
                components.append(.member(name))
            } else if characters[index] == "[" {
                guard let close = characters[index...].firstIndex(of: "]") else {
                    return .failure(PathError(message: "missing ']'"))
                }
                let inside = String(characters[(index + 1)..<close])
                if let number = Int(inside), number >= 0 {
                    components.append(.index(number))
                } else if inside.count >= 2, inside.first == "\"", inside.last == "\"" {
                    components.append(.member(String(inside.dropFirst().dropLast())))
                } else {
                    return .failure(PathError(message: "'[\(inside)]' must hold an index such as [0] or a quoted name"))
                }
                index = close + 1
            } else {
                return .failure(PathError(message: "unexpected '\(characters[index])' (separate members with '.')"))
            }
        }
        return .success(JSONPath(components: components, description: text))
    }

    /// The value at this path, or `nil` when some part of it is missing.
    public func value(in root: JSONValue) -> JSONValue? {
        var current = root
        for component in components {
            switch (component, current) {
            case (.member(let name), .object(let members)):
                guard let next = members[name] else { return nil }
                current = next
            case (.index(let position), .array(let values)):
                guard position < values.count else { return nil }
                current = values[position]
            default: return nil
            }
        }
        return current
    }

    /// Removes the value at this path (nothing happens when it is missing).
    public func remove(from root: inout JSONValue) {
        guard !components.isEmpty else {
            root = .null
            return
        }
        JSONPath.remove(components[...], from: &root)
    }

    private static func remove(_ path: ArraySlice<Component>, from value: inout JSONValue) {
        guard let first = path.first else { return }
        switch (first, value) {
        case (.member(let name), .object(var members)):
            if path.count == 1 {
                members[name] = nil
            } else if var child = members[name] {
                remove(path.dropFirst(), from: &child)
                members[name] = child
            }
            value = .object(members)
        case (.index(let position), .array(var values)) where position < values.count:
            if path.count == 1 {
                values.remove(at: position)
            } else {
                remove(path.dropFirst(), from: &values[position])
            }
            value = .array(values)
        default: return
        }
    }

    /// A path error, with what to write instead.
    public struct PathError: Error, Sendable {
        public var message: String
    }
}
