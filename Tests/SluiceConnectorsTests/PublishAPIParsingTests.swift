import Hummingbird
import SluiceConnectorConfig
import SluiceKafka
@testable import SluiceSidecar
import Testing

/// The publish API's request bodies (single messages, batches, value encodings, headers, partitions, timestamps),
/// its bad-request messages, and the HTTP status each Kafka error maps to.
@Suite struct PublishAPIParsingTests {
    struct Unexpected: Error { var description: String }

    static func parse(_ body: String, topic: String = "orders") throws -> (messages: [KafkaProducerMessage], isBatch: Bool) {
        let (messages, isBatch) = try PublishAPI.parse(Array(body.utf8), topic: topic)
        return (messages, isBatch)
    }

    static func single(_ body: String) throws -> KafkaProducerMessage {
        let parsed = try parse(body)
        guard parsed.messages.count == 1, !parsed.isBatch else {
            throw Unexpected(description: "\(parsed.messages.count) messages, batch: \(parsed.isBatch)")
        }
        return parsed.messages[0]
    }

    static func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    // MARK: Single messages

    @Test func aFullSingleMessage() throws {
        let message = try Self.single(
            #"{"key": "k-1", "value": {"b": 1, "a": "x"}, "headers": {"z": "1", "a": "2"}, "partition": 3, "timestamp": 1700000000000}"#)
        #expect(message.topic == "orders")
        #expect(message.key == Self.bytes("k-1"))
        #expect(message.value == Self.bytes(#"{"a":"x","b":1}"#), "JSON values are published as their compact JSON text")
        #expect(message.headers == [KafkaHeader(name: "a", string: "2"), KafkaHeader(name: "z", string: "1")])
        #expect(message.partition == 3)
        #expect(message.timestampMilliseconds == 1_700_000_000_000)
    }

    @Test func aMinimalMessage() throws {
        let message = try Self.single(#"{"value": "hello"}"#)
        #expect(message.value == Self.bytes("hello"), "a JSON string is published as its text, without quotes")
        #expect(message.key == nil)
        #expect(message.headers.isEmpty)
        #expect(message.partition == nil)
        #expect(message.timestampMilliseconds == nil)
    }

    @Test(arguments: [
        (#""héllo \"quoted\"""#, #"héllo "quoted""#),
        ("42", "42"),
        ("-1.5", "-1.5"),
        ("true", "true"),
        ("[1, \"two\"]", #"[1,"two"]"#),
        (#"{"nested": {"k": null}}"#, #"{"nested":{"k":null}}"#),
        (#""""#, ""),
    ])
    func valuesArePublishedAsTextOrJSON(_ json: String, _ published: String) throws {
        #expect(try Self.single(#"{"value": \#(json)}"#).value == Self.bytes(published))
    }

    @Test func base64ValuesAreDecoded() throws {
        #expect(try Self.single(#"{"value": "AAEC/w==", "value_encoding": "base64"}"#).value == [0, 1, 2, 255])
        #expect(try Self.single(#"{"value": "", "value_encoding": "base64"}"#).value == [])
        #expect(try Self.single(#"{"value": "AAEC/w==", "value_encoding": "auto"}"#).value == Self.bytes("AAEC/w=="))
    }

    @Test func nullOrMissingValuesAreTombstones() throws {
        #expect(try Self.single(#"{"key": "k", "value": null}"#).value == nil)
        #expect(try Self.single(#"{"key": "k"}"#).value == nil)
        #expect(try Self.single(#"{"key": "k", "value": null, "value_encoding": "base64"}"#).value == nil)
        #expect(try Self.single(#"{"key": "k", "value": null}"#).key == Self.bytes("k"))
    }

    @Test func keysOfEveryKind() throws {
        #expect(try Self.single(#"{"key": null, "value": 1}"#).key == nil)
        #expect(try Self.single(#"{"key": "", "value": 1}"#).key == [])
        #expect(try Self.single(#"{"key": 42, "value": 1}"#).key == Self.bytes("42"))
        #expect(try Self.single(#"{"key": {"b": 1, "a": 2}, "value": 1}"#).key == Self.bytes(#"{"a":2,"b":1}"#))
    }

    @Test func headerValuesAreText() throws {
        let message = try Self.single(#"{"value": 1, "headers": {"n": 7, "b": true, "s": "text", "e": ""}}"#)
        #expect(message.headers.map(\.name) == ["b", "e", "n", "s"], "sorted by name")
        #expect(message.headers.map(\.stringValue) == ["true", "", "7", "text"])
        #expect(try Self.single(#"{"value": 1, "headers": {}}"#).headers.isEmpty)
    }

    @Test func partitionsAndTimestamps() throws {
        #expect(try Self.single(#"{"value": 1, "partition": 0}"#).partition == 0)
        #expect(try Self.single(#"{"value": 1, "partition": 999999}"#).partition == 999_999)
        #expect(try Self.single(#"{"value": 1, "partition": 2.0}"#).partition == 2)
        #expect(try Self.single(#"{"value": 1, "timestamp": 0}"#).timestampMilliseconds == 0)
        #expect(try Self.single(#"{"value": 1, "timestamp": 1700000000000}"#).timestampMilliseconds == 1_700_000_000_000)
        // Fractions, negatives and values past Int64's range are refused, not truncated or trapped on.
        for bad in [#"{"value": 1, "timestamp": 1700000000000.9}"#, #"{"value": 1, "timestamp": -1}"#, #"{"value": 1, "timestamp": 1e19}"#] {
            #expect(throws: (any Error).self) { try Self.single(bad) }
        }
    }

    @Test func theTopicComesFromThePath() throws {
        #expect(try Self.parse(#"{"value": 1}"#, topic: "other.topic").messages.map(\.topic) == ["other.topic"])
    }

    // MARK: Batches

    @Test func aBatchKeepsItsOrder() throws {
        let parsed = try Self.parse(
            #"{"messages": [{"key": "a", "value": 1}, {"value": "x", "partition": 0}, {"key": "c", "value": null, "headers": {"h": "v"}}]}"#)
        #expect(parsed.isBatch)
        #expect(parsed.messages.count == 3)
        #expect(parsed.messages.map(\.key) == [Self.bytes("a"), nil, Self.bytes("c")])
        #expect(parsed.messages.map(\.value) == [Self.bytes("1"), Self.bytes("x"), nil])
        #expect(parsed.messages.map(\.partition) == [nil, 0, nil])
        #expect(parsed.messages.map(\.headers) == [[], [], [KafkaHeader(name: "h", string: "v")]])
        #expect(parsed.messages.allSatisfy { $0.topic == "orders" })
    }

    @Test func aBatchOfOne() throws {
        let parsed = try Self.parse(#"{"messages": [{"value": "only"}]}"#)
        #expect(parsed.isBatch)
        #expect(parsed.messages.map(\.value) == [Self.bytes("only")])
    }

    // MARK: Bad requests

    struct BadCase: Sendable, CustomTestStringConvertible {
        var body: String
        var message: String
        var testDescription: String { body }
    }

    static let badRequests: [BadCase] = [
        .init(body: "not json", message: "the body is not valid JSON (send application/octet-stream for raw bytes)"),
        .init(body: "", message: "the body is not valid JSON"),
        .init(body: #"{"value": 1,}"#, message: "the body is not valid JSON"),
        .init(body: "[1]", message: #"the body must be a JSON object: {"key":…,"value":…} or {"messages":[…]}"#),
        .init(body: #""text""#, message: "the body must be a JSON object"),
        .init(body: #"{"messages": []}"#, message: "'messages' must be a non-empty list"),
        .init(body: #"{"messages": {}}"#, message: "'messages' must be a non-empty list"),
        .init(body: #"{"messages": null}"#, message: "'messages' must be a non-empty list"),
        .init(body: #"{"messages": [{"value": 1}, 5]}"#, message: "messages[1] must be an object with key, value and headers"),
        .init(
            body: #"{"value": 1, "vaule": 2}"#,
            message: "body: unknown field 'vaule' (known: headers, key, partition, timestamp, value, value_encoding)"),
        .init(body: #"{"messages": [{"value": 1}, {"keys": "a"}]}"#, message: "messages[1]: unknown field 'keys'"),
        .init(body: #"{"value": "%%%", "value_encoding": "base64"}"#, message: "body.value is not valid base64"),
        .init(body: #"{"value": 5, "value_encoding": "base64"}"#, message: "body.value must be a base64 string when value_encoding is base64"),
        .init(body: #"{"value": {"a": 1}, "value_encoding": "base64"}"#, message: "body.value must be a base64 string"),
        .init(body: #"{"value": 1, "headers": ["a"]}"#, message: "body.headers must be an object of names to strings"),
        .init(body: #"{"value": 1, "headers": "a=b"}"#, message: "body.headers must be an object"),
        .init(body: #"{"value": 1, "partition": -1}"#, message: "body.partition must be a non-negative whole number"),
        .init(body: #"{"value": 1, "partition": 1.5}"#, message: "body.partition must be a non-negative whole number"),
        .init(body: #"{"value": 1, "partition": "3"}"#, message: "body.partition must be a non-negative whole number"),
        .init(body: #"{"value": 1, "partition": 1000000}"#, message: "body.partition must be a non-negative whole number"),
        .init(body: #"{"value": 1, "partition": null}"#, message: "body.partition must be a non-negative whole number"),
        .init(body: #"{"messages": [{"value": 1, "partition": -2}]}"#, message: "messages[0].partition must be a non-negative whole number"),
        .init(body: #"{"value": 1, "timestamp": "now"}"#, message: "body.timestamp must be whole milliseconds since the epoch"),
        .init(body: #"{"value": 1, "timestamp": null}"#, message: "body.timestamp must be whole milliseconds since the epoch"),
    ]

    @Test(arguments: badRequests)
    func badRequestsSayWhatIsWrong(_ bad: BadCase) {
        do {
            let parsed = try Self.parse(bad.body)
            Issue.record("accepted \(parsed.messages.count) message(s)")
        } catch let error as PublishAPI.BadRequest {
            #expect(error.message.contains(bad.message), "\(error.message)")
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }

    @Test func messageChecksOneItem() throws {
        let message = try PublishAPI.message(.object(["value": .string("v")]), topic: "t", position: "messages[4]")
        #expect(message.topic == "t")
        #expect(message.value == Self.bytes("v"))
        #expect(throws: PublishAPI.BadRequest.self) { try PublishAPI.message(.string("v"), topic: "t", position: "messages[4]") }
        do {
            _ = try PublishAPI.message(.object(["partition": .bool(true)]), topic: "t", position: "messages[4]")
            Issue.record("accepted")
        } catch let error as PublishAPI.BadRequest {
            #expect(error.message == "messages[4].partition must be a non-negative whole number")
        }
    }

    // MARK: Status codes for delivery failures

    struct StatusCase: Sendable, CustomTestStringConvertible {
        var code: KafkaError.Code
        var isRetriable: Bool = false
        var status: HTTPResponse.Status
        var testDescription: String { "\(code)\(isRetriable ? " (retriable)" : "") → \(status.code)" }
    }

    static let statuses: [StatusCase] = [
        .init(code: .unknownTopic, status: .notFound),
        .init(code: .timedOut, status: .serviceUnavailable),
        .init(code: .queueFull, status: .serviceUnavailable),
        .init(code: .connection, status: .serviceUnavailable),
        .init(code: .closed, status: .serviceUnavailable),
        .init(code: .invalidConfiguration, status: .badRequest),
        .init(code: .delivery, status: .badGateway),
        .init(code: .delivery, isRetriable: true, status: .serviceUnavailable),
        .init(code: .produce, status: .badGateway),
        .init(code: .produce, isRetriable: true, status: .serviceUnavailable),
        .init(code: .fatal, status: .badGateway),
        .init(code: .metadata, isRetriable: true, status: .serviceUnavailable),
        .init(code: .unknownTopic, isRetriable: true, status: .notFound),
        .init(code: .timedOut, isRetriable: false, status: .serviceUnavailable),
    ]

    @Test(arguments: statuses)
    func kafkaErrorsMapToStatuses(_ statusCase: StatusCase) {
        let error = KafkaError(code: statusCase.code, message: "x", isRetriable: statusCase.isRetriable)
        #expect(PublishAPI.statusFor(error) == statusCase.status)
    }

    @Test func otherErrorsAreBadGateways() {
        struct SomethingElse: Error {}
        #expect(PublishAPI.statusFor(SomethingElse()) == .badGateway)
        #expect(PublishAPI.statusFor(PublishAPI.BadRequest(message: "x")) == .badGateway)
    }
}
