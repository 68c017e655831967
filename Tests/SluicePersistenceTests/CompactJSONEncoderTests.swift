import Foundation
import Testing

@testable import SluicePersistence

/// A corpus of `Codable` shapes: what the compact encoder writes must decode with Foundation's `JSONDecoder` to the
/// same value, and parse as the same JSON as `JSONEncoder`'s output.
private enum Shape: Codable, Equatable {
    case unit
    case labelled(amount: Int, reason: String?)
    case unlabelled(Double, [String])
    case nested(Inner)
}

private struct Inner: Codable, Equatable {
    var flag: Bool
    var small: Int8
    var big: UInt64
    var negative: Int64
    var float: Float
    var maybe: Int?
    var missing: String?
    var list: [Inner]
    var byName: [String: Int]
    var byNumber: [Int: String]
    var byUUID: [UUID: Bool]
}

private struct Everything: Codable, Equatable {
    var text: String
    var escapes: String
    var unicode: String
    var data: Data
    var emptyData: Data
    var url: URL
    var date: Date
    var decimal: Decimal
    var uuid: UUID
    var doubles: [Double]
    var shapes: [Shape]
    var nestedOptional: [Int?]
    var matrix: [[Int]]
    var empty: Empty
    var set: Set<String>
}

private struct Empty: Codable, Equatable {}

/// A class hierarchy whose encoding uses super encoders (keyed and unkeyed).
private class Base: Codable {
    var base: Int
    init(base: Int) { self.base = base }
}

private final class Derived: Base, Equatable {
    var own: String
    var listed: [Int]

    init(base: Int, own: String, listed: [Int]) {
        self.own = own
        self.listed = listed
        super.init(base: base)
    }

    private enum CodingKeys: String, CodingKey { case own, listed, parent }

    required init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        own = try container.decode(String.self, forKey: .own)
        var unkeyed = try container.nestedUnkeyedContainer(forKey: .listed)
        var listed: [Int] = []
        while !unkeyed.isAtEnd { listed.append(try unkeyed.decode(Int.self)) }
        self.listed = listed
        try super.init(from: container.superDecoder())
    }

    override func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(own, forKey: .own)
        var unkeyed = container.nestedUnkeyedContainer(forKey: .listed)
        for value in listed { try unkeyed.encode(value) }
        try super.encode(to: container.superEncoder())
    }

    static func == (lhs: Derived, rhs: Derived) -> Bool {
        lhs.base == rhs.base && lhs.own == rhs.own && lhs.listed == rhs.listed
    }
}

/// Asks twice for the nested containers of one key, and encodes through a super encoder's single-value container
/// (whose encoder nobody keeps): `JSONEncoder` merges the first and writes the value.
private struct ReusedContainers: Encodable {
    private enum CodingKeys: String, CodingKey { case meta, list, scalar }
    private enum MetaKeys: String, CodingKey { case x, y }
    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        var first = container.nestedContainer(keyedBy: MetaKeys.self, forKey: .meta)
        try first.encode(1, forKey: .x)
        var second = container.nestedContainer(keyedBy: MetaKeys.self, forKey: .meta)
        try second.encode(2, forKey: .y)
        var firstList = container.nestedUnkeyedContainer(forKey: .list)
        try firstList.encode(1)
        var secondList = container.nestedUnkeyedContainer(forKey: .list)
        try secondList.encode(2)
        var scalar = container.superEncoder(forKey: .scalar).singleValueContainer()
        try scalar.encode(Int128.max)
    }
}

/// Writes the same key twice: the later value must win, as in `JSONEncoder`.
private struct Overwriting: Encodable {
    private enum CodingKeys: String, CodingKey { case value }
    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(1, forKey: .value)
        try container.encode(2, forKey: .value)
    }
}

/// Where the values of a ``PathTree`` were asked to encode themselves: each one's coding path.
private final class PathLog {
    var paths: [[String]] = []
}

/// Records the coding path its encoder reports.
private struct PathRecorder: Encodable {
    let log: PathLog
    func encode(to encoder: any Encoder) throws {
        log.paths.append(encoder.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue })
        var container = encoder.singleValueContainer()
        try container.encode(0)
    }
}

/// Values at several depths, under keys, indexes and nested containers.
private struct PathTree: Encodable {
    let log: PathLog
    private enum CodingKeys: String, CodingKey { case a, b, e }
    private enum InnerKeys: String, CodingKey { case c, d }
    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(PathRecorder(log: log), forKey: .a)
        var nested = container.nestedContainer(keyedBy: InnerKeys.self, forKey: .b)
        try nested.encode(PathRecorder(log: log), forKey: .c)
        var list = nested.nestedUnkeyedContainer(forKey: .d)
        try list.encode(PathRecorder(log: log))
        var deeper = list.nestedContainer(keyedBy: InnerKeys.self)
        try deeper.encode(PathRecorder(log: log), forKey: .c)
        try container.encode([PathRecorder(log: log), PathRecorder(log: log)], forKey: .e)
    }
}

@Suite("Compact JSON encoder")
struct CompactJSONEncoderTests {
    private let encoder = CompactJSONEncoder()

    /// JSON text parsed and written again by `JSONSerialization`, so that two texts of the same JSON compare equal.
    private func canonical(_ json: Data) throws -> Data {
        let parsed = try JSONSerialization.jsonObject(with: json, options: [.fragmentsAllowed])
        return try JSONSerialization.data(withJSONObject: parsed, options: [.sortedKeys, .fragmentsAllowed])
    }

    private func foundationJSON<T: Encodable>(_ value: T) throws -> Data {
        let reference = JSONEncoder()
        reference.outputFormatting = .sortedKeys
        return try canonical(reference.encode(value))
    }

    private func roundTrip<T: Codable & Equatable>(_ value: T) throws {
        let bytes = try encoder.encode(value)
        #expect(try JSONDecoder().decode(T.self, from: Data(bytes)) == value, "\(String(decoding: bytes, as: UTF8.self))")
        let reference = try foundationJSON(value)
        #expect(
            try canonical(Data(bytes)) == reference,
            "\(String(decoding: bytes, as: UTF8.self)) against \(String(decoding: reference, as: UTF8.self))")
    }

    private var sample: Inner {
        Inner(
            flag: true, small: -128, big: .max, negative: .min, float: 0.1, maybe: 7, missing: nil,
            list: [Inner(flag: false, small: 0, big: 0, negative: 0, float: -2.5, maybe: nil, missing: "x", list: [], byName: [:], byNumber: [:], byUUID: [:])],
            byName: ["b": 2, "a": 1, "": 0], byNumber: [3: "three", -1: "minus one"],
            byUUID: [UUID(uuidString: "E621E1F8-C36C-495A-93FC-0C247A3E6E5F")!: true])
    }

    @Test func everyShapeDecodesBackWithJSONDecoderAndParsesAsJSONEncodersOutput() throws {
        try roundTrip(Shape.unit)
        try roundTrip(Shape.labelled(amount: 3, reason: nil))
        try roundTrip(Shape.labelled(amount: -3, reason: "because"))
        try roundTrip(Shape.unlabelled(1e300, ["a", "b"]))
        try roundTrip(Shape.nested(sample))
        try roundTrip(sample)
        try roundTrip(
            Everything(
                text: "plain", escapes: "quote \" backslash \\ slash / newline \n tab \t return \r nul \u{0} bell \u{7} unit \u{1F}",
                unicode: "héllo wörld ✓ 🎉 \u{2028}", data: Data([0, 1, 2, 254, 255]), emptyData: Data(),
                url: URL(string: "https://example.com/a/b?c=d#e")!, date: Date(timeIntervalSinceReferenceDate: 123_456.789),
                decimal: Decimal(string: "12345.6789")!, uuid: UUID(uuidString: "E621E1F8-C36C-495A-93FC-0C247A3E6E5F")!,
                doubles: [0, -0.0, 0.1, 1, -1.5, 1e-300, 1e300, .greatestFiniteMagnitude, .leastNonzeroMagnitude],
                shapes: [.unit, .labelled(amount: 1, reason: nil)], nestedOptional: [1, nil, 3], matrix: [[], [1], [2, 3]],
                empty: Empty(), set: ["x", "y"]))
        try roundTrip([1, 2, 3])
        try roundTrip("a lone string")
        try roundTrip(42)
        try roundTrip(Optional<Int>.none)
        try roundTrip(Empty())
    }

    @Test func superEncodersWriteWhereJSONEncodersDo() throws {
        let value = Derived(base: 7, own: "mine", listed: [1, 2])
        let bytes = try encoder.encode(value)
        #expect(try JSONDecoder().decode(Derived.self, from: Data(bytes)) == value)
        #expect(try canonical(Data(bytes)) == foundationJSON(value))
    }

    @Test func nestedContainersAskedForTwiceAreOneAndSuperEncodersNeedNoOwner() throws {
        let bytes = try encoder.encode(ReusedContainers())
        #expect(
            String(decoding: bytes, as: UTF8.self)
                == #"{"list":[1,2],"meta":{"x":1,"y":2},"scalar":170141183460469231731687303715884105727}"#)
        #expect(try canonical(Data(bytes)) == foundationJSON(ReusedContainers()))
        #expect(String(decoding: try encoder.encode([UInt128.max]), as: UTF8.self) == "[\(UInt128.max)]")
    }

    /// The full path from the root, as `Encoder.codingPath` is documented. (swift-corelibs-foundation's `JSONEncoder`
    /// on Linux leaves out the keys of nested containers: `["c"]` for `["b", "c"]`.)
    @Test func valuesSeeTheirFullCodingPath() throws {
        let log = PathLog()
        _ = try encoder.encode(PathTree(log: log))
        #expect(log.paths == [["a"], ["b", "c"], ["b", "d", "[0]"], ["b", "d", "[1]", "c"], ["e", "[0]"], ["e", "[1]"]])
    }

    @Test func keysAreSortedAndALaterValueForAKeyWins() throws {
        #expect(String(decoding: try encoder.encode(["b": 1, "a": 2, "c": 3]), as: UTF8.self) == #"{"a":2,"b":1,"c":3}"#)
        #expect(String(decoding: try encoder.encode(Overwriting()), as: UTF8.self) == #"{"value":2}"#)
    }

    @Test func nonFiniteNumbersAreRefusedAsJSONEncoderRefusesThem() throws {
        for value in [Double.nan, .infinity, -.infinity] {
            #expect(throws: EncodingError.self) { try encoder.encode([value]) }
        }
        #expect(throws: EncodingError.self) { try encoder.encode(Float.nan) }
        #expect(throws: EncodingError.self) { try encoder.encode(Decimal.nan) }
    }
}
