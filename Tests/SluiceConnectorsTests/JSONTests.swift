import SluiceConnectorConfig
import Testing

/// The JSON value, its strict parser and deterministic serializer, and JSON paths.
@Suite struct JSONTests {
    static func parse(_ text: String) -> JSONValue? { JSONValue.parse(Array(text.utf8)) }

    static func text(_ value: JSONValue) -> String { String(decoding: value.serialized(), as: UTF8.self) }

    struct ParseFailed: Error { var text: String }

    static func require(_ text: String) throws -> JSONValue {
        guard let value = parse(text) else { throw ParseFailed(text: text) }
        return value
    }

    // MARK: Parsing

    @Test func scalarsAtTheTopLevel() {
        #expect(Self.parse("null") == .null)
        #expect(Self.parse("true") == .bool(true))
        #expect(Self.parse("false") == .bool(false))
        #expect(Self.parse("42") == .number(42))
        #expect(Self.parse(#""hi""#) == .string("hi"))
        #expect(Self.parse(" \t\r\n 7 \n") == .number(7), "whitespace around the value is allowed")
    }

    @Test func nestedValues() {
        let parsed = Self.parse(#"{"a": [1, {"b": null}, "x", true], "c": {}, "d": []}"#)
        #expect(
            parsed
                == .object([
                    "a": .array([.number(1), .object(["b": .null]), .string("x"), .bool(true)]), "c": .object([:]),
                    "d": .array([]),
                ]))
    }

    @Test func aDuplicateKeyKeepsTheLastValue() {
        #expect(Self.parse(#"{"a": 1, "a": 2}"#) == .object(["a": .number(2)]))
    }

    @Test func parsesAnyCollectionOfBytes() {
        let bytes: ArraySlice<UInt8> = Array("xx[1]".utf8)[2...]
        #expect(JSONValue.parse(bytes) == .array([.number(1)]))
    }

    struct EscapeCase: Sendable, CustomTestStringConvertible {
        var json: String
        var value: String
        var testDescription: String { json }
    }

    static let escapes: [EscapeCase] = [
        .init(json: #""a\nb""#, value: "a\nb"),
        .init(json: #""say \"hi\"""#, value: #"say "hi""#),
        .init(json: #""back\\slash""#, value: #"back\slash"#),
        .init(json: #""a\/b""#, value: "a/b"),
        .init(json: #""\b\f\r\t""#, value: "\u{08}\u{0C}\r\t"),
        .init(json: #""caf\u00e9""#, value: "café"),
        .init(json: #""caf\u00E9""#, value: "café"),
        .init(json: #""\u0041\u0000z""#, value: "A\u{0}z"),
        .init(json: #""\u20ac""#, value: "€"),
        .init(json: #""\ud83d\ude00""#, value: "😀"),
        .init(json: #""\uD834\uDD1E clef""#, value: "𝄞 clef"),
        .init(json: "\"café 😀\"", value: "café 😀"),
    ]

    @Test(arguments: escapes)
    func stringEscapesAreDecoded(_ escape: EscapeCase) {
        #expect(Self.parse(escape.json) == .string(escape.value))
    }

    static let invalid: [String] = [
        "", "   ", "[1, 2,]", #"{"a": 1,}"#, "[,]", "{,}", "[1 2]", #"{"a" 1}"#, #"{"a"}"#, "{a: 1}", "{'a': 1}",
        "'text'", "// comment\n1", "/* comment */ 1", "[1] // comment", #""abc"#, "[1", #"{"a": 1"#, "{", "[",
        #""\x""#, #""\u12""#, #""\u12G4""#, #""abc\"#, #""\ud800""#, #""\udc00""#, #""\ud800\u0041""#, #""\ud800x""#,
        #""\ude00\ud83d""#, "1 2", "{} x", "[]]", "true false", "tru", "nul", "True", "NULL", "NaN", "Infinity",
        "-Infinity", "-", "1.", "1e", "1e+", "--1", "0x10", "1.2.3",
    ]

    @Test(arguments: invalid)
    func invalidJSONIsRejected(_ text: String) {
        #expect(Self.parse(text) == nil, "accepted: \(Self.parse(text).map(Self.text) ?? "")")
    }

    @Test(arguments: Array(0..<0x20))
    func rawControlCharactersInStringsAreRejected(_ byte: Int) {
        let bytes = [UInt8(ascii: "\""), UInt8(ascii: "a"), UInt8(byte), UInt8(ascii: "\"")]
        #expect(JSONValue.parse(bytes) == nil)
    }

    @Test func invalidUTF8InAStringIsRejected() {
        #expect(JSONValue.parse([0x22, 0xFF, 0x22]) == nil)
        #expect(JSONValue.parse([0x22, 0xC3, 0x22]) == nil, "a truncated two-byte sequence")
        #expect(JSONValue.parse([0x22, 0xC3, 0xA9, 0x22]) == .string("é"))
    }

    static func nested(_ depth: Int, open: String, close: String) -> String {
        String(repeating: open, count: depth) + "0" + String(repeating: close, count: depth)
    }

    @Test func nestingIsLimited() {
        #expect(Self.parse(Self.nested(511, open: "[", close: "]")) != nil)
        #expect(Self.parse(Self.nested(511, open: #"{"a":"#, close: "}")) != nil)
        #expect(Self.parse(Self.nested(512, open: "[", close: "]")) == nil)
        #expect(Self.parse(Self.nested(512, open: #"{"a":"#, close: "}")) == nil)
        #expect(Self.parse(Self.nested(256, open: #"[{"a":"#, close: "}]")) == nil, "arrays and objects count together")
        #expect(Self.parse(Self.nested(100_000, open: "[", close: "]")) == nil, "no stack overflow on hostile input")
        #expect(Self.parse(String(repeating: "[", count: 100_000)) == nil)
    }

    @Test func sequentialNestingIsNotLimited() {
        // Depth is about nesting, not about how many containers a document holds.
        let many = "[" + Array(repeating: "[[1]]", count: 2_000).joined(separator: ",") + "]"
        guard case .array(let items)? = Self.parse(many) else {
            Issue.record("rejected")
            return
        }
        #expect(items.count == 2_000)
    }

    // MARK: Numbers

    struct NumberCase: Sendable, CustomTestStringConvertible {
        var json: String
        var value: Double
        var serialized: String
        var testDescription: String { json }
    }

    static let numbers: [NumberCase] = [
        .init(json: "0", value: 0, serialized: "0"),
        .init(json: "-0", value: 0, serialized: "0"),
        .init(json: "42", value: 42, serialized: "42"),
        .init(json: "-17", value: -17, serialized: "-17"),
        .init(json: "42.0", value: 42, serialized: "42"),
        .init(json: "1.5", value: 1.5, serialized: "1.5"),
        .init(json: "-12.75", value: -12.75, serialized: "-12.75"),
        .init(json: "0.1", value: 0.1, serialized: "0.1"),
        .init(json: "1e3", value: 1000, serialized: "1000"),
        .init(json: "1E+2", value: 100, serialized: "100"),
        .init(json: "2.5e-3", value: 0.0025, serialized: "0.0025"),
        .init(json: "123456789012345", value: 123_456_789_012_345, serialized: "123456789012345"),
        .init(json: "-999999999999999", value: -999_999_999_999_999, serialized: "-999999999999999"),
        .init(json: "1700000000000", value: 1_700_000_000_000, serialized: "1700000000000"),
    ]

    @Test(arguments: numbers)
    func numbersParseAndSerialize(_ number: NumberCase) {
        #expect(Self.parse(number.json) == .number(number.value))
        #expect(Self.text(.number(number.value)) == number.serialized)
    }

    @Test(arguments: [1e15, -1e15, 1e300, 1.5e-300, 0.1 + 0.2, 1.0 / 3.0, 123_456.789, 9_007_199_254_740_992])
    func numbersOutsideTheIntegralRangeRoundTrip(_ value: Double) throws {
        let text = Self.text(.number(value))
        #expect(!text.contains("inf") && !text.contains("nan"))
        #expect(try Self.require(text) == .number(value), "\(text)")
    }

    @Test func integralValuesStayIntegral() {
        #expect(Self.text(.array([.number(3), .number(-4), .number(1e14)])) == "[3,-4,100000000000000]")
        #expect(!Self.text(.number(7)).contains("."))
    }

    @Test func nonFiniteNumbersSerializeAsNull() {
        #expect(Self.text(.number(.infinity)) == "null")
        #expect(Self.text(.number(-.infinity)) == "null")
        #expect(Self.text(.number(.nan)) == "null")
    }

    // MARK: Serialization

    @Test func objectKeysAreSorted() {
        #expect(Self.text(.object(["b": .number(1), "a": .number(2), "c": .object(["z": .null, "y": .bool(false)])])) == #"{"a":2,"b":1,"c":{"y":false,"z":null}}"#)
        #expect(Self.text(.object(["B": .null, "a": .null, "_": .null, "1": .null])) == #"{"1":null,"B":null,"_":null,"a":null}"#)
    }

    @Test func outputIsDeterministic() {
        var first: [String: JSONValue] = [:]
        var second: [String: JSONValue] = [:]
        let keys = (0..<200).map { "key\($0)" }
        for key in keys { first[key] = .string(key) }
        for key in keys.reversed() { second[key] = .string(key) }
        #expect(JSONValue.object(first).serialized() == JSONValue.object(second).serialized())
    }

    @Test func compactOutput() {
        #expect(Self.text(.array([])) == "[]")
        #expect(Self.text(.object([:])) == "{}")
        #expect(Self.text(.array([.null, .bool(true), .bool(false), .string("s")])) == #"[null,true,false,"s"]"#)
    }

    struct WrittenCase: Sendable, CustomTestStringConvertible {
        var value: String
        var json: String
        var testDescription: String { json }
    }

    static let written: [WrittenCase] = [
        .init(value: "plain", json: #""plain""#),
        .init(value: "a\nb", json: #""a\nb""#),
        .init(value: "a\r\nb", json: #""a\r\nb""#),
        .init(value: "a\tb", json: #""a\tb""#),
        .init(value: #"say "hi""#, json: #""say \"hi\"""#),
        .init(value: #"back\slash"#, json: #""back\\slash""#),
        .init(value: "\u{01}\u{08}\u{0C}\u{1F}", json: #""\u0001\u0008\u000c\u001f""#),
        .init(value: "\u{0}", json: #""\u0000""#),
        .init(value: "a/b", json: #""a/b""#),
        .init(value: "café 😀", json: "\"café 😀\""),
        .init(value: "\u{7F}", json: "\"\u{7F}\""),
    ]

    @Test(arguments: written)
    func stringsAreEscapedOnOutput(_ written: WrittenCase) {
        var output: [UInt8] = []
        JSONValue.writeString(written.value, to: &output)
        #expect(String(decoding: output, as: UTF8.self) == written.json)
        #expect(Self.text(.string(written.value)) == written.json)
        #expect(Self.parse(written.json) == .string(written.value))
    }

    @Test func everyControlCharacterRoundTrips() throws {
        let all = String((0..<0x20).map { Character(Unicode.Scalar(UInt8($0))) })
        let text = Self.text(.string(all))
        #expect(!text.utf8.dropFirst().dropLast().contains { $0 < 0x20 })
        #expect(try Self.require(text) == .string(all))
    }

    static let documents: [String] = [
        "null", "true", "0", "-1.25", #""x""#, "[]", "{}", #"[1,"two",[3,[4]],{"five":5}]"#,
        #"{"a":{"b":{"c":[true,false,null]}},"key with spaces":"v","unicode":"Zoë 😀","esc":"\"\\\n"}"#,
        #"{"n":-0.5,"big":1e+300,"tiny":5e-324,"int":9007199254740991}"#,
    ]

    @Test(arguments: documents)
    func parseSerializeRoundTrip(_ document: String) throws {
        let value = try Self.require(document)
        let text = Self.text(value)
        #expect(try Self.require(text) == value)
        #expect(Self.text(try Self.require(text)) == text, "serializing is idempotent")
    }

    @Test func canonicalFormOfAPrettyDocument() throws {
        let pretty = """
            {
              "z" : [ 1 , 2.50 , 3e0 ],
              "a" : { "y" : "\\u00e9" , "x" : null }
            }
            """
        #expect(Self.text(try Self.require(pretty)) == #"{"a":{"x":null,"y":"é"},"z":[1,2.5,3]}"#)
    }

    @Test func keyTextAndNumber() {
        #expect(JSONValue.string("abc").keyText == "abc")
        #expect(JSONValue.number(42).keyText == "42")
        #expect(JSONValue.number(2.5).keyText == "2.5")
        #expect(JSONValue.bool(true).keyText == "true")
        #expect(JSONValue.null.keyText == "null")
        #expect(JSONValue.object(["b": .number(1), "a": .string("x")]).keyText == #"{"a":"x","b":1}"#)
        #expect(JSONValue.number(3).number == 3)
        #expect(JSONValue.string("12.5").number == 12.5)
        #expect(JSONValue.string("twelve").number == nil)
        #expect(JSONValue.bool(true).number == nil)
        #expect(JSONValue.null.number == nil)
    }

    // MARK: JSON paths

    static func path(_ text: String) throws -> JSONPath { try JSONPath.parse(text).get() }

    static let sample = """
        {"order": {"id": "o-1", "lines": [{"sku": "a", "qty": 2}, {"sku": "b", "qty": 1}]},
         "odd key": {"x": 1}, "a.b": 7, "n": null, "list": [[10, 11], [12]], "dash-ed_1": true}
        """

    struct PathCase: Sendable, CustomTestStringConvertible {
        var path: String
        var expected: String?
        var testDescription: String { path }
    }

    static let lookups: [PathCase] = [
        .init(path: ".order.id", expected: #""o-1""#),
        .init(path: ".order.lines[0].sku", expected: #""a""#),
        .init(path: ".order.lines[1].qty", expected: "1"),
        .init(path: ".order.lines[2]", expected: nil),
        .init(path: ".order.lines[0]", expected: #"{"qty":2,"sku":"a"}"#),
        .init(path: #".["odd key"].x"#, expected: "1"),
        .init(path: #".["odd key"]["x"]"#, expected: "1"),
        .init(path: #".["a.b"]"#, expected: "7"),
        .init(path: ".a.b", expected: nil),
        .init(path: ".n", expected: "null"),
        .init(path: ".n.deeper", expected: nil),
        .init(path: ".list[0][1]", expected: "11"),
        .init(path: ".list[1][1]", expected: nil),
        .init(path: ".list.0", expected: nil),
        .init(path: ".order[0]", expected: nil),
        .init(path: ".dash-ed_1", expected: "true"),
        .init(path: ".missing", expected: nil),
        .init(path: ".order.id.length", expected: nil),
    ]

    @Test(arguments: lookups)
    func valuesAtPaths(_ lookup: PathCase) throws {
        let document = try Self.require(Self.sample)
        let found = try Self.path(lookup.path).value(in: document)
        #expect(found.map(Self.text) == lookup.expected)
    }

    @Test func theDotIsTheWholeValue() throws {
        let document = try Self.require("[1, 2]")
        #expect(try Self.path(".").value(in: document) == document)
        #expect(try Self.path(".[1]").value(in: document) == .number(2))
        #expect(try Self.path(".[0]").value(in: .string("not an array")) == nil)
    }

    @Test func pathsKeepTheirTextAndCompareByIt() throws {
        #expect(try Self.path(#".items[0]["odd key"]"#).description == #".items[0]["odd key"]"#)
        #expect(try Self.path(".a.b") == (try Self.path(".a.b")))
        #expect(try Self.path(".a.b") != (try Self.path(".a.c")))
        #expect(Set([try Self.path(".a"), try Self.path(".a"), try Self.path(".b")]).count == 2)
    }

    struct PathErrorCase: Sendable, CustomTestStringConvertible {
        var path: String
        var message: String
        var testDescription: String { path }
    }

    static let pathErrors: [PathErrorCase] = [
        .init(path: "", message: "a JSON path starts with '.', as in .order.id"),
        .init(path: "order.id", message: "a JSON path starts with '.'"),
        .init(path: ".a.", message: "a JSON path must not end with '.'"),
        .init(path: "..a", message: "invalid member name ''"),
        .init(path: ".a..b", message: "invalid member name ''"),
        .init(path: ".a b", message: "invalid member name 'a b' (quote odd names: .[\"my key\"])"),
        .init(path: ".a$", message: "invalid member name 'a$'"),
        .init(path: ".a[0", message: "missing ']'"),
        .init(path: ".a[-1]", message: "'[-1]' must hold an index such as [0] or a quoted name"),
        .init(path: ".a[x]", message: "'[x]' must hold an index such as [0] or a quoted name"),
        .init(path: ".a[]", message: "'[]' must hold an index"),
        .init(path: #".a["]"#, message: #"'["]' must hold an index"#),
        .init(path: ".a[0]b", message: "unexpected 'b' (separate members with '.')"),
    ]

    @Test(arguments: pathErrors)
    func pathErrorsSayWhatIsWrong(_ errorCase: PathErrorCase) {
        switch JSONPath.parse(errorCase.path) {
        case .success(let path): Issue.record("'\(errorCase.path)' was accepted as \(path)")
        case .failure(let error): #expect(error.message.contains(errorCase.message), "\(error.message)")
        }
    }

    struct RemoveCase: Sendable, CustomTestStringConvertible {
        var path: String
        var expected: String
        var testDescription: String { path }
    }

    static let removals: [RemoveCase] = [
        .init(path: ".a", expected: #"{"b":{"c":1,"d":2},"items":[{"sku":"x","v":1},{"sku":"y"}]}"#),
        .init(path: ".b.c", expected: #"{"a":0,"b":{"d":2},"items":[{"sku":"x","v":1},{"sku":"y"}]}"#),
        .init(path: ".items[0]", expected: #"{"a":0,"b":{"c":1,"d":2},"items":[{"sku":"y"}]}"#),
        .init(path: ".items[0].v", expected: #"{"a":0,"b":{"c":1,"d":2},"items":[{"sku":"x"},{"sku":"y"}]}"#),
        .init(path: ".items[1].sku", expected: #"{"a":0,"b":{"c":1,"d":2},"items":[{"sku":"x","v":1},{}]}"#),
        .init(path: ".missing", expected: #"{"a":0,"b":{"c":1,"d":2},"items":[{"sku":"x","v":1},{"sku":"y"}]}"#),
        .init(path: ".b.missing.deeper", expected: #"{"a":0,"b":{"c":1,"d":2},"items":[{"sku":"x","v":1},{"sku":"y"}]}"#),
        .init(path: ".items[5]", expected: #"{"a":0,"b":{"c":1,"d":2},"items":[{"sku":"x","v":1},{"sku":"y"}]}"#),
        .init(path: ".a.b", expected: #"{"a":0,"b":{"c":1,"d":2},"items":[{"sku":"x","v":1},{"sku":"y"}]}"#),
        .init(path: ".items.sku", expected: #"{"a":0,"b":{"c":1,"d":2},"items":[{"sku":"x","v":1},{"sku":"y"}]}"#),
        .init(path: ".", expected: "null"),
    ]

    @Test(arguments: removals)
    func removingAtPaths(_ removal: RemoveCase) throws {
        var value = try Self.require(#"{"a": 0, "b": {"c": 1, "d": 2}, "items": [{"sku": "x", "v": 1}, {"sku": "y"}]}"#)
        try Self.path(removal.path).remove(from: &value)
        #expect(Self.text(value) == removal.expected)
    }
}
