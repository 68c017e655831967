/// The filter language: a boolean expression over a message's JSON value and its metadata.
///
/// ```
/// .status == "paid" and .amount >= 100
/// not (.customer.country in ["US", "CA"]) or exists(.priority)
/// @key startsWith "eu-" and @header.source != "replay"
/// ```
/// Operands are JSON paths (``JSONPath``), string/number/boolean/null literals, lists of literals, and the message's
/// metadata: `@key`, `@topic`, `@partition`, `@offset`, `@header.NAME`. Operators: `==`, `!=`, `<`, `<=`, `>`,
/// `>=`, `contains`, `startsWith`, `endsWith`, `in`, combined with `and`, `or`, `not` and parentheses;
/// `exists(path)` tests presence; a bare operand is true when present and truthy. A path that is missing compares
/// as `null`. Deliberately small: no arithmetic, no functions with side effects, no loops, so every expression is
/// checked fully at validation time and costs a bounded amount per message.
public indirect enum FilterExpression: Sendable, Equatable {
    case and(FilterExpression, FilterExpression)
    case or(FilterExpression, FilterExpression)
    case not(FilterExpression)
    case exists(Operand)
    case truthy(Operand)
    case compare(Operand, Operator, Operand)

    public enum Operator: String, Sendable, Equatable, CaseIterable {
        case equal = "==", notEqual = "!=", less = "<", lessOrEqual = "<=", greater = ">", greaterOrEqual = ">="
        case contains, startsWith, endsWith, `in`
    }

    public enum Operand: Sendable, Equatable {
        case path(JSONPath)
        case literal(JSONValue)
        case key, topic, partition, offset
        case header(String)
    }

    /// A syntax error with its 0-based character position in the expression.
    public struct SyntaxError: Error, Sendable, Equatable {
        public var message: String
        public var position: Int
    }

    /// Parses an expression.
    public static func parse(_ text: String) -> Result<FilterExpression, SyntaxError> {
        do {
            var parser = try ExpressionParser(text)
            let expression = try parser.parseOr()
            if let token = parser.peek {
                throw SyntaxError(message: "unexpected '\(token.text)' (join conditions with 'and' or 'or')", position: token.position)
            }
            return .success(expression)
        } catch let error as SyntaxError {
            return .failure(error)
        } catch {
            return .failure(SyntaxError(message: "\(error)", position: 0))
        }
    }

    /// Evaluates the expression for one message.
    public func evaluate(_ context: MessageContext) -> Bool {
        switch self {
        case .and(let left, let right): left.evaluate(context) && right.evaluate(context)
        case .or(let left, let right): left.evaluate(context) || right.evaluate(context)
        case .not(let inner): !inner.evaluate(context)
        case .exists(let operand): operand.value(in: context) != nil
        case .truthy(let operand): operand.value(in: context)?.isTruthy ?? false
        case .compare(let left, let op, let right):
            FilterExpression.compare(left.value(in: context) ?? .null, op, right.value(in: context) ?? .null)
        }
    }

    static func compare(_ left: JSONValue, _ op: Operator, _ right: JSONValue) -> Bool {
        switch op {
        case .equal: return looselyEqual(left, right)
        case .notEqual: return !looselyEqual(left, right)
        case .less, .lessOrEqual, .greater, .greaterOrEqual:
            let order: Int
            if case .string(let a) = left, case .string(let b) = right {
                order = a < b ? -1 : (a == b ? 0 : 1)
            } else if let a = left.number, let b = right.number {
                order = a < b ? -1 : (a == b ? 0 : 1)
            } else {
                return false
            }
            switch op {
            case .less: return order < 0
            case .lessOrEqual: return order <= 0
            case .greater: return order > 0
            default: return order >= 0
            }
        case .contains:
            switch (left, right) {
            case (.string(let a), .string(let b)): return a.contains(b)
            case (.array(let values), _): return values.contains { looselyEqual($0, right) }
            default: return false
            }
        case .startsWith:
            if case .string(let a) = left, case .string(let b) = right { return a.hasPrefix(b) }
            return false
        case .endsWith:
            if case .string(let a) = left, case .string(let b) = right { return a.hasSuffix(b) }
            return false
        case .in:
            if case .array(let values) = right { return values.contains { looselyEqual(left, $0) } }
            return false
        }
    }

    private static func looselyEqual(_ a: JSONValue, _ b: JSONValue) -> Bool {
        switch (a, b) {
        case (.number(let x), .number(let y)): x == y
        case (.number(let x), .string(let text)), (.string(let text), .number(let x)): Double(text) == x
        default: a == b
        }
    }
}

/// What an expression or key selector can see of one message.
public struct MessageContext: Sendable {
    public var value: JSONValue?
    public var key: String?
    public var topic: String
    public var partition: Int32
    public var offset: Int64
    public var headers: [(name: String, value: String)]

    public init(
        value: JSONValue?, key: String?, topic: String, partition: Int32, offset: Int64,
        headers: [(name: String, value: String)]
    ) {
        self.value = value
        self.key = key
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.headers = headers
    }
}

extension FilterExpression.Operand {
    func value(in context: MessageContext) -> JSONValue? {
        switch self {
        case .path(let path): context.value.flatMap { path.value(in: $0) }
        case .literal(let value): value
        case .key: context.key.map(JSONValue.string)
        case .topic: .string(context.topic)
        case .partition: .number(Double(context.partition))
        case .offset: .number(Double(context.offset))
        case .header(let name): context.headers.last { $0.name == name }.map { .string($0.value) }
        }
    }
}

/// Tokenizer and recursive-descent parser for ``FilterExpression``.
private struct ExpressionParser {
    struct Token {
        enum Kind: Equatable {
            case word, path, meta, string, number, symbol
        }
        var kind: Kind
        var text: String
        var position: Int
    }

    private var tokens: [Token]
    private var index = 0

    init(_ text: String) throws {
        tokens = try ExpressionParser.tokenize(Array(text))
    }

    var peek: Token? { index < tokens.count ? tokens[index] : nil }

    private mutating func next() -> Token? {
        defer { index += 1 }
        return peek
    }

    mutating func parseOr() throws -> FilterExpression {
        var left = try parseAnd()
        while peek?.kind == .word, peek?.text == "or" {
            index += 1
            left = .or(left, try parseAnd())
        }
        return left
    }

    private mutating func parseAnd() throws -> FilterExpression {
        var left = try parseUnary()
        while peek?.kind == .word, peek?.text == "and" {
            index += 1
            left = .and(left, try parseUnary())
        }
        return left
    }

    private mutating func parseUnary() throws -> FilterExpression {
        if peek?.kind == .word, peek?.text == "not" {
            index += 1
            return .not(try parseUnary())
        }
        if peek?.kind == .symbol, peek?.text == "(" {
            index += 1
            let inner = try parseOr()
            try expectSymbol(")")
            return inner
        }
        if peek?.kind == .word, peek?.text == "exists" {
            index += 1
            try expectSymbol("(")
            let operand = try parseOperand()
            try expectSymbol(")")
            return .exists(operand)
        }
        let left = try parseOperand()
        guard let token = peek, let op = Self.operatorFor(token) else { return .truthy(left) }
        index += 1
        let right = try parseOperand()
        return .compare(left, op, right)
    }

    private static func operatorFor(_ token: Token) -> FilterExpression.Operator? {
        guard token.kind == .symbol || token.kind == .word else { return nil }
        return FilterExpression.Operator(rawValue: token.text)
    }

    private mutating func parseOperand() throws -> FilterExpression.Operand {
        guard let token = next() else {
            throw FilterExpression.SyntaxError(message: "expression ends too early: expected a value", position: tokens.last.map { $0.position + $0.text.count } ?? 0)
        }
        switch token.kind {
        case .path:
            switch JSONPath.parse(token.text) {
            case .success(let path): return .path(path)
            case .failure(let error): throw FilterExpression.SyntaxError(message: "bad path '\(token.text)': \(error.message)", position: token.position)
            }
        case .meta:
            switch token.text {
            case "@key": return .key
            case "@topic": return .topic
            case "@partition": return .partition
            case "@offset": return .offset
            default:
                if token.text.hasPrefix("@header."), token.text.count > 8 { return .header(String(token.text.dropFirst(8))) }
                throw FilterExpression.SyntaxError(
                    message: "unknown metadata '\(token.text)': use @key, @topic, @partition, @offset or @header.NAME",
                    position: token.position)
            }
        case .string: return .literal(.string(token.text))
        case .number: return .literal(.number(Double(token.text)!))
        case .word:
            switch token.text {
            case "true": return .literal(.bool(true))
            case "false": return .literal(.bool(false))
            case "null": return .literal(.null)
            default:
                throw FilterExpression.SyntaxError(
                    message: "unexpected word '\(token.text)': fields are written as paths (.\(token.text)), text in quotes (\"\(token.text)\")",
                    position: token.position)
            }
        case .symbol:
            if token.text == "[" {
                var values: [JSONValue] = []
                if peek?.text == "]" {
                    index += 1
                    return .literal(.array(values))
                }
                while true {
                    guard case .literal(let value) = try parseOperand() else {
                        throw FilterExpression.SyntaxError(message: "lists hold literals only", position: token.position)
                    }
                    values.append(value)
                    if peek?.text == "," {
                        index += 1
                        continue
                    }
                    try expectSymbol("]")
                    return .literal(.array(values))
                }
            }
            throw FilterExpression.SyntaxError(message: "expected a value, found '\(token.text)'", position: token.position)
        }
    }

    private mutating func expectSymbol(_ symbol: String) throws {
        guard let token = next(), token.kind == .symbol, token.text == symbol else {
            throw FilterExpression.SyntaxError(
                message: "expected '\(symbol)'", position: index - 1 < tokens.count ? tokens[index - 1].position : (tokens.last.map { $0.position + $0.text.count } ?? 0))
        }
    }

    private static func tokenize(_ characters: [Character]) throws -> [Token] {
        var tokens: [Token] = []
        var index = 0
        while index < characters.count {
            let character = characters[index]
            let start = index
            if character.isWhitespace {
                index += 1
            } else if character == "\"" || character == "'" {
                index += 1
                var text = ""
                while index < characters.count, characters[index] != character {
                    if characters[index] == "\\", index + 1 < characters.count { index += 1 }
                    text.append(characters[index])
                    index += 1
                }
                guard index < characters.count else {
                    throw FilterExpression.SyntaxError(message: "unterminated string", position: start)
                }
                index += 1
                tokens.append(Token(kind: .string, text: text, position: start))
            } else if character == "." || character == "@" {
                var text = String(character)
                index += 1
                var bracketDepth = 0
                while index < characters.count {
                    let c = characters[index]
                    if c == "[" { bracketDepth += 1 }
                    if c == "]" {
                        if bracketDepth == 0 { break }
                        bracketDepth -= 1
                    }
                    guard bracketDepth > 0 || c.isLetter || c.isNumber || c == "_" || c == "-" || c == "." || c == "[" || c == "]" else { break }
                    text.append(c)
                    index += 1
                }
                tokens.append(Token(kind: character == "." ? .path : .meta, text: text, position: start))
            } else if character.isNumber || (character == "-" && index + 1 < characters.count && characters[index + 1].isNumber) {
                var text = String(character)
                index += 1
                while index < characters.count {
                    let c = characters[index]
                    let isExponentSign = (c == "-" || c == "+") && (text.last == "e" || text.last == "E")
                    guard c.isNumber || c == "." || c == "e" || c == "E" || isExponentSign else { break }
                    text.append(c)
                    index += 1
                }
                guard Double(text) != nil else { throw FilterExpression.SyntaxError(message: "bad number '\(text)'", position: start) }
                tokens.append(Token(kind: .number, text: text, position: start))
            } else if character.isLetter {
                var text = ""
                while index < characters.count, characters[index].isLetter || characters[index].isNumber || characters[index] == "_" {
                    text.append(characters[index])
                    index += 1
                }
                tokens.append(Token(kind: .word, text: text, position: start))
            } else {
                let two = index + 1 < characters.count ? String([character, characters[index + 1]]) : ""
                if ["==", "!=", "<=", ">="].contains(two) {
                    tokens.append(Token(kind: .symbol, text: two, position: start))
                    index += 2
                } else if ["<", ">", "(", ")", "[", "]", ","].contains(String(character)) {
                    tokens.append(Token(kind: .symbol, text: String(character), position: start))
                    index += 1
                } else if character == "=" {
                    throw FilterExpression.SyntaxError(message: "'=' is not an operator: compare with '=='", position: start)
                } else {
                    throw FilterExpression.SyntaxError(message: "unexpected character '\(character)'", position: start)
                }
            }
        }
        return tokens
    }
}
