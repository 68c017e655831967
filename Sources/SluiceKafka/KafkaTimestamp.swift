/// A record timestamp in milliseconds since the Unix epoch, with what kind of time it is.
public struct KafkaTimestamp: Hashable, Sendable {
    /// What the timestamp means.
    public enum Kind: Hashable, Sendable {
        /// Set by the producer (or the producing client's clock).
        case createTime
        /// Set by the broker when it appended the record.
        case logAppendTime
    }

    /// Milliseconds since 1970-01-01T00:00:00Z.
    public var milliseconds: Int64
    /// Create time or log-append time.
    public var kind: Kind

    public init(milliseconds: Int64, kind: Kind = .createTime) {
        self.milliseconds = milliseconds
        self.kind = kind
    }
}
