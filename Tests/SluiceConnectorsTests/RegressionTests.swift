@testable import SluiceConnectorConfig
import SluiceConnectors
import SluiceKafka
import Testing

/// Bugs found by review, each pinned by the input that showed it.
@Suite struct RegressionTests {
    @Test func anAbsurdDurationIsAnErrorNotACrash() {
        #expect(DurationParser.parse("10000000000000000s") == nil)
        #expect(DurationParser.parse("1e308h") == nil)
        #expect(DurationParser.parse("36500d") != nil)
        let text = """
            kafka: { default: { bootstrap: "127.0.0.1:9092" } }
            connectors:
              - name: c
                source: { topics: [t] }
                sink: stdout
                delivery: { commit_interval: 10000000000000000s }
            """
        guard case .failure(let error) = ConfigurationLoader.load(text: text) else {
            Issue.record("accepted")
            return
        }
        #expect(error.diagnostics.first?.message.contains("must be a duration") == true)
    }

    @Test(arguments: ["01", "00", "-01", "+1", ".5", "-.5", "1.e5", "[01]", "1.", "-", "1e", "1e+"])
    func invalidJSONNumbersAreRejected(_ text: String) {
        #expect(JSONValue.parse(Array(text.utf8)) == nil, "\(text) was accepted")
    }

    @Test(arguments: [("0", 0.0), ("-0", 0.0), ("10", 10.0), ("1.5", 1.5), ("-2.5e3", -2500.0), ("1E+2", 100.0), ("0.001", 0.001)])
    func validJSONNumbersAreRead(_ text: String, _ value: Double) {
        #expect(JSONValue.parse(Array(text.utf8)) == .number(value))
    }

    @Test func aRecordForAWindowClosedByIdlenessIsLateNotASecondWindow() throws {
        let start = ContinuousClock.now
        var aggregator = WindowAggregator<Int>(
            AggregateProcessorConfiguration(
                key: .messageKey, function: .count, field: nil, window: .seconds(60), grace: .zero, idleClose: .seconds(15)))
        let partition = KafkaTopicPartition(topic: "clicks", partition: 0)
        guard case .folded(let none) = aggregator.add(key: "alice", timestamp: 5000, value: nil, partition: partition, offset: 0, ack: 0, now: start)
        else { throw RegressionError() }
        #expect(none.isEmpty)
        let closed = aggregator.closeIdle(now: start + .seconds(20))
        #expect(closed.map(\.windowStart) == [0])
        guard case .late = aggregator.add(key: "alice", timestamp: 26000, value: nil, partition: partition, offset: 1, ack: 1, now: start + .seconds(21))
        else {
            Issue.record("a record for the window already emitted was folded into a second copy of it")
            return
        }
        // The next window is still open for records.
        guard case .folded = aggregator.add(key: "alice", timestamp: 61000, value: nil, partition: partition, offset: 2, ack: 2, now: start + .seconds(22))
        else { throw RegressionError() }
    }

    @Test func labelOrderDoesNotMakeASecondSeries() {
        let registry = MetricsRegistry()
        registry.increment("x", labels: [("a", "1"), ("b", "2")])
        registry.increment("x", labels: [("b", "2"), ("a", "1")])
        #expect(registry.counter("x", labels: [("b", "2"), ("a", "1")]) == 2)
        #expect(registry.render().contains("x{a=\"1\",b=\"2\"} 2"))
    }

    @Test func filterNumbersMayHaveSignedExponents() throws {
        let expression = try FilterExpression.parse(".v < 1e-5 or .v >= 1E5").get()
        let small = MessageContext(value: .object(["v": .number(0.000001)]), key: nil, topic: "t", partition: 0, offset: 0, headers: [])
        let middle = MessageContext(value: .object(["v": .number(5)]), key: nil, topic: "t", partition: 0, offset: 0, headers: [])
        #expect(expression.evaluate(small))
        #expect(!expression.evaluate(middle))
    }

    @Test func backoffToleratesAnyAttemptNumber() {
        let policy = RetryPolicy(maxAttempts: nil, initialBackoff: .milliseconds(10), maxBackoff: .seconds(1), jitter: 0)
        #expect(policy.backoff(afterAttempt: Int.min) == .milliseconds(10))
        #expect(policy.backoff(afterAttempt: Int.max) == .seconds(1))
    }

    struct RegressionError: Error {}
}
