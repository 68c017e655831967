import SluiceConnectorConfig
import SluiceKafka
import Testing

/// The building blocks of connector configuration: environment interpolation, durations, key selectors, and a full
/// configuration with every processor and sink type read into the typed model.
@Suite struct ConfigPrimitivesTests {
    // MARK: Environment interpolation

    static let environment = ["A": "x", "B": "y", "EMPTY": "", "_UNDER_1": "u", "URL": "http://h:1/p?q=$1"]

    struct InterpolationCase: Sendable, CustomTestStringConvertible {
        var text: String
        var value: String
        var substituted: Bool
        var testDescription: String { text }
    }

    static let interpolations: [InterpolationCase] = [
        .init(text: "plain", value: "plain", substituted: false),
        .init(text: "", value: "", substituted: false),
        .init(text: "${A}", value: "x", substituted: true),
        .init(text: "pre-${A}-post", value: "pre-x-post", substituted: true),
        .init(text: "${A}${B}", value: "xy", substituted: true),
        .init(text: "${_UNDER_1}", value: "u", substituted: true),
        .init(text: "${URL}", value: "http://h:1/p?q=$1", substituted: true),
        .init(text: "${MISSING:-fallback}", value: "fallback", substituted: true),
        .init(text: "${A:-fallback}", value: "x", substituted: true),
        .init(text: "${EMPTY:-fallback}", value: "fallback", substituted: true),
        .init(text: "${EMPTY}", value: "", substituted: true),
        .init(text: "${MISSING:-}", value: "", substituted: true),
        .init(text: "${MISSING:-with:-colons and spaces}", value: "with:-colons and spaces", substituted: true),
        .init(text: "${MISSING:-127.0.0.1:9092}", value: "127.0.0.1:9092", substituted: true),
        .init(text: "$$", value: "$", substituted: false),
        .init(text: "cost $$5", value: "cost $5", substituted: false),
        .init(text: "$${A}", value: "${A}", substituted: false),
        .init(text: "$$$${A}", value: "$${A}", substituted: false),
        .init(text: "$$${A}", value: "$x", substituted: true),
        .init(text: "$5", value: "$5", substituted: false),
        .init(text: "a$", value: "a$", substituted: false),
        .init(text: "$A", value: "$A", substituted: false),
        .init(text: "$ {A}", value: "$ {A}", substituted: false),
        .init(text: "${A}$", value: "x$", substituted: true),
        .init(text: "${A}}", value: "x}", substituted: true),
        .init(text: "{A}", value: "{A}", substituted: false),
    ]

    @Test(arguments: interpolations)
    func interpolates(_ interpolation: InterpolationCase) throws {
        let result = try EnvironmentInterpolation.interpolate(interpolation.text, environment: Self.environment).get()
        #expect(result.value == interpolation.value)
        #expect(result.substituted == interpolation.substituted)
    }

    struct ProblemCase: Sendable, CustomTestStringConvertible {
        var text: String
        var problem: EnvironmentInterpolation.Problem
        var testDescription: String { text }
    }

    static let problems: [ProblemCase] = [
        .init(text: "${A", problem: .malformed("${A")),
        .init(text: "x ${A and more", problem: .malformed("${A and more")),
        .init(text: "${", problem: .malformed("${")),
        .init(text: "${}", problem: .malformed("${}")),
        .init(text: "${1A}", problem: .malformed("${1A}")),
        .init(text: "${A-B}", problem: .malformed("${A-B}")),
        .init(text: "${A B}", problem: .malformed("${A B}")),
        .init(text: "${:-x}", problem: .malformed("${:-x}")),
        .init(text: "${A:x}", problem: .malformed("${A:x}")),
        .init(text: "${MISSING}", problem: .missingVariable("MISSING")),
        .init(text: "ok ${A} then ${MISSING} and ${B}", problem: .missingVariable("MISSING")),
    ]

    @Test(arguments: problems)
    func reportsProblems(_ problemCase: ProblemCase) {
        switch EnvironmentInterpolation.interpolate(problemCase.text, environment: Self.environment) {
        case .success(let result): Issue.record("'\(problemCase.text)' became '\(result.value)'")
        case .failure(let problem): #expect(problem == problemCase.problem)
        }
    }

    @Test func problemsSayHowToFixThem() {
        #expect(
            EnvironmentInterpolation.Problem.missingVariable("TOKEN").description
                == "environment variable 'TOKEN' is not set and has no default (write ${TOKEN:-default} to give one)")
        #expect(
            EnvironmentInterpolation.Problem.malformed("${A").description
                == "malformed interpolation '${A': write ${NAME} or ${NAME:-default}")
    }

    // MARK: Durations

    struct DurationCase: Sendable, CustomTestStringConvertible {
        var text: String
        var duration: Duration
        var testDescription: String { text }
    }

    static let durations: [DurationCase] = [
        .init(text: "250ms", duration: .milliseconds(250)),
        .init(text: "1ms", duration: .milliseconds(1)),
        .init(text: "5s", duration: .seconds(5)),
        .init(text: "100s", duration: .seconds(100)),
        .init(text: "1m30s", duration: .seconds(90)),
        .init(text: "2h", duration: .seconds(7200)),
        .init(text: "1d", duration: .seconds(86400)),
        .init(text: "1h1m1s1ms", duration: .milliseconds(3_661_001)),
        .init(text: "1d2h", duration: .seconds(93600)),
        .init(text: "0", duration: .zero),
        .init(text: "0s", duration: .zero),
        .init(text: "0ms", duration: .zero),
        .init(text: "1.5s", duration: .milliseconds(1500)),
        .init(text: "0.5m", duration: .seconds(30)),
        .init(text: "1.25h", duration: .seconds(4500)),
        .init(text: "0.25ms", duration: .zero),
        .init(text: "2.5ms", duration: .milliseconds(3)),
        .init(text: " 5s ", duration: .seconds(5)),
        .init(text: "1m1m", duration: .seconds(120)),
    ]

    @Test(arguments: durations)
    func parsesDurations(_ durationCase: DurationCase) {
        #expect(DurationParser.parse(durationCase.text) == durationCase.duration)
    }

    @Test(arguments: [
        "", " ", "5", "s", "ms", "5x", "5 s", "-5s", "+5s", "5s5", "1..5s", "5S", "5sec", "5mss", "1e3s", "5s ms",
        "00", "0.0", "5,5s", "1h 30m", "forever", "PT5S", "5s-", ".s",
    ])
    func rejectsInvalidDurations(_ text: String) {
        #expect(DurationParser.parse(text) == nil, "accepted '\(text)' as \(String(describing: DurationParser.parse(text)))")
    }

    // MARK: Key selectors

    static func selector(_ text: String) throws -> KeySelector { try KeySelector.parse(text).get() }

    @Test func parsesSelectors() throws {
        #expect(try Self.selector("key") == .messageKey)
        #expect(try Self.selector("header:user-id") == .header("user-id"))
        #expect(try Self.selector("header:a:b") == .header("a:b"))
        #expect(try Self.selector(".user.id") == .jsonField(try JSONPath.parse(".user.id").get()))
        #expect(try Self.selector(".") == .jsonField(try JSONPath.parse(".").get()))
        for text in ["key", "header:user-id", ".user.id", #".items[0]["odd key"]"#] {
            #expect(try Self.selector(text).description == text)
        }
    }

    @Test(arguments: [
        ("header:", "'header:' needs a header name, as in header:user-id"),
        ("user", "'user' is not a key selector: use key, header:NAME or a JSON path such as .user.id"),
        ("Key", "'Key' is not a key selector"),
        ("", "'' is not a key selector"),
        ("value", "'value' is not a key selector"),
        (".a..b", "bad JSON path '.a..b': invalid member name ''"),
        (".a[", "bad JSON path '.a[': missing ']'"),
    ])
    func rejectsBadSelectors(_ text: String, _ message: String) {
        switch KeySelector.parse(text) {
        case .success(let selector): Issue.record("'\(text)' was accepted as \(selector)")
        case .failure(let error): #expect(error.message.contains(message), "\(error.message)")
        }
    }

    static func context(_ json: String?, key: String?, headers: [(String, String)] = []) -> MessageContext {
        MessageContext(
            value: json.flatMap { JSONValue.parse(Array($0.utf8)) }, key: key, topic: "t", partition: 0, offset: 0,
            headers: headers.map { (name: $0.0, value: $0.1) })
    }

    @Test func selectsFromAMessage() throws {
        let context = Self.context(
            #"{"user": {"id": "u-1", "n": 42, "tags": ["a"], "nil": null}, "price": 2.5}"#, key: "k-1",
            headers: [("user", "first"), ("user", "second"), ("other", "")])
        #expect(try Self.selector("key").select(context) == "k-1")
        #expect(try Self.selector("header:user").select(context) == "second", "the last header of a name wins")
        #expect(try Self.selector("header:other").select(context) == "")
        #expect(try Self.selector("header:absent").select(context) == nil)
        #expect(try Self.selector(".user.id").select(context) == "u-1", "strings as they are, without quotes")
        #expect(try Self.selector(".user.n").select(context) == "42")
        #expect(try Self.selector(".price").select(context) == "2.5")
        #expect(try Self.selector(".user.tags").select(context) == #"["a"]"#)
        #expect(try Self.selector(".user.nil").select(context) == "null")
        #expect(try Self.selector(".user.absent").select(context) == nil)
        #expect(try Self.selector(".user").select(context) == #"{"id":"u-1","n":42,"nil":null,"tags":["a"]}"#)
    }

    @Test func selectingFromAMessageWithoutKeyOrJSON() throws {
        let context = Self.context(nil, key: nil)
        #expect(try Self.selector("key").select(context) == nil)
        #expect(try Self.selector(".id").select(context) == nil)
        #expect(try Self.selector("header:id").select(context) == nil)
    }

    // MARK: A full configuration

    static let full = """
        kafka:
          default:
            bootstrap: "${BOOTSTRAP:-127.0.0.1:9092}"
            client_id: sluice-test
          other:
            bootstrap: ["a:9092", "b:9093, c:9094"]
            security:
              protocol: sasl_ssl
              sasl: { mechanism: scram-sha-256, username: u, password: "${PASSWORD}" }
              tls: { ca_file: /etc/ca.pem }
            properties:
              socket.keepalive.enable: "true"
        server:
          listen: 0.0.0.0:9000
          token_env: API_TOKEN
          drain_grace: 1m30s
        connectors:
          - name: everything
            source:
              topics: [orders, refunds]
              start: latest
              properties:
                session.timeout.ms: "6000"
            entity_key: .customer.id
            processors:
              - filter: '.status == "paid" and @header.source != "replay"'
              - map:
                  select: { order: .id, total: .amount }
                  set: { source: sluice, version: 2, quoted: "2", flag: true, text: "true", nothing: null, object: '{"a":1}' }
                  drop: [.internal, .debug]
              - dedupe: { id: .id, window: 10m, max_ids: 500 }
              - http: { url: "http://127.0.0.1:8080/enrich" }
              - aggregate: { key: "header:user", function: sum, field: .total, window: 1m, grace: 10s, idle_close: 45s }
            sink:
              http:
                url: https://app.example.com/orders
                format: json
                timeout: 3s
                batch_size: 50
                linger: 20ms
                concurrency: 4
                token_env: APP_TOKEN
                headers: { X-One: "1", X-Two: two }
            delivery:
              commit_batch: 10
              commit_interval: 250ms
              max_in_flight_per_partition: 100
              max_in_flight_per_key: 1
              parallelism: 8
            errors:
              retry: { max_attempts: forever, initial_backoff: 50ms, max_backoff: 5s, jitter: 0.5 }
              dead_letter: { topic: everything.dlq, cluster: other }
          - name: bridge
            cluster: other
            source:
              pattern: "events\\\\..*"
            processors:
              - aggregate: { function: count, window: 5s }
            sink:
              kafka: { topic: mirrored, key: .user.id }
            errors: stop
          - name: to-stdout
            source: { topics: [a] }
            sink: stdout
          - name: to-file
            source: { topics: [b], group: custom-group, pattern: null }
            processors:
              - http: { url: "http://app/transform", format: raw, timeout: 1s }
            sink:
              file: { path: /tmp/out.jsonl }
            errors:
              retry: { max_attempts: 3 }
          - name: to-kafka-default
            source: { pattern: "^already.*" }
            sink: { kafka: { topic: out } }
            errors:
              dead_letter: { topic: c.dlq }
        """

    static let fullEnvironment = ["PASSWORD": "pw", "API_TOKEN": "api-secret", "APP_TOKEN": "app-secret"]

    static func loadFull() throws -> SluiceConfiguration {
        try ConfigurationLoader.load(text: full, file: "full.yaml", environment: fullEnvironment).get()
    }

    @Test func clustersAndServer() throws {
        let configuration = try Self.loadFull()
        #expect(configuration.clusters.keys.sorted() == ["default", "other"])
        let main = try #require(configuration.clusters["default"])
        #expect(main.name == "default")
        #expect(main.client.bootstrapServers == ["127.0.0.1:9092"])
        #expect(main.client.clientID == "sluice-test")
        #expect(main.client.security.securityProtocol == KafkaSecurity.plaintext.securityProtocol)
        #expect(main.client.properties.isEmpty)
        let other = try #require(configuration.clusters["other"])
        #expect(other.client.bootstrapServers == ["a:9092", "b:9093", "c:9094"])
        #expect(other.client.clientID == "sluice")
        #expect(other.client.security.securityProtocol == "sasl_ssl")
        #expect(other.client.security.saslMechanism == "SCRAM-SHA-256")
        #expect(other.client.security.saslUsername == "u")
        #expect(other.client.security.saslPassword == "pw")
        #expect(other.client.security.caLocation == "/etc/ca.pem")
        #expect(other.client.security.certificateLocation == nil)
        #expect(other.client.properties == ["socket.keepalive.enable": "true"])
        #expect(configuration.server.host == "0.0.0.0")
        #expect(configuration.server.port == 9000)
        #expect(configuration.server.apiToken == "api-secret")
        #expect(configuration.server.drainGrace == .seconds(90))
    }

    @Test func connectorWithEveryProcessorType() throws {
        let configuration = try Self.loadFull()
        #expect(configuration.connectors.map(\.name) == ["everything", "bridge", "to-stdout", "to-file", "to-kafka-default"])
        let connector = configuration.connectors[0]
        #expect(connector.cluster == "default")
        #expect(connector.location.file == "full.yaml")
        #expect(connector.source.topics == ["orders", "refunds"])
        #expect(connector.source.pattern == nil)
        #expect(connector.source.groupID == "sluice-everything")
        #expect(connector.source.start == .latest)
        #expect(connector.source.properties == ["session.timeout.ms": "6000"])
        #expect(connector.entityKey == .jsonField(try JSONPath.parse(".customer.id").get()))
        #expect(connector.processors.map(\.typeName) == ["filter", "map", "dedupe", "http", "aggregate"])

        guard case .filter(let filter) = connector.processors[0] else {
            Issue.record("not a filter")
            return
        }
        #expect(filter == (try FilterExpression.parse(#".status == "paid" and @header.source != "replay""#).get()))

        guard case .map(let map) = connector.processors[1] else {
            Issue.record("not a map")
            return
        }
        #expect(map.select.map(\.name) == ["order", "total"])
        #expect(map.select.map(\.path.description) == [".id", ".amount"])
        #expect(map.set.map(\.name) == ["source", "version", "quoted", "flag", "text", "nothing", "object"])
        #expect(
            map.set.map(\.value) == [
                .string("sluice"), .number(2), .string("2"), .bool(true), .string("true"), .null, .string(#"{"a":1}"#),
            ], "plain scalars are read as JSON, quoted ones stay strings")
        #expect(map.drop.map(\.description) == [".internal", ".debug"])

        guard case .dedupe(let dedupe) = connector.processors[2] else {
            Issue.record("not a dedupe")
            return
        }
        #expect(dedupe.id == .jsonField(try JSONPath.parse(".id").get()))
        #expect(dedupe.window == .seconds(600))
        #expect(dedupe.maxIDs == 500)

        guard case .http(let processor) = connector.processors[3] else {
            Issue.record("not an http processor")
            return
        }
        #expect(processor.url == "http://127.0.0.1:8080/enrich")
        #expect(processor.format == .json)
        #expect(processor.timeout == .seconds(10))
        #expect(processor.batchSize == 1)
        #expect(processor.linger == .milliseconds(5))
        #expect(processor.concurrency == 16)
        #expect(processor.appToken == nil)
        #expect(processor.headers.isEmpty)

        guard case .aggregate(let aggregate) = connector.processors[4] else {
            Issue.record("not an aggregate")
            return
        }
        #expect(aggregate.key == .header("user"))
        #expect(aggregate.function == .sum)
        #expect(aggregate.field?.description == ".total")
        #expect(aggregate.window == .seconds(60))
        #expect(aggregate.grace == .seconds(10))
        #expect(aggregate.idleClose == .seconds(45))
    }

    @Test func httpSinkDeliveryAndErrors() throws {
        let connector = try Self.loadFull().connectors[0]
        guard case .http(let sink) = connector.sink else {
            Issue.record("not an http sink: \(connector.sink.typeName)")
            return
        }
        #expect(connector.sink.typeName == "http")
        #expect(sink.url == "https://app.example.com/orders")
        #expect(sink.format == .json)
        #expect(sink.timeout == .seconds(3))
        #expect(sink.batchSize == 50)
        #expect(sink.linger == .milliseconds(20))
        #expect(sink.concurrency == 4)
        #expect(sink.appToken == "app-secret")
        #expect(sink.headers.map(\.name) == ["X-One", "X-Two"])
        #expect(sink.headers.map(\.value) == ["1", "two"])

        #expect(connector.delivery.commitBatch == 10)
        #expect(connector.delivery.commitInterval == .milliseconds(250))
        #expect(connector.delivery.maxInFlightPerPartition == 100)
        #expect(connector.delivery.maxInFlightPerKey == 1)
        #expect(connector.delivery.parallelism == 8)

        #expect(connector.errors.maxAttempts == nil, "max_attempts: forever")
        #expect(connector.errors.initialBackoff == .milliseconds(50))
        #expect(connector.errors.maxBackoff == .seconds(5))
        #expect(connector.errors.jitter == 0.5)
        guard case .deadLetter(let topic, let cluster) = connector.errors.afterRetries else {
            Issue.record("expected a dead-letter topic")
            return
        }
        #expect(topic == "everything.dlq")
        #expect(cluster == "other")
    }

    @Test func kafkaSinkPatternAndErrorsStop() throws {
        let connector = try Self.loadFull().connectors[1]
        #expect(connector.cluster == "other")
        #expect(connector.source.topics.isEmpty)
        #expect(connector.source.pattern == #"^events\..*"#, "a leading ^ is added")
        #expect(connector.source.groupID == "sluice-bridge")
        #expect(connector.source.start == .earliest)
        #expect(connector.entityKey == .messageKey)
        guard case .aggregate(let aggregate) = connector.processors.first else {
            Issue.record("not an aggregate")
            return
        }
        #expect(aggregate.key == .messageKey)
        #expect(aggregate.function == .count)
        #expect(aggregate.field == nil)
        #expect(aggregate.grace == .zero)
        #expect(aggregate.idleClose == .seconds(30))
        guard case .kafka(let topic, let cluster, let key) = connector.sink else {
            Issue.record("not a kafka sink")
            return
        }
        #expect(topic == "mirrored")
        #expect(cluster == "other", "the sink's cluster defaults to the connector's")
        #expect(key == .jsonField(try JSONPath.parse(".user.id").get()))
        Self.expectDefaultErrors(connector.errors)
    }

    static func expectDefaultErrors(_ errors: ErrorHandlingConfiguration, maxAttempts: Int? = 10) {
        #expect(errors.maxAttempts == maxAttempts)
        #expect(errors.initialBackoff == .milliseconds(100))
        #expect(errors.maxBackoff == .seconds(30))
        #expect(errors.jitter == 0.2)
        guard case .stop = errors.afterRetries else {
            Issue.record("expected stop after retries")
            return
        }
    }

    @Test func defaultsOfAMinimalConnector() throws {
        let connector = try Self.loadFull().connectors[2]
        guard case .stdout = connector.sink else {
            Issue.record("not stdout")
            return
        }
        #expect(connector.processors.isEmpty)
        #expect(connector.source.groupID == "sluice-to-stdout")
        #expect(connector.source.properties.isEmpty)
        #expect(connector.delivery.commitBatch == 1000)
        #expect(connector.delivery.commitInterval == .seconds(1))
        #expect(connector.delivery.maxInFlightPerPartition == 1000)
        #expect(connector.delivery.maxInFlightPerKey == 1)
        #expect(connector.delivery.parallelism == 64)
        Self.expectDefaultErrors(connector.errors)
    }

    @Test func fileSinkRawHTTPProcessorAndPartialRetry() throws {
        let connector = try Self.loadFull().connectors[3]
        guard case .file(let path) = connector.sink else {
            Issue.record("not a file sink")
            return
        }
        #expect(path == "/tmp/out.jsonl")
        #expect(connector.source.groupID == "custom-group")
        #expect(connector.source.pattern == nil)
        guard case .http(let processor) = connector.processors.first else {
            Issue.record("not an http processor")
            return
        }
        #expect(processor.format == .raw)
        #expect(processor.timeout == .seconds(1))
        Self.expectDefaultErrors(connector.errors, maxAttempts: 3)
    }

    @Test func deadLetterDefaultsToTheConnectorsClusterAndPatternKeepsItsCaret() throws {
        let connector = try Self.loadFull().connectors[4]
        #expect(connector.source.pattern == "^already.*")
        guard case .kafka(let topic, let cluster, let key) = connector.sink else {
            Issue.record("not a kafka sink")
            return
        }
        #expect(topic == "out")
        #expect(cluster == "default")
        #expect(key == nil)
        guard case .deadLetter(let dlq, let dlqCluster) = connector.errors.afterRetries else {
            Issue.record("expected a dead-letter topic")
            return
        }
        #expect(dlq == "c.dlq")
        #expect(dlqCluster == "default")
        #expect(connector.errors.maxAttempts == 10)
    }

    @Test func serverDefaults() throws {
        let configuration = try ConfigurationLoader.load(
            text: """
                kafka: { default: { bootstrap: "h:1" } }
                connectors:
                  - { name: c, source: { topics: [t] }, sink: stdout }
                """
        ).get()
        #expect(configuration.server.host == "127.0.0.1")
        #expect(configuration.server.port == 8474)
        #expect(configuration.server.apiToken == nil)
        #expect(configuration.server.drainGrace == .seconds(25))
    }

    @Test func theDefaultBootstrapIsOverriddenByTheEnvironment() throws {
        var environment = Self.fullEnvironment
        environment["BOOTSTRAP"] = "kafka-1:9092,kafka-2:9092"
        let configuration = try ConfigurationLoader.load(text: Self.full, environment: environment).get()
        #expect(configuration.clusters["default"]?.client.bootstrapServers == ["kafka-1:9092", "kafka-2:9092"])
    }
}
