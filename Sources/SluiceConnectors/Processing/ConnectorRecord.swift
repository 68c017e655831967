public import SluiceConnectorConfig
public import SluiceKafka

/// A record on its way through a connector: the consumed message, possibly reshaped by processors. It keeps the
/// origin (topic, partition, offset) for dead letters and delivery metadata.
public struct ConnectorRecord: Sendable {
    public var key: [UInt8]?
    public var value: [UInt8]?
    public var headers: [KafkaHeader]
    public var timestampMilliseconds: Int64?
    public var topic: String
    public var partition: Int32
    public var offset: Int64

    public init(_ message: KafkaConsumerMessage) {
        key = message.key
        value = message.value
        headers = message.headers
        timestampMilliseconds = message.timestamp?.milliseconds
        topic = message.topic
        partition = message.partition
        offset = message.offset
    }

    public init(
        key: [UInt8]?, value: [UInt8]?, headers: [KafkaHeader] = [], timestampMilliseconds: Int64?, topic: String,
        partition: Int32, offset: Int64
    ) {
        self.key = key
        self.value = value
        self.headers = headers
        self.timestampMilliseconds = timestampMilliseconds
        self.topic = topic
        self.partition = partition
        self.offset = offset
    }

    public var keyString: String? { key.map { String(decoding: $0, as: UTF8.self) } }

    /// What filter expressions and key selectors see (`json` is the parsed value, if it is JSON).
    public func context(json: JSONValue?) -> MessageContext {
        MessageContext(
            value: json, key: keyString, topic: topic, partition: partition, offset: offset,
            headers: headers.map { ($0.name, $0.stringValue ?? "") })
    }

    /// The parsed JSON value, or `nil` when the value is absent or not JSON.
    public var json: JSONValue? { value.flatMap { JSONValue.parse($0) } }
}

/// Why a record could not be processed or delivered: what the dead-letter headers and logs report.
public struct RecordFailure: Error, Sendable, CustomStringConvertible {
    public enum Disposition: Sendable, Equatable {
        /// Worth another attempt (timeouts, 5xx, 429, connection errors).
        case retryable
        /// Another attempt would fail the same way (a 4xx, a value that is not JSON where JSON is needed).
        case permanent
        /// The application asked to drop the record: it goes to the dead-letter topic without retries.
        case drop
    }

    public var disposition: Disposition
    /// A short class name for the `sluice.error.class` header and metrics (for example `HTTPStatus503`).
    public var errorClass: String
    public var message: String
    /// A server's requested minimum wait before the next attempt (`Retry-After`).
    public var retryAfter: Duration?

    public init(_ disposition: Disposition, errorClass: String, message: String, retryAfter: Duration? = nil) {
        self.disposition = disposition
        self.errorClass = errorClass
        self.message = message
        self.retryAfter = retryAfter
    }

    public var description: String { "\(errorClass): \(message)" }
}
