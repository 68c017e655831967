public import SluiceConnectorConfig
public import SluiceKafka

/// Per-key tumbling windows over records' own timestamps (event time), one stream time per input partition.
///
/// A window `[start, start + size)` closes when its partition's stream time (the highest record timestamp seen)
/// reaches `end + grace`, or when the partition has been idle for `idleClose`. A record for a window that already
/// closed is *late*: reported to the caller (which counts and dead-letters it), never folded silently or dropped.
/// Each window keeps the acknowledgements of every record folded into it; they are released with the window's
/// result, so an input becomes committable only after the window it went into was emitted and delivered.
public struct WindowAggregator<Ack: Sendable>: Sendable {
    public struct WindowResult: Sendable {
        public var partition: KafkaTopicPartition
        public var key: String
        public var windowStart: Int64
        public var windowEnd: Int64
        public var count: Int
        /// The folded value: the count, sum, min, max, or the last value.
        public var value: JSONValue
        public var acks: [Ack]
        public var lastOffset: Int64

        /// The output record's JSON value.
        public func json(function: AggregateProcessorConfiguration.Function) -> JSONValue {
            .object([
                "key": .string(key), "window_start": .number(Double(windowStart)), "window_end": .number(Double(windowEnd)),
                "function": .string(function.rawValue), "value": value, "count": .number(Double(count)),
            ])
        }
    }

    public enum AddResult: Sendable {
        /// Folded in; these windows closed as a result (stream time moved on).
        case folded(closed: [WindowResult])
        /// The record's window already closed (stream time passed its end plus grace).
        case late(windowEnd: Int64, streamTime: Int64)
        /// The record lacks what the function folds (for example a numeric field for sum).
        case invalid(String)
    }

    struct WindowKey: Hashable {
        var partition: KafkaTopicPartition
        var key: String
        var start: Int64
    }

    struct WindowState {
        var count = 0
        var number: Double?
        var last: JSONValue = .null
        var acks: [Ack] = []
        var lastOffset: Int64 = -1
    }

    public let configuration: AggregateProcessorConfiguration
    let sizeMilliseconds: Int64
    let graceMilliseconds: Int64
    var windows: [WindowKey: WindowState] = [:]
    var streamTime: [KafkaTopicPartition: Int64] = [:]
    var lastActivity: [KafkaTopicPartition: ContinuousClock.Instant] = [:]

    public init(_ configuration: AggregateProcessorConfiguration) {
        self.configuration = configuration
        sizeMilliseconds = max(1, configuration.window.wholeMilliseconds)
        graceMilliseconds = max(0, configuration.grace.wholeMilliseconds)
    }

    /// Windows not yet emitted.
    public var openWindowCount: Int { windows.count }

    /// Folds one record in.
    public mutating func add(
        key: String, timestamp: Int64, value: JSONValue?, partition: KafkaTopicPartition, offset: Int64, ack: Ack,
        now: ContinuousClock.Instant = .now
    ) -> AddResult {
        let start = Int64((Double(timestamp) / Double(sizeMilliseconds)).rounded(.down)) * sizeMilliseconds
        let end = start + sizeMilliseconds
        let time = streamTime[partition] ?? timestamp
        if end + graceMilliseconds <= time { return .late(windowEnd: end, streamTime: time) }
        var number: Double?
        var folded: JSONValue = .null
        if configuration.function != .count {
            guard let field = configuration.field, let found = value.flatMap({ field.value(in: $0) }) else {
                return .invalid("the record has no \(configuration.field?.description ?? "field") to \(configuration.function.rawValue)")
            }
            folded = found
            if configuration.function != .last {
                guard let numeric = found.number else {
                    return .invalid("\(configuration.field!.description) is not a number, so it cannot be folded by \(configuration.function.rawValue)")
                }
                number = numeric
            }
        }
        let windowKey = WindowKey(partition: partition, key: key, start: start)
        var state = windows[windowKey] ?? WindowState()
        state.count += 1
        switch configuration.function {
        case .count: state.number = Double(state.count)
        case .sum: state.number = (state.number ?? 0) + number!
        case .min: state.number = Swift.min(state.number ?? number!, number!)
        case .max: state.number = Swift.max(state.number ?? number!, number!)
        case .last: state.last = folded
        }
        state.acks.append(ack)
        state.lastOffset = Swift.max(state.lastOffset, offset)
        windows[windowKey] = state
        streamTime[partition] = Swift.max(time, timestamp)
        lastActivity[partition] = now
        let closeBefore = streamTime[partition]! - sizeMilliseconds - graceMilliseconds
        return .folded(closed: close(partition) { $0.start <= closeBefore })
    }

    /// Closes every window of partitions idle for `idleClose`.
    public mutating func closeIdle(now: ContinuousClock.Instant = .now) -> [WindowResult] {
        var results: [WindowResult] = []
        for (partition, last) in lastActivity where last + configuration.idleClose <= now {
            let closed = close(partition) { _ in true }
            results += closed
            lastActivity[partition] = nil
            // Records for the windows just closed are late from now on: move stream time past their end + grace,
            // so they are never folded into a second, partial copy of a window already emitted.
            if let lastEnd = closed.map(\.windowEnd).max() {
                streamTime[partition] = Swift.max(streamTime[partition] ?? lastEnd, lastEnd + graceMilliseconds)
            }
        }
        return results
    }

    /// When the next idle close is due, if any partition has open windows.
    public var nextIdleDeadline: ContinuousClock.Instant? {
        lastActivity.values.min().map { $0 + configuration.idleClose }
    }

    /// Forgets a partition's open windows without emitting them (the partition was revoked: its unacknowledged
    /// inputs will be consumed again, and aggregated again, by the partition's next owner).
    public mutating func discard(_ partitions: Set<KafkaTopicPartition>) {
        windows = windows.filter { !partitions.contains($0.key.partition) }
        for partition in partitions {
            streamTime[partition] = nil
            lastActivity[partition] = nil
        }
    }

    private mutating func close(_ partition: KafkaTopicPartition, where shouldClose: (WindowKey) -> Bool) -> [WindowResult] {
        let closing = windows.keys.filter { $0.partition == partition && shouldClose($0) }
            .sorted { ($0.start, $0.key) < ($1.start, $1.key) }
        return closing.map { key in
            let state = windows.removeValue(forKey: key)!
            let value: JSONValue = configuration.function == .last ? state.last : .number(state.number ?? 0)
            return WindowResult(
                partition: partition, key: key.key, windowStart: key.start, windowEnd: key.start + sizeMilliseconds,
                count: state.count, value: value, acks: state.acks, lastOffset: state.lastOffset)
        }
    }
}
