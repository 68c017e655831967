@testable import SluiceConnectorConfig
@testable import SluiceConnectors
import SluiceKafka
import Synchronization
import Testing

/// Delivery policy: retries and backoff, how the application's answers are classified, how records are encoded for
/// the application and for dead letters, Prometheus rendering, deduplication and the map transform.
@Suite struct DeliveryPolicyTests {
    // MARK: Backoff

    static let policy = RetryPolicy(maxAttempts: 10, initialBackoff: .milliseconds(100), maxBackoff: .seconds(30), jitter: 0.2)

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    static func expectClose(_ actual: Duration, _ expected: Double, sourceLocation: Testing.SourceLocation = #_sourceLocation) {
        #expect(abs(seconds(actual) - expected) < 1e-9, "\(actual) is not \(expected) s", sourceLocation: sourceLocation)
    }

    @Test(arguments: [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.6), (9, 25.6)])
    func backoffGrowsExponentially(_ attempt: Int, _ expected: Double) {
        Self.expectClose(Self.policy.backoff(afterAttempt: attempt, randomUnit: 0), expected)
    }

    @Test(arguments: [10, 11, 20, 31, 64, 1_000, Int.max])
    func backoffIsCappedAtTheMaximum(_ attempt: Int) {
        #expect(Self.policy.backoff(afterAttempt: attempt, randomUnit: 0) == .seconds(30))
    }

    @Test(arguments: [0, -1, -100])
    func attemptsBelowOneWaitTheInitialBackoff(_ attempt: Int) {
        Self.expectClose(Self.policy.backoff(afterAttempt: attempt, randomUnit: 0), 0.1)
    }

    @Test func jitterShortensTheWaitByUpToItsFraction() {
        Self.expectClose(Self.policy.backoff(afterAttempt: 1, randomUnit: 0), 0.1)
        Self.expectClose(Self.policy.backoff(afterAttempt: 1, randomUnit: 0.5), 0.09)
        Self.expectClose(Self.policy.backoff(afterAttempt: 1, randomUnit: 0.999), 0.1 * (1 - 0.2 * 0.999))
        Self.expectClose(Self.policy.backoff(afterAttempt: 100, randomUnit: 0.999), 30 * (1 - 0.2 * 0.999))
        let noJitter = RetryPolicy(maxAttempts: 3, initialBackoff: .seconds(1), maxBackoff: .seconds(4), jitter: 0)
        #expect(noJitter.backoff(afterAttempt: 2, randomUnit: 0.999) == .seconds(2))
        let fullJitter = RetryPolicy(maxAttempts: 3, initialBackoff: .seconds(1), maxBackoff: .seconds(4), jitter: 1)
        Self.expectClose(fullJitter.backoff(afterAttempt: 3, randomUnit: 0.999), 4 * 0.001)
    }

    @Test func randomBackoffStaysInItsRange() {
        for attempt in 1...12 {
            let high = Self.policy.backoff(afterAttempt: attempt, randomUnit: 0)
            let low = Self.policy.backoff(afterAttempt: attempt, randomUnit: 0.999_999)
            let random = Self.policy.backoff(afterAttempt: attempt)
            #expect(random <= high && random >= low - .nanoseconds(1))
        }
    }

    @Test func policyFromConfiguration() {
        var configuration = ErrorHandlingConfiguration()
        configuration.maxAttempts = nil
        configuration.jitter = 0.7
        let policy = RetryPolicy(configuration)
        #expect(policy.maxAttempts == nil)
        #expect(policy.initialBackoff == .milliseconds(100))
        #expect(policy.maxBackoff == .seconds(30))
        #expect(policy.jitter == 0.7)
    }

    // MARK: The retry loop

    static let fast = RetryPolicy(maxAttempts: 5, initialBackoff: .milliseconds(1), maxBackoff: .milliseconds(2), jitter: 0)

    static func failure(_ disposition: RecordFailure.Disposition, _ name: String = "E") -> RecordFailure {
        RecordFailure(disposition, errorClass: name, message: "\(name) happened")
    }

    @Test(arguments: [0, 1, 3, 4])
    func succeedsAfterRetryableFailures(_ failures: Int) async throws {
        var calls = 0
        var retries: [Int] = []
        let outcome = try await Self.fast.run(onRetry: { failure, attempt in
            #expect(failure.errorClass == "E\(attempt)")
            retries.append(attempt)
        }) { () async -> Result<String, RecordFailure> in
            calls += 1
            return calls > failures ? .success("ok") : .failure(Self.failure(.retryable, "E\(calls)"))
        }
        guard case .success(let value, let attempts) = outcome else {
            Issue.record("expected success, got \(outcome)")
            return
        }
        #expect(value == "ok")
        #expect(attempts == failures + 1)
        #expect(calls == failures + 1)
        #expect(retries == (0..<failures).map { $0 + 1 })
    }

    @Test func aPermanentFailureStopsAtOnce() async throws {
        var calls = 0
        var retries = 0
        let outcome = try await Self.fast.run(onRetry: { _, _ in retries += 1 }) { () async -> Result<Int, RecordFailure> in
            calls += 1
            return calls == 1 ? .failure(Self.failure(.retryable)) : .failure(Self.failure(.permanent, "HTTPStatus400"))
        }
        guard case .failed(let failure, let attempts) = outcome else {
            Issue.record("expected failed, got \(outcome)")
            return
        }
        #expect(failure.errorClass == "HTTPStatus400")
        #expect(attempts == 2)
        #expect(calls == 2)
        #expect(retries == 1)
    }

    @Test func aDropIsReturnedWithoutRetrying() async throws {
        var calls = 0
        let outcome = try await Self.fast.run { () async -> Result<Int, RecordFailure> in
            calls += 1
            return .failure(Self.failure(.drop, "ApplicationDrop"))
        }
        guard case .dropped(let failure, let attempts) = outcome else {
            Issue.record("expected dropped, got \(outcome)")
            return
        }
        #expect(failure.disposition == .drop)
        #expect(failure.errorClass == "ApplicationDrop")
        #expect(attempts == 1)
        #expect(calls == 1)
    }

    @Test(arguments: [1, 2, 5])
    func exhaustedAttemptsFail(_ maxAttempts: Int) async throws {
        let policy = RetryPolicy(maxAttempts: maxAttempts, initialBackoff: .milliseconds(1), maxBackoff: .milliseconds(1), jitter: 0.5)
        var calls = 0
        var retries = 0
        let outcome = try await policy.run(onRetry: { _, _ in retries += 1 }) { () async -> Result<Int, RecordFailure> in
            calls += 1
            return .failure(Self.failure(.retryable, "HTTPStatus503"))
        }
        guard case .failed(let failure, let attempts) = outcome else {
            Issue.record("expected failed, got \(outcome)")
            return
        }
        #expect(failure.errorClass == "HTTPStatus503")
        #expect(attempts == maxAttempts)
        #expect(calls == maxAttempts)
        #expect(retries == maxAttempts - 1, "no wait after the last attempt")
    }

    @Test func retryingForeverEndsOnlyWithCancellation() async {
        let forever = RetryPolicy(maxAttempts: nil, initialBackoff: .milliseconds(1), maxBackoff: .milliseconds(1), jitter: 0)
        // A task of its own, so that cancelling it leaves the test's task alone.
        let (calls, error) = await Task { () async -> (Int, (any Error)?) in
            var calls = 0
            do {
                _ = try await forever.run { () async -> Result<Int, RecordFailure> in
                    calls += 1
                    // The wait after attempt 50 runs in a cancelled task, and throws.
                    if calls == 50 { withUnsafeCurrentTask { $0?.cancel() } }
                    return .failure(Self.failure(.retryable))
                }
                return (calls, nil)
            } catch {
                return (calls, error)
            }
        }.value
        #expect(error is CancellationError)
        #expect(calls == 50)
    }

    // MARK: Classifying the application's answer

    struct AnswerCase: Sendable, CustomTestStringConvertible {
        var status: Int
        var body: String = ""
        var retryAfter: String?
        var disposition: RecordFailure.Disposition?
        var errorClass: String?
        var wait: Duration?
        var testDescription: String { "\(status) \(body) \(retryAfter ?? "")" }
    }

    static let answers: [AnswerCase] = [
        .init(status: 200),
        .init(status: 200, body: #"{"enriched":true}"#),
        .init(status: 201, body: "created"),
        .init(status: 204),
        .init(status: 200, body: #"{"status":"ok"}"#),
        .init(status: 200, body: #"{"status":"drop"}"#, disposition: .drop, errorClass: "ApplicationDrop"),
        .init(status: 202, body: #"{"reason":"test order","status":"drop"}"#, disposition: .drop, errorClass: "ApplicationDrop"),
        .init(status: 422, body: "amount must be positive", disposition: .drop, errorClass: "HTTPStatus422"),
        .init(status: 408, disposition: .retryable, errorClass: "HTTPStatus408"),
        .init(status: 429, retryAfter: "7", disposition: .retryable, errorClass: "HTTPStatus429", wait: .seconds(7)),
        .init(status: 429, retryAfter: " 3 ", disposition: .retryable, errorClass: "HTTPStatus429", wait: .seconds(3)),
        .init(status: 429, retryAfter: "Wed, 21 Oct 2015 07:28:00 GMT", disposition: .retryable, errorClass: "HTTPStatus429"),
        .init(status: 429, disposition: .retryable, errorClass: "HTTPStatus429"),
        .init(status: 500, disposition: .retryable, errorClass: "HTTPStatus500"),
        .init(status: 503, retryAfter: "120", disposition: .retryable, errorClass: "HTTPStatus503", wait: .seconds(120)),
        .init(status: 599, disposition: .retryable, errorClass: "HTTPStatus599"),
        .init(status: 400, body: "bad", disposition: .permanent, errorClass: "HTTPStatus400"),
        .init(status: 401, disposition: .permanent, errorClass: "HTTPStatus401"),
        .init(status: 404, disposition: .permanent, errorClass: "HTTPStatus404"),
        .init(status: 409, disposition: .permanent, errorClass: "HTTPStatus409"),
        .init(status: 301, disposition: .permanent, errorClass: "HTTPStatus301"),
    ]

    @Test(arguments: answers)
    func classifiesAnswers(_ answer: AnswerCase) {
        let body = Array(answer.body.utf8)
        let result = ApplicationEndpoint.classify(status: answer.status, body: body, retryAfter: answer.retryAfter)
        switch (result, answer.disposition) {
        case (.success(let returned), nil):
            #expect(returned == body, "a 2xx returns the body (the new value for processors)")
        case (.failure(let failure), let disposition?):
            #expect(failure.disposition == disposition)
            #expect(failure.errorClass == answer.errorClass)
            #expect(failure.retryAfter == answer.wait)
        default:
            Issue.record("\(answer.testDescription): unexpected \(result)")
        }
    }

    @Test func failureMessagesCarryTheReasonOrABodySnippet() throws {
        func message(_ status: Int, _ body: String) -> String {
            guard case .failure(let failure) = ApplicationEndpoint.classify(status: status, body: Array(body.utf8), retryAfter: nil) else {
                return "success"
            }
            return failure.message
        }
        #expect(message(200, #"{"status":"drop","reason":"duplicate order"}"#) == "duplicate order")
        #expect(message(200, #"{"status":"drop"}"#) == #"the application answered {"status":"drop"}"#)
        #expect(message(422, "negative amount") == "the application rejected the record: negative amount")
        #expect(message(503, "") == "the application answered 503: (empty body)")
        let long = message(400, String(repeating: "x", count: 1_000))
        #expect(long == "the application answered 400: " + String(repeating: "x", count: 200), "bodies are cut at 200 bytes")
    }

    // MARK: Envelopes and dead letters

    static func text(_ value: JSONValue) -> String { String(decoding: value.serialized(), as: UTF8.self) }

    @Test func envelopeEmbedsAJSONValue() {
        let record = ConnectorRecord(
            key: Array("k-1".utf8), value: Array(#"{"b": 1, "a": [true]}"#.utf8),
            headers: [KafkaHeader(name: "h1", string: "v1"), KafkaHeader(name: "bin", value: nil)],
            timestampMilliseconds: 1_700_000_000_000, topic: "orders", partition: 2, offset: 42)
        #expect(
            Self.text(RecordEncoding.envelope(record))
                == #"{"headers":{"bin":null,"h1":"v1"},"key":"k-1","offset":42,"partition":2,"timestamp":1700000000000,"topic":"orders","value":{"a":[true],"b":1},"value_encoding":"json"}"#)
    }

    @Test func envelopeEncodingsOfValuesAndKeys() {
        func envelope(key: [UInt8]?, value: [UInt8]?) -> [String: JSONValue] {
            let record = ConnectorRecord(key: key, value: value, timestampMilliseconds: nil, topic: "t", partition: 0, offset: 0)
            guard case .object(let members) = RecordEncoding.envelope(record) else { return [:] }
            return members
        }
        let text = envelope(key: nil, value: Array("hello wörld".utf8))
        #expect(text["value"] == .string("hello wörld"))
        #expect(text["value_encoding"] == .string("utf8"))
        #expect(text["key"] == .null)
        #expect(text["timestamp"] == .null)
        #expect(text["headers"] == .object([:]))

        let number = envelope(key: nil, value: Array("123".utf8))
        #expect(number["value"] == .number(123))
        #expect(number["value_encoding"] == .string("json"))

        let binary = envelope(key: [0xFF], value: [0xFF, 0x00, 0x10])
        #expect(binary["value"] == .string("/wAQ"))
        #expect(binary["value_encoding"] == .string("base64"))
        #expect(binary["key"] == .string("/w=="), "a key that is not UTF-8 is base64")

        let tombstone = envelope(key: Array("k".utf8), value: nil)
        #expect(tombstone["value"] == .null)
        #expect(tombstone["value_encoding"] == nil)
        #expect(tombstone["key"] == .string("k"))

        let empty = envelope(key: [], value: [])
        #expect(empty["value"] == .string(""))
        #expect(empty["value_encoding"] == .string("utf8"))
        #expect(empty["key"] == .string(""))
    }

    @Test func deadLetterMessagesCarryTheirContext() {
        let record = ConnectorRecord(
            key: Array("k".utf8), value: [1, 2, 3], headers: [KafkaHeader(name: "trace", string: "t-1"), KafkaHeader(name: "nil", value: nil)],
            timestampMilliseconds: 1_699_999_999_999, topic: "orders", partition: 7, offset: 1234)
        let failure = RecordFailure(.permanent, errorClass: "HTTPStatus400", message: String(repeating: "é", count: 1_500))
        let message = DeadLetterHeaders.message(
            for: record, topic: "orders.dlq", connector: "orders-webhook", failure: failure, attempts: 3,
            nowMilliseconds: 1_700_000_000_123)
        #expect(message.topic == "orders.dlq")
        #expect(message.partition == nil)
        #expect(message.key == Array("k".utf8))
        #expect(message.value == [1, 2, 3])
        #expect(message.timestampMilliseconds == 1_699_999_999_999)
        #expect(Array(message.headers.prefix(2)) == record.headers, "original headers first, unchanged")
        let context = message.headers.dropFirst(2)
        #expect(context.map(\.name) == [
            "sluice.error.topic", "sluice.error.partition", "sluice.error.offset", "sluice.error.connector",
            "sluice.error.class", "sluice.error.message", "sluice.error.attempts", "sluice.error.timestamp",
        ])
        #expect(context.map { $0.stringValue ?? "<null>" } == [
            "orders", "7", "1234", "orders-webhook", "HTTPStatus400", String(repeating: "é", count: 1_000), "3", "1700000000123",
        ])
        #expect(DeadLetterHeaders.errorClass == "sluice.error.class")
    }

    // MARK: Metrics

    @Test func rendersPrometheusText() {
        let registry = MetricsRegistry()
        registry.describe("sluice_records_total", kind: "counter", help: "Records consumed.")
        registry.describe("sluice_latency_seconds", kind: "histogram", help: "Delivery latency.")
        registry.increment("sluice_records_total", labels: [("connector", "b")])
        registry.increment("sluice_records_total", labels: [("connector", "a")])
        registry.increment("sluice_records_total", by: 2, labels: [("connector", "b")])
        registry.increment("sluice_errors_total", by: 0.5)
        registry.setGauge("sluice_lag", 5, labels: [("topic", "t"), ("partition", "0")])
        registry.setGauge("sluice_lag", 7, labels: [("topic", "t"), ("partition", "0")])
        for value in [0.5, 0.25, 4] {
            registry.observe("sluice_latency_seconds", value, labels: [("connector", "a")], buckets: [0.1, 0.5, 1])
        }
        let expected = """
            # HELP sluice_errors_total sluice_errors_total
            # TYPE sluice_errors_total counter
            sluice_errors_total 0.5
            # HELP sluice_records_total Records consumed.
            # TYPE sluice_records_total counter
            sluice_records_total{connector="a"} 1
            sluice_records_total{connector="b"} 3
            # HELP sluice_lag sluice_lag
            # TYPE sluice_lag gauge
            sluice_lag{partition="0",topic="t"} 7
            # HELP sluice_latency_seconds Delivery latency.
            # TYPE sluice_latency_seconds histogram
            sluice_latency_seconds_bucket{connector="a",le="0.1"} 0
            sluice_latency_seconds_bucket{connector="a",le="0.5"} 2
            sluice_latency_seconds_bucket{connector="a",le="1"} 2
            sluice_latency_seconds_bucket{connector="a",le="+Inf"} 3
            sluice_latency_seconds_sum{connector="a"} 4.75
            sluice_latency_seconds_count{connector="a"} 3

            """
        #expect(registry.render() == expected)
        #expect(registry.counter("sluice_records_total", labels: [("connector", "b")]) == 3)
        #expect(registry.counter("sluice_records_total", labels: [("connector", "c")]) == 0)
        #expect(registry.counter("sluice_errors_total") == 0.5)
    }

    @Test func helpAndTypeAppearOncePerName() {
        let registry = MetricsRegistry()
        for connector in ["a", "b", "c"] {
            registry.increment("sluice_x_total", labels: [("connector", connector)])
            registry.observe("sluice_y_seconds", 0.01, labels: [("connector", connector)])
        }
        let lines = registry.render().split(separator: "\n")
        #expect(lines.filter { $0.hasPrefix("# HELP sluice_x_total ") }.count == 1)
        #expect(lines.filter { $0.hasPrefix("# TYPE sluice_x_total ") }.count == 1)
        #expect(lines.filter { $0.hasPrefix("# HELP sluice_y_seconds ") }.count == 1)
        #expect(lines.filter { $0.hasPrefix("# TYPE sluice_y_seconds histogram") }.count == 1)
        #expect(lines.filter { $0.hasPrefix("sluice_y_seconds_bucket{connector=\"b\",") }.count == MetricsRegistry.latencyBuckets.count + 1)
    }

    @Test func histogramBucketsAreCumulative() throws {
        let registry = MetricsRegistry()
        let values = [0.0005, 0.001, 0.003, 0.02, 0.2, 0.2, 3, 99]
        for value in values { registry.observe("h", value) }
        var counts: [Int] = []
        for line in registry.render().split(separator: "\n") where line.hasPrefix("h_bucket{") {
            counts.append(try #require(Int(line.split(separator: " ").last ?? "")))
        }
        let expected = MetricsRegistry.latencyBuckets.map { bound in values.filter { $0 <= bound }.count } + [values.count]
        #expect(counts == expected)
        #expect(zip(counts, counts.dropFirst()).allSatisfy { $0 <= $1 })
        #expect(registry.render().contains("\nh_count 8\n"))
    }

    @Test func labelValuesAreEscaped() {
        let registry = MetricsRegistry()
        registry.setGauge("g", 1, labels: [("value", "a\"b\\c\nd")])
        #expect(registry.render().contains(#"g{value="a\"b\\c\nd"} 1"#))
        #expect(MetricsRegistry.escape(#"\""#) == #"\\\""#)
        #expect(MetricsRegistry.escape("plain") == "plain")
    }

    final class CallCounter: Sendable {
        let calls = Mutex(0)
    }

    @Test func collectorsRunBeforeEachRendering() {
        let registry = MetricsRegistry()
        let counter = CallCounter()
        registry.addCollector { registry in
            let calls = counter.calls.withLock { calls in
                calls += 1
                return calls
            }
            registry.setGauge("sluice_renders", Double(calls))
        }
        #expect(counter.calls.withLock { $0 } == 0, "collectors run only when rendering")
        #expect(registry.render().contains("\nsluice_renders 1\n"))
        #expect(registry.render().contains("\nsluice_renders 2\n"))
    }

    @Test func removeGaugesDropsMatchingSeriesOnly() {
        let registry = MetricsRegistry()
        registry.setGauge("sluice_lag", 1, labels: [("topic", "t"), ("partition", "0")])
        registry.setGauge("sluice_lag", 2, labels: [("topic", "t"), ("partition", "1")])
        registry.setGauge("sluice_lag", 3, labels: [("topic", "u"), ("partition", "0")])
        registry.setGauge("sluice_other", 4, labels: [("partition", "0")])
        registry.removeGauges("sluice_lag", where: ("partition", "0"))
        let text = registry.render()
        // Labels are rendered sorted by name.
        #expect(!text.contains(#"sluice_lag{partition="0",topic="t"}"#))
        #expect(!text.contains(#"sluice_lag{partition="0",topic="u"}"#))
        #expect(text.contains(#"sluice_lag{partition="1",topic="t"} 2"#))
        #expect(text.contains(#"sluice_other{partition="0"} 4"#))
    }

    @Test func anEmptyRegistryRendersNothing() {
        #expect(MetricsRegistry().render() == "\n")
    }

    // MARK: Deduplication

    static func dedupe(window: Duration = .seconds(10), maxIDs: Int = 100) -> DedupeWindow {
        DedupeWindow(DedupeProcessorConfiguration(id: .messageKey, window: window, maxIDs: maxIDs))
    }

    @Test func duplicatesWithinTheWindow() {
        let window = Self.dedupe()
        let t0 = ContinuousClock.now
        #expect(!window.isDuplicate("a", now: t0))
        #expect(!window.isDuplicate("b", now: t0))
        #expect(window.isDuplicate("a", now: t0 + .seconds(5)))
        #expect(window.isDuplicate("a", now: t0 + .seconds(10)), "the window's end is inclusive")
        #expect(!window.isDuplicate("a", now: t0 + .seconds(10) + .nanoseconds(1)), "forgotten after the window")
        #expect(window.isDuplicate("a", now: t0 + .seconds(15)), "seen again at 10 s, remembered anew")
        #expect(!window.isDuplicate("b", now: t0 + .seconds(15)))
        #expect(!window.isDuplicate("c", now: t0 + .seconds(15)))
    }

    @Test func theWindowCountsFromTheFirstSighting() {
        let window = Self.dedupe()
        let t0 = ContinuousClock.now
        #expect(!window.isDuplicate("a", now: t0))
        #expect(window.isDuplicate("a", now: t0 + .seconds(9)))
        #expect(!window.isDuplicate("a", now: t0 + .seconds(11)), "a duplicate does not extend the window")
    }

    @Test func rememberedIDsAreBounded() {
        let window = Self.dedupe(window: .seconds(3600), maxIDs: 3)
        let t0 = ContinuousClock.now
        for (index, id) in ["a", "b", "c", "d"].enumerated() {
            #expect(!window.isDuplicate(id, now: t0 + .milliseconds(index)))
        }
        let later = t0 + .seconds(1)
        #expect(window.isDuplicate("d", now: later))
        #expect(window.isDuplicate("c", now: later))
        #expect(window.isDuplicate("b", now: later))
        #expect(!window.isDuplicate("a", now: later), "the oldest id was forgotten first")
    }

    @Test func manyIDsKeepTheMostRecent() {
        let window = Self.dedupe(window: .seconds(3600), maxIDs: 1_000)
        let t0 = ContinuousClock.now
        for id in 0..<5_000 { #expect(!window.isDuplicate("id-\(id)", now: t0)) }
        #expect((4_000..<5_000).allSatisfy { window.isDuplicate("id-\($0)", now: t0) })
        #expect(!window.isDuplicate("id-0", now: t0))
    }

    // MARK: Map

    static func map(select: [(String, String)] = [], set: [(String, JSONValue)] = [], drop: [String] = []) throws -> MapProcessorConfiguration {
        MapProcessorConfiguration(
            select: try select.map { (name: $0.0, path: try JSONPath.parse($0.1).get()) }, set: set.map { (name: $0.0, value: $0.1) },
            drop: try drop.map { try JSONPath.parse($0).get() })
    }

    static func apply(_ configuration: MapProcessorConfiguration, _ json: String) -> String {
        text(MapTransform.apply(configuration, to: JSONValue.parse(Array(json.utf8)) ?? .null))
    }

    static let order = #"{"id": "o-1", "amount": 5, "customer": {"name": "Ann", "email": "a@x"}, "debug": [1]}"#

    @Test func selectBuildsANewObject() throws {
        let configuration = try Self.map(select: [("order", ".id"), ("total", ".amount"), ("who", ".customer.name"), ("none", ".missing")])
        #expect(Self.apply(configuration, Self.order) == #"{"none":null,"order":"o-1","total":5,"who":"Ann"}"#)
    }

    @Test func setAddsAndOverridesFields() throws {
        let configuration = try Self.map(set: [("source", .string("sluice")), ("amount", .number(0)), ("flags", .array([.bool(true)]))])
        #expect(
            Self.apply(configuration, Self.order)
                == #"{"amount":0,"customer":{"email":"a@x","name":"Ann"},"debug":[1],"flags":[true],"id":"o-1","source":"sluice"}"#)
        #expect(Self.apply(try Self.map(set: [("source", .string("s"))]), #""text""#) == #"{"source":"s","value":"text"}"#)
        #expect(Self.apply(try Self.map(set: [("source", .string("s"))]), "[1]") == #"{"source":"s","value":[1]}"#)
    }

    @Test func dropRemovesPaths() throws {
        let configuration = try Self.map(drop: [".debug", ".customer.email", ".missing"])
        #expect(Self.apply(configuration, Self.order) == #"{"amount":5,"customer":{"name":"Ann"},"id":"o-1"}"#)
    }

    @Test func selectThenSetThenDrop() throws {
        let configuration = try Self.map(
            select: [("id", ".id"), ("customer", ".customer")], set: [("id", .string("replaced")), ("v", .number(2))],
            drop: [".customer.email", ".v"])
        #expect(Self.apply(configuration, Self.order) == #"{"customer":{"name":"Ann"},"id":"replaced"}"#)
    }

    @Test func anEmptyMapKeepsTheValue() throws {
        #expect(Self.apply(try Self.map(), Self.order) == Self.text(JSONValue.parse(Array(Self.order.utf8))!))
    }
}
