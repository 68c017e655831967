import Foundation

/// Encodes `Encodable` values as JSON that Foundation's `JSONDecoder` reads back: what ``PersistenceCodec/json(manifest:version:olderVersions:)``
/// writes events and snapshots with.
///
/// Foundation's `JSONEncoder` costs more than the rest of persisting a small event. It takes a lock for its options,
/// casts every nested value to half a dozen types, builds a tree of boxes and then copies its output through `Data`.
/// This encoder builds a small tree (keyed containers can be filled in any order, so it cannot write as it goes) and
/// writes it straight into bytes.
///
/// The output matches `JSONEncoder`'s with `.sortedKeys` and default strategies, value for value:
/// - `Data` is Base64.
/// - `URL` is its absolute string.
/// - `Decimal` is a number.
/// - `Date` is what it encodes itself as (seconds since 2001).
/// - A value that encodes nothing is `{}`.
/// - A later value for a key replaces an earlier one.
/// - Non-finite floating-point numbers throw `EncodingError.invalidValue`.
///
/// One detail differs, and `JSONDecoder` reads both forms: slashes are not escaped.
struct CompactJSONEncoder: Sendable {
    func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        let root = try JSONTreeEncoder.box(value, path: JSONPath())
        var output: [UInt8] = []
        output.reserveCapacity(64)
        root.write(to: &output)
        return output
    }
}

/// A JSON value under construction. Containers are references, so that a nested container handed out earlier can
/// still be filled.
private enum JSONNode {
    case null
    case bool(Bool)
    /// A number, already formatted.
    case number(String)
    case string(String)
    case array(JSONArrayNode)
    case object(JSONObjectNode)
    /// What a super encoder encodes: its place is taken when the encoder is handed out, its value read when written.
    case deferred(JSONTreeEncoder)

    func write(to output: inout [UInt8]) {
        switch self {
        case .null: output.append(contentsOf: "null".utf8)
        case .bool(let value): output.append(contentsOf: (value ? "true" : "false").utf8)
        case .number(let text): output.append(contentsOf: text.utf8)
        case .string(let text): Self.writeString(text, to: &output)
        case .array(let array):
            output.append(UInt8(ascii: "["))
            for (index, element) in array.elements.enumerated() {
                if index > 0 { output.append(UInt8(ascii: ",")) }
                element.write(to: &output)
            }
            output.append(UInt8(ascii: "]"))
        case .object(let object):
            output.append(UInt8(ascii: "{"))
            if let single = object.single {
                Self.writeEntry(single, to: &output)
            } else {
                for (index, entry) in object.sortedEntries().enumerated() {
                    if index > 0 { output.append(UInt8(ascii: ",")) }
                    Self.writeEntry(entry, to: &output)
                }
            }
            output.append(UInt8(ascii: "}"))
        case .deferred(let encoder):
            (encoder.node ?? .object(JSONObjectNode())).write(to: &output)
        }
    }

    private static func writeEntry(_ entry: (key: String, value: JSONNode), to output: inout [UInt8]) {
        writeString(entry.key, to: &output)
        output.append(UInt8(ascii: ":"))
        entry.value.write(to: &output)
    }

    private static let hexDigits = Array("0123456789abcdef".utf8)

    /// A JSON string: quotes, backslashes and control characters escaped, everything else as UTF-8.
    static func writeString(_ text: String, to output: inout [UInt8]) {
        output.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): output.append(contentsOf: #"\""#.utf8)
            case UInt8(ascii: "\\"): output.append(contentsOf: #"\\"#.utf8)
            case UInt8(ascii: "\n"): output.append(contentsOf: #"\n"#.utf8)
            case UInt8(ascii: "\r"): output.append(contentsOf: #"\r"#.utf8)
            case UInt8(ascii: "\t"): output.append(contentsOf: #"\t"#.utf8)
            case 0x08: output.append(contentsOf: #"\b"#.utf8)
            case 0x0C: output.append(contentsOf: #"\f"#.utf8)
            case ..<0x20:
                output.append(contentsOf: #"\u00"#.utf8)
                output.append(hexDigits[Int(byte >> 4)])
                output.append(hexDigits[Int(byte & 0x0F)])
            default: output.append(byte)
            }
        }
        output.append(UInt8(ascii: "\""))
    }
}

private final class JSONArrayNode {
    var elements: [JSONNode] = []
}

private final class JSONObjectNode {
    /// The first entry set: most objects have one (an enum case, a wrapper), and it needs no array.
    private var first: (key: String, value: JSONNode)?
    /// The entries set after the first, in order.
    private var rest: [(key: String, value: JSONNode)] = []

    func set(_ key: String, _ value: JSONNode) {
        if first == nil { first = (key, value) } else { rest.append((key, value)) }
    }

    /// The value set last for `key`, if any.
    func last(_ key: String) -> JSONNode? {
        if let entry = rest.last(where: { $0.key == key }) { return entry.value }
        return first?.key == key ? first?.value : nil
    }

    /// The only entry, when there is exactly one.
    var single: (key: String, value: JSONNode)? { rest.isEmpty ? first : nil }

    /// Entries in key order, the last value of a key winning (as in `JSONEncoder`, whose objects are dictionaries).
    func sortedEntries() -> [(key: String, value: JSONNode)] {
        guard let first else { return [] }
        let entries = [first] + rest
        if entries.count < 2 { return entries }
        // Stable by position among equal keys, so the last one of a key can be kept.
        let ordered = entries.enumerated().sorted { ($0.element.key, $0.offset) < ($1.element.key, $1.offset) }
        var result: [(key: String, value: JSONNode)] = []
        result.reserveCapacity(ordered.count)
        for (_, entry) in ordered {
            if let last = result.last, last.key == entry.key {
                result[result.count - 1] = entry
            } else {
                result.append(entry)
            }
        }
        return result
    }
}

/// A coding path, made into an array only when asked for (by a value that reads it, or for an error): the path of
/// the parent and the last key. Containers and values one level deep then cost no array at all.
private struct JSONPath {
    private let parent: [any CodingKey]
    private let last: (any CodingKey)?

    init() {
        parent = []
        last = nil
    }

    private init(parent: [any CodingKey], last: any CodingKey) {
        self.parent = parent
        self.last = last
    }

    var keys: [any CodingKey] { last.map { parent + [$0] } ?? parent }

    func appending(_ key: any CodingKey) -> JSONPath { JSONPath(parent: keys, last: key) }
}

/// The `Encoder` a value encodes itself into; its result is ``node``.
private final class JSONTreeEncoder: Encoder {
    let path: JSONPath
    var codingPath: [any CodingKey] { path.keys }
    var userInfo: [CodingUserInfoKey: Any] { [:] }
    /// What the value encoded as; `nil` while it encoded nothing.
    var node: JSONNode?

    init(path: JSONPath) {
        self.path = path
    }

    /// Encodes `value` into a node: the special types as `JSONEncoder` writes them, everything else by itself.
    static func box<T: Encodable>(_ value: T, path: JSONPath) throws -> JSONNode {
        if T.self == Data.self {
            return .string((value as! Data).base64EncodedString())
        }
        if T.self == URL.self {
            return .string((value as! URL).absoluteString)
        }
        if T.self == Decimal.self {
            let decimal = value as! Decimal
            guard !decimal.isNaN else {
                throw EncodingError.invalidValue(
                    decimal, EncodingError.Context(codingPath: path.keys, debugDescription: "Unable to encode Decimal.nan directly in JSON."))
            }
            return .number(decimal.description)
        }
        let encoder = JSONTreeEncoder(path: path)
        try value.encode(to: encoder)
        return encoder.node ?? .object(JSONObjectNode())
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        let object: JSONObjectNode
        if case .object(let existing) = node {
            object = existing
        } else {
            object = JSONObjectNode()
            node = .object(object)
        }
        return KeyedEncodingContainer(JSONKeyedContainer<Key>(object: object, path: path))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        let array: JSONArrayNode
        if case .array(let existing) = node {
            array = existing
        } else {
            array = JSONArrayNode()
            node = .array(array)
        }
        return JSONUnkeyedContainer(array: array, path: path)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer {
        JSONSingleValueContainer(encoder: self)
    }
}

/// Formats numbers and checks floating-point values as `JSONEncoder` does.
private enum JSONNumber {
    static func integer<T: BinaryInteger & CustomStringConvertible>(_ value: T) -> JSONNode { .number(value.description) }

    static func floatingPoint<T: BinaryFloatingPoint & CustomStringConvertible>(
        _ value: T, path: @autoclosure () -> JSONPath
    ) throws -> JSONNode {
        guard value.isFinite else {
            throw EncodingError.invalidValue(
                value,
                EncodingError.Context(
                    codingPath: path().keys,
                    debugDescription: "Unable to encode \(T.self).\(value) directly in JSON."))
        }
        // Integral values without ".0", as `JSONEncoder` writes them (1.0 is `1`, -0.0 is `-0`).
        var text = value.description
        if text.hasSuffix(".0") { text.removeLast(2) }
        return .number(text)
    }
}

/// A key that is an array index, for coding paths.
private struct JSONIndexKey: CodingKey {
    let intValue: Int?
    var stringValue: String { "Index \(intValue ?? 0)" }
    init(_ index: Int) { intValue = index }
    init?(stringValue: String) { return nil }
    init?(intValue: Int) { self.intValue = intValue }
}

/// The key a super encoder writes under.
private struct JSONSuperKey: CodingKey {
    var stringValue: String { "super" }
    var intValue: Int? { nil }
    init() {}
    init?(stringValue: String) {}
    init?(intValue: Int) { return nil }
}

private struct JSONKeyedContainer<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let object: JSONObjectNode
    let path: JSONPath
    var codingPath: [any CodingKey] { path.keys }

    private func path(_ key: Key) -> JSONPath { path.appending(key) }

    mutating func encodeNil(forKey key: Key) throws { object.set(key.stringValue, .null) }
    mutating func encode(_ value: Bool, forKey key: Key) throws { object.set(key.stringValue, .bool(value)) }
    mutating func encode(_ value: String, forKey key: Key) throws { object.set(key.stringValue, .string(value)) }
    mutating func encode(_ value: Double, forKey key: Key) throws {
        object.set(key.stringValue, try JSONNumber.floatingPoint(value, path: path(key)))
    }
    mutating func encode(_ value: Float, forKey key: Key) throws {
        object.set(key.stringValue, try JSONNumber.floatingPoint(value, path: path(key)))
    }
    mutating func encode(_ value: Int, forKey key: Key) throws { object.set(key.stringValue, JSONNumber.integer(value)) }
    mutating func encode(_ value: Int8, forKey key: Key) throws { object.set(key.stringValue, JSONNumber.integer(value)) }
    mutating func encode(_ value: Int16, forKey key: Key) throws { object.set(key.stringValue, JSONNumber.integer(value)) }
    mutating func encode(_ value: Int32, forKey key: Key) throws { object.set(key.stringValue, JSONNumber.integer(value)) }
    mutating func encode(_ value: Int64, forKey key: Key) throws { object.set(key.stringValue, JSONNumber.integer(value)) }
    mutating func encode(_ value: UInt, forKey key: Key) throws { object.set(key.stringValue, JSONNumber.integer(value)) }
    mutating func encode(_ value: UInt8, forKey key: Key) throws { object.set(key.stringValue, JSONNumber.integer(value)) }
    mutating func encode(_ value: UInt16, forKey key: Key) throws { object.set(key.stringValue, JSONNumber.integer(value)) }
    mutating func encode(_ value: UInt32, forKey key: Key) throws { object.set(key.stringValue, JSONNumber.integer(value)) }
    mutating func encode(_ value: UInt64, forKey key: Key) throws { object.set(key.stringValue, JSONNumber.integer(value)) }
    mutating func encode(_ value: Int128, forKey key: Key) throws { object.set(key.stringValue, JSONNumber.integer(value)) }
    mutating func encode(_ value: UInt128, forKey key: Key) throws { object.set(key.stringValue, JSONNumber.integer(value)) }
    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        object.set(key.stringValue, try JSONTreeEncoder.box(value, path: path(key)))
    }

    /// Asking twice for a nested container under one key gives the same container (as `JSONEncoder` does).
    mutating func nestedContainer<NestedKey: CodingKey>(
        keyedBy keyType: NestedKey.Type, forKey key: Key
    ) -> KeyedEncodingContainer<NestedKey> {
        let nested: JSONObjectNode
        if case .object(let existing)? = object.last(key.stringValue) {
            nested = existing
        } else {
            nested = JSONObjectNode()
            object.set(key.stringValue, .object(nested))
        }
        return KeyedEncodingContainer(JSONKeyedContainer<NestedKey>(object: nested, path: path(key)))
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        let nested: JSONArrayNode
        if case .array(let existing)? = object.last(key.stringValue) {
            nested = existing
        } else {
            nested = JSONArrayNode()
            object.set(key.stringValue, .array(nested))
        }
        return JSONUnkeyedContainer(array: nested, path: path(key))
    }

    mutating func superEncoder() -> any Encoder {
        let encoder = JSONTreeEncoder(path: path.appending(JSONSuperKey()))
        object.set("super", .deferred(encoder))
        return encoder
    }

    mutating func superEncoder(forKey key: Key) -> any Encoder {
        let encoder = JSONTreeEncoder(path: path(key))
        object.set(key.stringValue, .deferred(encoder))
        return encoder
    }
}

private struct JSONUnkeyedContainer: UnkeyedEncodingContainer {
    let array: JSONArrayNode
    let path: JSONPath
    var codingPath: [any CodingKey] { path.keys }
    var count: Int { array.elements.count }

    private var nextPath: JSONPath { path.appending(JSONIndexKey(array.elements.count)) }

    mutating func encodeNil() throws { array.elements.append(.null) }
    mutating func encode(_ value: Bool) throws { array.elements.append(.bool(value)) }
    mutating func encode(_ value: String) throws { array.elements.append(.string(value)) }
    mutating func encode(_ value: Double) throws {
        array.elements.append(try JSONNumber.floatingPoint(value, path: nextPath))
    }
    mutating func encode(_ value: Float) throws {
        array.elements.append(try JSONNumber.floatingPoint(value, path: nextPath))
    }
    mutating func encode(_ value: Int) throws { array.elements.append(JSONNumber.integer(value)) }
    mutating func encode(_ value: Int8) throws { array.elements.append(JSONNumber.integer(value)) }
    mutating func encode(_ value: Int16) throws { array.elements.append(JSONNumber.integer(value)) }
    mutating func encode(_ value: Int32) throws { array.elements.append(JSONNumber.integer(value)) }
    mutating func encode(_ value: Int64) throws { array.elements.append(JSONNumber.integer(value)) }
    mutating func encode(_ value: UInt) throws { array.elements.append(JSONNumber.integer(value)) }
    mutating func encode(_ value: UInt8) throws { array.elements.append(JSONNumber.integer(value)) }
    mutating func encode(_ value: UInt16) throws { array.elements.append(JSONNumber.integer(value)) }
    mutating func encode(_ value: UInt32) throws { array.elements.append(JSONNumber.integer(value)) }
    mutating func encode(_ value: UInt64) throws { array.elements.append(JSONNumber.integer(value)) }
    mutating func encode(_ value: Int128) throws { array.elements.append(JSONNumber.integer(value)) }
    mutating func encode(_ value: UInt128) throws { array.elements.append(JSONNumber.integer(value)) }
    mutating func encode<T: Encodable>(_ value: T) throws {
        array.elements.append(try JSONTreeEncoder.box(value, path: nextPath))
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        let elementPath = nextPath
        let nested = JSONObjectNode()
        array.elements.append(.object(nested))
        return KeyedEncodingContainer(JSONKeyedContainer<NestedKey>(object: nested, path: elementPath))
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        let elementPath = nextPath
        let nested = JSONArrayNode()
        array.elements.append(.array(nested))
        return JSONUnkeyedContainer(array: nested, path: elementPath)
    }

    mutating func superEncoder() -> any Encoder {
        // The element's place is taken now (later elements go after it); its value is read when it is written.
        let encoder = JSONTreeEncoder(path: nextPath)
        array.elements.append(.deferred(encoder))
        return encoder
    }
}

private struct JSONSingleValueContainer: SingleValueEncodingContainer {
    let encoder: JSONTreeEncoder
    var codingPath: [any CodingKey] { encoder.codingPath }

    private func set(_ node: JSONNode) { encoder.node = node }

    mutating func encodeNil() throws { set(.null) }
    mutating func encode(_ value: Bool) throws { set(.bool(value)) }
    mutating func encode(_ value: String) throws { set(.string(value)) }
    mutating func encode(_ value: Double) throws { set(try JSONNumber.floatingPoint(value, path: encoder.path)) }
    mutating func encode(_ value: Float) throws { set(try JSONNumber.floatingPoint(value, path: encoder.path)) }
    mutating func encode(_ value: Int) throws { set(JSONNumber.integer(value)) }
    mutating func encode(_ value: Int8) throws { set(JSONNumber.integer(value)) }
    mutating func encode(_ value: Int16) throws { set(JSONNumber.integer(value)) }
    mutating func encode(_ value: Int32) throws { set(JSONNumber.integer(value)) }
    mutating func encode(_ value: Int64) throws { set(JSONNumber.integer(value)) }
    mutating func encode(_ value: UInt) throws { set(JSONNumber.integer(value)) }
    mutating func encode(_ value: UInt8) throws { set(JSONNumber.integer(value)) }
    mutating func encode(_ value: UInt16) throws { set(JSONNumber.integer(value)) }
    mutating func encode(_ value: UInt32) throws { set(JSONNumber.integer(value)) }
    mutating func encode(_ value: UInt64) throws { set(JSONNumber.integer(value)) }
    mutating func encode(_ value: Int128) throws { set(JSONNumber.integer(value)) }
    mutating func encode(_ value: UInt128) throws { set(JSONNumber.integer(value)) }
    mutating func encode<T: Encodable>(_ value: T) throws {
        set(try JSONTreeEncoder.box(value, path: encoder.path))
    }
}
