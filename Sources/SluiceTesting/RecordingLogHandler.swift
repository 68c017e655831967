public import Logging
import Synchronization

/// A log handler that keeps every record, for tests that assert on logs.
public struct RecordingLogHandler: LogHandler {
    /// One recorded log line.
    public struct Record: Sendable {
        public let level: Logger.Level
        public let message: String
        public let metadata: Logger.Metadata
    }

    /// The shared store of a handler's records.
    public final class Store: Sendable {
        private let records = Mutex<[Record]>([])
        public init() {}
        public var all: [Record] { records.withLock { $0 } }
        func append(_ record: Record) { records.withLock { $0.append(record) } }
    }

    public let store: Store
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .trace

    public init(store: Store) { self.store = store }

    /// A logger whose records land in `store`.
    public static func logger(label: String, store: Store) -> Logger {
        Logger(label: label) { _ in RecordingLogHandler(store: store) }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        store.append(Record(level: event.level, message: "\(event.message)", metadata: metadata.merging(event.metadata ?? [:]) { $1 }))
    }
}
