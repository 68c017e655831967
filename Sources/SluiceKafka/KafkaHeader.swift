/// A Kafka record header: a name and an optional binary value. Names may repeat within one message.
public struct KafkaHeader: Hashable, Sendable {
    /// The header's name.
    public var name: String
    /// The header's value; `nil` is a null value, distinct from an empty one.
    public var value: [UInt8]?

    /// Creates a header with a binary value.
    public init(name: String, value: [UInt8]?) {
        self.name = name
        self.value = value
    }

    /// Creates a header whose value is the UTF-8 encoding of `value`.
    public init(name: String, string value: String) {
        self.name = name
        self.value = Array(value.utf8)
    }

    /// The value decoded as UTF-8, if there is a value.
    public var stringValue: String? { value.map { String(decoding: $0, as: UTF8.self) } }
}
