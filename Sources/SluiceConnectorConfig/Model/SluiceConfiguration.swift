public import SluiceKafka

/// Everything a `sluice run` needs: Kafka clusters, the sidecar's HTTP listener, and the connectors, read from one
/// or more YAML files and validated.
public struct SluiceConfiguration: Sendable {
    /// Kafka clusters by name (`kafka:` sections; a connector names one with `cluster:`, default `default`).
    public var clusters: [String: ClusterConfiguration]
    /// The sidecar's HTTP listener (`server:`).
    public var server: ServerConfiguration
    /// Every connector, in file order.
    public var connectors: [ConnectorConfiguration]
}

/// One Kafka cluster.
public struct ClusterConfiguration: Sendable {
    public var name: String
    /// Client settings (bootstrap servers, client id, security, raw librdkafka properties).
    public var client: KafkaClientConfiguration
}

/// The sidecar's HTTP listener.
public struct ServerConfiguration: Sendable {
    /// Address to bind; loopback by default, so only the pod or host can reach the admin and publish API.
    public var host: String = "127.0.0.1"
    public var port: Int = 8474
    /// The bearer token the API requires (read from the environment variable named by `token_env`), or `nil`.
    public var apiToken: String?
    /// How long SIGTERM waits for in-flight messages before abandoning them (they are delivered again later).
    public var drainGrace: Duration = .seconds(25)

    public init() {}
}

/// One connector: a source, optional processors, a sink, delivery and error settings.
public struct ConnectorConfiguration: Sendable {
    public var name: String
    public var cluster: String
    public var source: SourceConfiguration
    /// Where a message's entity key comes from: messages of one key are processed in order, keys in parallel.
    public var entityKey: KeySelector
    public var processors: [ProcessorConfiguration]
    public var sink: SinkConfiguration
    public var delivery: DeliveryConfiguration
    public var errors: ErrorHandlingConfiguration
    /// Where the YAML declared it (for messages).
    public var location: SourceLocation
}

/// What a connector consumes.
public struct SourceConfiguration: Sendable {
    public enum StartPosition: String, Sendable { case earliest, latest }

    /// Topics to subscribe to; empty when `pattern` is used.
    public var topics: [String]
    /// A regular expression subscription (librdkafka's `^` prefixed form), or `nil`.
    public var pattern: String?
    public var groupID: String
    /// Where a group with no committed offset starts.
    public var start: StartPosition
    /// Raw librdkafka consumer properties.
    public var properties: [String: String]
}

/// Selects a string from a message: its key, a header, or a field of its JSON value.
public enum KeySelector: Sendable, Equatable, CustomStringConvertible {
    case messageKey
    case header(String)
    case jsonField(JSONPath)

    /// Parses `key`, `header:NAME` or a JSON path such as `.user.id`.
    public static func parse(_ text: String) -> Result<KeySelector, KeySelectorError> {
        if text == "key" { return .success(.messageKey) }
        if text.hasPrefix("header:") {
            let name = String(text.dropFirst("header:".count))
            return name.isEmpty ? .failure(KeySelectorError(message: "'header:' needs a header name, as in header:user-id")) : .success(.header(name))
        }
        if text.hasPrefix(".") {
            switch JSONPath.parse(text) {
            case .success(let path): return .success(.jsonField(path))
            case .failure(let error): return .failure(KeySelectorError(message: "bad JSON path '\(text)': \(error.message)"))
            }
        }
        return .failure(KeySelectorError(message: "'\(text)' is not a key selector: use key, header:NAME or a JSON path such as .user.id"))
    }

    /// The selected text for one message, or `nil` when the message lacks it.
    public func select(_ context: MessageContext) -> String? {
        switch self {
        case .messageKey: context.key
        case .header(let name): context.headers.last { $0.name == name }?.value
        case .jsonField(let path): context.value.flatMap { path.value(in: $0) }.map(\.keyText)
        }
    }

    public var description: String {
        switch self {
        case .messageKey: "key"
        case .header(let name): "header:\(name)"
        case .jsonField(let path): path.description
        }
    }

    public struct KeySelectorError: Error, Sendable { public var message: String }
}

/// A built-in processor, applied in order.
public enum ProcessorConfiguration: Sendable {
    /// Keeps the messages for which the expression holds (the others are acknowledged and skipped).
    case filter(FilterExpression)
    /// Reshapes JSON values.
    case map(MapProcessorConfiguration)
    /// Drops messages whose id was already seen within the window.
    case dedupe(DedupeProcessorConfiguration)
    /// Folds messages per key into tumbling windows and emits one record per window and key when it closes.
    case aggregate(AggregateProcessorConfiguration)
    /// Calls the application over HTTP and replaces the value with the response body.
    case http(HTTPEndpointConfiguration)

    public var typeName: String {
        switch self {
        case .filter: "filter"
        case .map: "map"
        case .dedupe: "dedupe"
        case .aggregate: "aggregate"
        case .http: "http"
        }
    }
}

/// `map:`: `select` builds a new object from paths, `set` adds constant fields, `drop` removes paths.
public struct MapProcessorConfiguration: Sendable {
    /// Output field name → input path. Empty: start from the whole input value.
    public var select: [(name: String, path: JSONPath)]
    public var set: [(name: String, value: JSONValue)]
    public var drop: [JSONPath]
}

/// `dedupe:`: the id to compare, the window an id is remembered for, and a bound on remembered ids.
public struct DedupeProcessorConfiguration: Sendable {
    public var id: KeySelector
    public var window: Duration
    public var maxIDs: Int
    /// Where the remembered ids are kept so that they survive restarts (and, with Kafka, rebalances); `nil`: in
    /// memory only.
    public var state: StateStoreConfiguration?
}

/// `state:` of a stateful processor.
public enum StateStoreConfiguration: Sendable, Equatable {
    /// An embedded SQLite file of this instance (`path`; `nil`: `$SLUICE_STATE_DIR/<connector>.db`, the directory
    /// defaulting to `sluice-state` under the working directory). State stays on the instance.
    case sqlite(path: String?)
    /// A compacted Kafka changelog topic on the connector's cluster, partitioned like the (single) input topic
    /// (`topic`; `nil`: `<connector>-dedupe-state`). State moves with its partition between instances. `linger`: how
    /// long the changelog producer waits to batch records (`nil`: the journal's default, 5 ms); longer batches cost
    /// the brokers less, and delay each message's acknowledgement by up to that much when the load is light.
    case kafka(topic: String?, linger: Duration? = nil)
}

/// `aggregate:`: per-key tumbling windows over the records' own timestamps.
public struct AggregateProcessorConfiguration: Sendable {
    public enum Function: String, Sendable, CaseIterable { case count, sum, min, max, last }

    public var key: KeySelector
    public var function: Function
    /// The field folded by sum/min/max/last (not needed for count).
    public var field: JSONPath?
    public var window: Duration
    /// How long after a window's end late records are still folded in (stream time, from record timestamps).
    public var grace: Duration
    /// A partition with no records for this long closes all its windows.
    public var idleClose: Duration
}

/// An HTTP endpoint of the application (sink or processor).
public struct HTTPEndpointConfiguration: Sendable {
    public enum Format: String, Sendable { case json, raw }

    public var url: String
    /// `json`: an envelope with key, headers, topic, partition, offset and value. `raw`: the value as the body,
    /// metadata in `Sluice-*` headers.
    public var format: Format = .json
    public var timeout: Duration = .seconds(10)
    /// Messages per request (json format only); `1` posts single messages.
    public var batchSize: Int = 1
    /// How long a batch waits to fill.
    public var linger: Duration = .milliseconds(5)
    /// Requests in flight at once for this connector.
    public var concurrency: Int = 16
    /// Sent as `Authorization: Bearer …` on every call, so the app can check the call comes from its sidecar.
    public var appToken: String?
    /// Extra request headers.
    public var headers: [(name: String, value: String)] = []
}

/// Where a connector's records go.
public enum SinkConfiguration: Sendable {
    /// A Kafka topic; the key is preserved unless `key` selects another.
    case kafka(topic: String, cluster: String, key: KeySelector?)
    case http(HTTPEndpointConfiguration)
    /// JSON lines on standard output.
    case stdout
    /// JSON lines appended to a file.
    case file(path: String)

    public var typeName: String {
        switch self {
        case .kafka: "kafka"
        case .http: "http"
        case .stdout: "stdout"
        case .file: "file"
        }
    }
}

/// How offsets are committed and how much may be in flight.
public struct DeliveryConfiguration: Sendable {
    public var commitBatch: Int = 1000
    public var commitInterval: Duration = .seconds(1)
    public var maxInFlightPerPartition: Int = 1000
    /// Messages of one entity key in flight at once; `1` keeps per-key order.
    public var maxInFlightPerKey: Int = 1
    /// Keys processed in parallel.
    public var parallelism: Int = 64
}

/// Retries, then a dead-letter topic or a stop.
public struct ErrorHandlingConfiguration: Sendable {
    public enum AfterRetries: Sendable {
        case deadLetter(topic: String, cluster: String)
        /// Halts the connector with offsets uncommitted past the failed message.
        case stop
    }

    /// Attempts in all (the first one included); `nil` retries forever.
    public var maxAttempts: Int? = 10
    public var initialBackoff: Duration = .milliseconds(100)
    public var maxBackoff: Duration = .seconds(30)
    /// Fraction of each backoff that is randomized (0...1).
    public var jitter: Double = 0.2
    public var afterRetries: AfterRetries = .stop
}
