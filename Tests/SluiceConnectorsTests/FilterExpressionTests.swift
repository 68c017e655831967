import SluiceConnectorConfig
import Testing

/// The filter language: parsing (precedence, operators, literals, metadata), evaluation over JSON values and
/// metadata, and syntax errors with their positions.
@Suite struct FilterExpressionTests {
    // MARK: Helpers

    struct BadPath: Error { var text: String }

    static func parse(_ text: String) throws -> FilterExpression {
        try FilterExpression.parse(text).get()
    }

    static func path(_ text: String) throws -> FilterExpression.Operand {
        guard case .success(let path) = JSONPath.parse(text) else { throw BadPath(text: text) }
        return .path(path)
    }

    static func truthy(_ text: String) throws -> FilterExpression { .truthy(try path(text)) }

    static func number(_ value: Double) -> FilterExpression.Operand { .literal(.number(value)) }

    static func string(_ value: String) -> FilterExpression.Operand { .literal(.string(value)) }

    static func context(
        _ json: String?, key: String? = nil, topic: String = "orders", partition: Int32 = 0, offset: Int64 = 0,
        headers: [(String, String)] = []
    ) -> MessageContext {
        MessageContext(
            value: json.flatMap { JSONValue.parse(Array($0.utf8)) }, key: key, topic: topic, partition: partition,
            offset: offset, headers: headers.map { (name: $0.0, value: $0.1) })
    }

    static func evaluate(_ expression: String, _ context: MessageContext) throws -> Bool {
        try parse(expression).evaluate(context)
    }

    // MARK: Precedence and grouping

    @Test func andBindsTighterThanOr() throws {
        #expect(try Self.parse(".a or .b and .c") == .or(try Self.truthy(".a"), .and(try Self.truthy(".b"), try Self.truthy(".c"))))
        #expect(try Self.parse(".a and .b or .c") == .or(.and(try Self.truthy(".a"), try Self.truthy(".b")), try Self.truthy(".c")))
    }

    @Test func notBindsTighterThanAnd() throws {
        #expect(try Self.parse("not .a and .b") == .and(.not(try Self.truthy(".a")), try Self.truthy(".b")))
        #expect(try Self.parse("not .a or .b") == .or(.not(try Self.truthy(".a")), try Self.truthy(".b")))
        #expect(try Self.parse("not not .a") == .not(.not(try Self.truthy(".a"))))
    }

    @Test func notAppliesToAWholeComparison() throws {
        #expect(try Self.parse("not .a == 1") == .not(.compare(try Self.path(".a"), .equal, Self.number(1))))
    }

    @Test func parenthesesOverridePrecedence() throws {
        #expect(try Self.parse("(.a or .b) and .c") == .and(.or(try Self.truthy(".a"), try Self.truthy(".b")), try Self.truthy(".c")))
        #expect(try Self.parse("not (.a and .b)") == .not(.and(try Self.truthy(".a"), try Self.truthy(".b"))))
        #expect(try Self.parse("((.a))") == (try Self.truthy(".a")))
    }

    @Test func chainsAreLeftAssociative() throws {
        let a = try Self.truthy(".a"), b = try Self.truthy(".b"), c = try Self.truthy(".c")
        #expect(try Self.parse(".a or .b or .c") == .or(.or(a, b), c))
        #expect(try Self.parse(".a and .b and .c") == .and(.and(a, b), c))
    }

    @Test func precedenceDecidesTheResult() throws {
        // true or (false and false) = true; (true or false) and false = false.
        let context = Self.context(#"{"t": true, "f": false}"#)
        #expect(try Self.evaluate(".t or .f and .f", context))
        #expect(try !Self.evaluate("(.t or .f) and .f", context))
        #expect(try Self.evaluate("not .f and .t", context))
        #expect(try !Self.evaluate("not (.f or .t)", context))
    }

    // MARK: Operators and operands

    @Test(arguments: FilterExpression.Operator.allCases)
    func everyOperatorParses(_ op: FilterExpression.Operator) throws {
        let expected = FilterExpression.compare(try Self.path(".x"), op, Self.number(1))
        #expect(try Self.parse(".x \(op.rawValue) 1") == expected)
        if ["==", "!=", "<", "<=", ">", ">="].contains(op.rawValue) {
            #expect(try Self.parse(".x\(op.rawValue)1") == expected, "symbol operators need no spaces")
        }
    }

    @Test func operatorsNeedNoSpacesAroundNegativeNumbers() throws {
        #expect(try Self.parse(".a<=-1") == .compare(try Self.path(".a"), .lessOrEqual, Self.number(-1)))
        #expect(try Self.parse(".a>=2.5") == .compare(try Self.path(".a"), .greaterOrEqual, Self.number(2.5)))
    }

    @Test func existsAndBareOperands() throws {
        #expect(try Self.parse("exists(.a.b)") == .exists(try Self.path(".a.b")))
        #expect(try Self.parse("exists( @key )") == .exists(.key))
        #expect(try Self.parse(".items[0].sku") == .truthy(try Self.path(".items[0].sku")))
        #expect(try Self.parse("true") == .truthy(.literal(.bool(true))))
        #expect(try Self.parse("null") == .truthy(.literal(.null)))
    }

    struct LiteralCase: Sendable, CustomTestStringConvertible {
        var source: String
        var value: JSONValue
        var testDescription: String { source }
    }

    static let literals: [LiteralCase] = [
        .init(source: #""paid""#, value: .string("paid")),
        .init(source: "'paid'", value: .string("paid")),
        .init(source: #""""#, value: .string("")),
        .init(source: #""it's""#, value: .string("it's")),
        .init(source: #"'say "hi"'"#, value: .string(#"say "hi""#)),
        .init(source: #""a\"b""#, value: .string(#"a"b"#)),
        .init(source: #"'a\'b'"#, value: .string("a'b")),
        .init(source: #""back\\slash""#, value: .string(#"back\slash"#)),
        .init(source: #""two words and or not""#, value: .string("two words and or not")),
        .init(source: #""Zoë ☕""#, value: .string("Zoë ☕")),
        .init(source: "0", value: .number(0)),
        .init(source: "42", value: .number(42)),
        .init(source: "-5", value: .number(-5)),
        .init(source: "2.5", value: .number(2.5)),
        .init(source: "-0.25", value: .number(-0.25)),
        .init(source: "1e3", value: .number(1000)),
        .init(source: "true", value: .bool(true)),
        .init(source: "false", value: .bool(false)),
        .init(source: "null", value: .null),
        .init(source: "[]", value: .array([])),
        .init(source: #"[1, "a", 'b', true, null, -2.5]"#, value: .array([.number(1), .string("a"), .string("b"), .bool(true), .null, .number(-2.5)])),
        .init(source: "[[1, 2], []]", value: .array([.array([.number(1), .number(2)]), .array([])])),
    ]

    @Test(arguments: literals)
    func literalsParse(_ literal: LiteralCase) throws {
        #expect(try Self.parse(".x == \(literal.source)") == .compare(try Self.path(".x"), .equal, .literal(literal.value)))
    }

    @Test func metadataOperands() throws {
        #expect(try Self.parse("@key") == .truthy(.key))
        #expect(try Self.parse("@topic") == .truthy(.topic))
        #expect(try Self.parse("@partition") == .truthy(.partition))
        #expect(try Self.parse("@offset") == .truthy(.offset))
        #expect(try Self.parse("@header.source") == .truthy(.header("source")))
        #expect(try Self.parse("@header.trace-id == 'x'") == .compare(.header("trace-id"), .equal, Self.string("x")))
        #expect(try Self.parse("@header.a.b") == .truthy(.header("a.b")))
    }

    @Test func quotedMemberNamesInPaths() throws {
        #expect(try Self.parse(#".["odd key"] == 1"#) == .compare(try Self.path(#".["odd key"]"#), .equal, Self.number(1)))
        #expect(try Self.evaluate(#".["odd key"] == 1"#, Self.context(#"{"odd key": 1}"#)))
    }

    @Test func whitespaceOfAnyKindSeparatesTokens() throws {
        #expect(try Self.parse("\t.a\n==\r\n1  and   .b") == .and(.compare(try Self.path(".a"), .equal, Self.number(1)), try Self.truthy(".b")))
    }

    // MARK: Evaluation

    static let document = """
        {"status": "paid", "amount": 150, "price": "99.5", "name": "Zoë", "tags": ["a", "b", 3],
         "customer": {"country": "US", "vip": true}, "empty": "", "zero": 0, "nothing": null,
         "items": [{"sku": "x1"}], "delta": -2.5, "list": [], "object": {}}
        """

    struct EvaluationCase: Sendable, CustomTestStringConvertible {
        var expression: String
        var expected: Bool
        var testDescription: String { "\(expression) → \(expected)" }
    }

    static let evaluations: [EvaluationCase] = [
        // Equality, loose between numbers and numeric strings.
        .init(expression: #".status == "paid""#, expected: true),
        .init(expression: #".status != "paid""#, expected: false),
        .init(expression: #".status == 'paid'"#, expected: true),
        .init(expression: ".amount == 150", expected: true),
        .init(expression: ".amount == 150.0", expected: true),
        .init(expression: #".amount == "150""#, expected: true),
        .init(expression: #""150" == .amount"#, expected: true),
        .init(expression: #".amount == "150.0""#, expected: true),
        .init(expression: #".amount == "abc""#, expected: false),
        .init(expression: #".amount != "150""#, expected: false),
        .init(expression: ".price == 99.5", expected: true),
        .init(expression: ".customer.vip == true", expected: true),
        .init(expression: #".customer.vip == "true""#, expected: false),
        .init(expression: ".zero == false", expected: false),
        .init(expression: ".delta == -2.5", expected: true),
        .init(expression: ".delta > -5", expected: true),
        .init(expression: ".delta < -2", expected: true),
        // Ordering: numbers, numeric strings against numbers, strings against strings.
        .init(expression: ".amount >= 100", expected: true),
        .init(expression: ".amount > 150", expected: false),
        .init(expression: ".amount >= 150", expected: true),
        .init(expression: ".amount <= 150", expected: true),
        .init(expression: ".amount < 150", expected: false),
        .init(expression: ".amount < 150.5", expected: true),
        .init(expression: ".price > 99", expected: true),
        .init(expression: ".price < 100", expected: true),
        .init(expression: #".status < "pending""#, expected: true),
        .init(expression: #".status > "pending""#, expected: false),
        .init(expression: #".status >= "paid""#, expected: true),
        .init(expression: #".status <= "paid""#, expected: true),
        .init(expression: #".name > "Zeta""#, expected: true),
        .init(expression: #""B" < "a""#, expected: true),
        .init(expression: #""10" < "9""#, expected: true),
        .init(expression: #".status > 5"#, expected: false),
        .init(expression: #".status < 5"#, expected: false),
        .init(expression: ".customer < 5", expected: false),
        // A missing path compares as null.
        .init(expression: ".missing == null", expected: true),
        .init(expression: ".missing != null", expected: false),
        .init(expression: ".missing.deeper[3] == null", expected: true),
        .init(expression: ".nothing == null", expected: true),
        .init(expression: ".missing == .nothing", expected: true),
        .init(expression: ".missing == 0", expected: false),
        .init(expression: #".missing == """#, expected: false),
        .init(expression: ".missing < 5", expected: false),
        .init(expression: ".missing >= 0", expected: false),
        .init(expression: #".missing != "paid""#, expected: true),
        // Presence.
        .init(expression: "exists(.status)", expected: true),
        .init(expression: "exists(.nothing)", expected: true),
        .init(expression: "exists(.missing)", expected: false),
        .init(expression: "exists(.customer.country)", expected: true),
        .init(expression: "exists(.customer.city)", expected: false),
        .init(expression: "exists(.items[0].sku)", expected: true),
        .init(expression: "exists(.items[1])", expected: false),
        .init(expression: "exists(.status.inner)", expected: false),
        .init(expression: "exists(.)", expected: true),
        // Text and list operators.
        .init(expression: #".tags contains "a""#, expected: true),
        .init(expression: #".tags contains "z""#, expected: false),
        .init(expression: ".tags contains 3", expected: true),
        .init(expression: #".tags contains "3""#, expected: true),
        .init(expression: #".status contains "ai""#, expected: true),
        .init(expression: #".name contains "ë""#, expected: true),
        .init(expression: ".amount contains 1", expected: false),
        .init(expression: #".missing contains "a""#, expected: false),
        .init(expression: #".status startsWith "pa""#, expected: true),
        .init(expression: #".status startsWith "id""#, expected: false),
        .init(expression: #".status endsWith "id""#, expected: true),
        .init(expression: #".status endsWith "pa""#, expected: false),
        .init(expression: #".amount startsWith "1""#, expected: false),
        .init(expression: #".status startsWith """#, expected: true),
        .init(expression: #".customer.country in ["US", "CA"]"#, expected: true),
        .init(expression: #".customer.country in ["FR"]"#, expected: false),
        .init(expression: ".customer.country in []", expected: false),
        .init(expression: ".amount in [100, 150]", expected: true),
        .init(expression: #".amount in ["150"]"#, expected: true),
        .init(expression: #".status in "paid""#, expected: false),
        .init(expression: ".missing in [null]", expected: true),
        .init(expression: ".missing in [1]", expected: false),
        // Bare operands are truthy tests.
        .init(expression: ".status", expected: true),
        .init(expression: ".customer.vip", expected: true),
        .init(expression: ".customer", expected: true),
        .init(expression: ".object", expected: true),
        .init(expression: ".tags", expected: true),
        .init(expression: ".list", expected: false),
        .init(expression: ".empty", expected: false),
        .init(expression: ".zero", expected: false),
        .init(expression: ".amount", expected: true),
        .init(expression: ".nothing", expected: false),
        .init(expression: ".missing", expected: false),
        .init(expression: "true", expected: true),
        .init(expression: "false", expected: false),
        .init(expression: "'x'", expected: true),
        // Combinations.
        .init(expression: "not .empty", expected: true),
        .init(expression: "not exists(.missing)", expected: true),
        .init(expression: #".status == "paid" and .amount > 1000"#, expected: false),
        .init(expression: #".status == "paid" and .amount >= 100"#, expected: true),
        .init(expression: #".status == "test" or .amount >= 100"#, expected: true),
        .init(expression: #"not (.customer.country in ["US", "CA"]) or exists(.priority)"#, expected: false),
    ]

    @Test(arguments: evaluations)
    func evaluatesOnAJSONValue(_ evaluation: EvaluationCase) throws {
        #expect(try Self.evaluate(evaluation.expression, Self.context(Self.document)) == evaluation.expected)
    }

    @Test func theWholeValueIsThePathDot() throws {
        #expect(try Self.evaluate(#". == "hello""#, Self.context(#""hello""#)))
        #expect(try Self.evaluate(". > 3", Self.context("4")))
        #expect(try !Self.evaluate(". > 3", Self.context("[4]")))
    }

    @Test func metadataIsVisible() throws {
        let context = Self.context(
            #"{"region": "eu"}"#, key: "eu-123", topic: "orders", partition: 3, offset: 42,
            headers: [("source", "replay"), ("source", "live"), ("trace-id", "abc")])
        #expect(try Self.evaluate(#"@key startsWith "eu-""#, context))
        #expect(try Self.evaluate(#"@key == "eu-123" and .region == "eu""#, context))
        #expect(try Self.evaluate(#"@topic == "orders""#, context))
        #expect(try Self.evaluate("@partition == 3", context))
        #expect(try Self.evaluate(#"@partition == "3""#, context))
        #expect(try Self.evaluate("@partition < 4", context))
        #expect(try Self.evaluate("@offset >= 42 and @offset < 43", context))
        #expect(try Self.evaluate(#"@header.source == "live""#, context), "the last header of a name wins")
        #expect(try Self.evaluate(#"@header.source != "replay""#, context))
        #expect(try Self.evaluate(#"@header.trace-id == "abc""#, context))
        #expect(try Self.evaluate("exists(@header.source)", context))
        #expect(try !Self.evaluate("exists(@header.missing)", context))
        #expect(try Self.evaluate("@header.missing == null", context))
        #expect(try Self.evaluate("exists(@key)", context))
        #expect(try Self.evaluate("@topic in ['payments', 'orders']", context))
    }

    @Test func aNullKeyIsMissing() throws {
        let context = Self.context(#"{}"#, key: nil)
        #expect(try !Self.evaluate("exists(@key)", context))
        #expect(try Self.evaluate("@key == null", context))
        #expect(try !Self.evaluate("@key", context))
    }

    @Test func aValueThatIsNotJSONHasNoPaths() throws {
        let context = Self.context(nil, key: "k")
        #expect(try Self.evaluate(".a == null", context))
        #expect(try !Self.evaluate("exists(.)", context))
        #expect(try !Self.evaluate(".a", context))
        #expect(try Self.evaluate(#"@key == "k""#, context))
    }

    // MARK: Syntax errors

    struct ErrorCase: Sendable, CustomTestStringConvertible {
        var expression: String
        var message: String
        var position: Int
        var testDescription: String { expression }
    }

    static let errors: [ErrorCase] = [
        .init(expression: #".name == "abc"#, message: "unterminated string", position: 9),
        .init(expression: ".name == 'abc", message: "unterminated string", position: 9),
        .init(expression: #".name == "abc\""#, message: "unterminated string", position: 9),
        .init(expression: #".name == "a" and .b == 'c"#, message: "unterminated string", position: 23),
        .init(expression: #".status = "paid""#, message: "'=' is not an operator: compare with '=='", position: 8),
        .init(
            expression: ".status == paid",
            message: #"unexpected word 'paid': fields are written as paths (.paid), text in quotes ("paid")"#, position: 11),
        .init(expression: "status", message: "unexpected word 'status'", position: 0),
        .init(expression: ".a == 1 and contains", message: "unexpected word 'contains'", position: 12),
        .init(expression: "@size > 3", message: "unknown metadata '@size': use @key, @topic, @partition, @offset or @header.NAME", position: 0),
        .init(expression: ".a == 1 or @header. == 'x'", message: "unknown metadata '@header.'", position: 11),
        .init(expression: "@Key", message: "unknown metadata '@Key'", position: 0),
        .init(expression: "(.a == 1 and .b == 2", message: "expected ')'", position: 20),
        .init(expression: "(.a == 1]", message: "expected ')'", position: 8),
        .init(expression: "exists(.a", message: "expected ')'", position: 9),
        .init(expression: "exists .a", message: "expected '('", position: 7),
        .init(expression: ".a in [1, 2", message: "expected ']'", position: 11),
        .init(expression: ".a in [1 2]", message: "expected ']'", position: 9),
        .init(expression: ".a == 1 .b", message: "unexpected '.b' (join conditions with 'and' or 'or')", position: 8),
        .init(expression: ".a == 1 )", message: "unexpected ')'", position: 8),
        .init(expression: ".a .b", message: "unexpected '.b'", position: 3),
        .init(expression: ".a == 1 2", message: "unexpected '2'", position: 8),
        .init(expression: ".a ==", message: "expression ends too early: expected a value", position: 5),
        .init(expression: ".a == 1 and", message: "expression ends too early: expected a value", position: 11),
        .init(expression: "not", message: "expression ends too early", position: 3),
        .init(expression: "", message: "expression ends too early", position: 0),
        .init(expression: ".a == )", message: "expected a value, found ')'", position: 6),
        .init(expression: ".a == 1 & .b", message: "unexpected character '&'", position: 8),
        .init(expression: ".a == 1 && .b", message: "unexpected character '&'", position: 8),
        .init(expression: ".a ! 1", message: "unexpected character '!'", position: 3),
        .init(expression: ".a == 1.2.3", message: "bad number '1.2.3'", position: 6),
        .init(expression: ".a..b == 1", message: "bad path '.a..b': invalid member name ''", position: 0),
        .init(expression: "x or .a.", message: "unexpected word 'x'", position: 0),
        .init(expression: ".b or .a. == 1", message: "bad path '.a.': a JSON path must not end with '.'", position: 6),
        .init(expression: ".a in [.b]", message: "lists hold literals only", position: 6),
        .init(expression: ".a in [@key]", message: "lists hold literals only", position: 6),
    ]

    @Test(arguments: errors)
    func syntaxErrorsSayWhatAndWhere(_ errorCase: ErrorCase) {
        switch FilterExpression.parse(errorCase.expression) {
        case .success(let expression):
            Issue.record("'\(errorCase.expression)' was accepted as \(expression)")
        case .failure(let error):
            #expect(error.message.contains(errorCase.message), "message: \(error.message)")
            #expect(error.position == errorCase.position, "'\(error.message)' at \(error.position)")
        }
    }
}
