import DequeModule
public import SluiceConnectorConfig
import SluiceKafka
import Synchronization

/// What became of one record after the per-record processors.
public enum ProcessingOutcome: Sendable {
    /// Deliver this (possibly reshaped) record.
    case deliver(ConnectorRecord)
    /// Filtered out or a duplicate: nothing to deliver, acknowledge at once.
    case skip
    /// Could not be processed: dead-letter it (or stop, per the connector's error policy).
    case failed(ConnectorRecord, RecordFailure, attempts: Int)
}

/// The per-record processors of a connector (filter, map, dedupe, http), applied in order.
public struct RecordProcessorChain: Sendable {
    enum Step: Sendable {
        case filter(FilterExpression)
        case map(MapProcessorConfiguration)
        case dedupe(DedupeProcessorConfiguration, DedupeSet)
        case http(ApplicationEndpoint)
    }

    let steps: [Step]
    let retry: RetryPolicy
    let connector: String
    let onRetry: @Sendable (RecordFailure) -> Void

    /// - Parameter makeEndpoint: builds the HTTP client side of an `http` processor.
    public init(
        _ processors: [ProcessorConfiguration], connector: String, retry: RetryPolicy,
        makeEndpoint: (HTTPEndpointConfiguration) -> ApplicationEndpoint,
        onRetry: @escaping @Sendable (RecordFailure) -> Void = { _ in }
    ) {
        self.init(processors, connector: connector, retry: retry, state: .none, makeEndpoint: makeEndpoint, onRetry: onRetry)
    }

    /// - Parameter state: the persistent state of processors configured with `state:`.
    init(
        _ processors: [ProcessorConfiguration], connector: String, retry: RetryPolicy, state: ProcessorStateStores,
        makeEndpoint: (HTTPEndpointConfiguration) -> ApplicationEndpoint,
        onRetry: @escaping @Sendable (RecordFailure) -> Void = { _ in }
    ) {
        steps = processors.enumerated().compactMap { index, processor in
            switch processor {
            case .filter(let expression): .filter(expression)
            case .map(let configuration): .map(configuration)
            case .dedupe(let configuration):
                .dedupe(configuration, state.dedupes[index].map { .persistent($0) } ?? .memory(DedupeWindow(configuration)))
            case .http(let configuration): .http(makeEndpoint(configuration))
            case .aggregate: nil
            }
        }
        self.retry = retry
        self.connector = connector
        self.onRetry = onRetry
    }

    public var isEmpty: Bool { steps.isEmpty }

    /// Runs the record through every step.
    public func process(_ input: ConnectorRecord) async throws -> ProcessingOutcome {
        var record = input
        var json: JSONValue??  // parsed lazily, once per value
        func parsed() -> JSONValue? {
            if let json { return json }
            let value = record.json
            json = .some(value)
            return value
        }
        for step in steps {
            switch step {
            case .filter(let expression):
                guard expression.evaluate(record.context(json: parsed())) else { return .skip }
            case .map(let configuration):
                guard let value = parsed() else {
                    return .failed(input, RecordFailure(.permanent, errorClass: "NotJSON", message: "map needs a JSON value; this record's value is not JSON"), attempts: 1)
                }
                let mapped = MapTransform.apply(configuration, to: value)
                record.value = mapped.serialized()
                json = .some(mapped)
            case .dedupe(let configuration, let set):
                guard let id = configuration.id.select(record.context(json: parsed())) else {
                    return .failed(input, RecordFailure(.permanent, errorClass: "MissingDedupeID", message: "the record has no \(configuration.id) to deduplicate by"), attempts: 1)
                }
                if try await set.isDuplicate(id, record: input) { return .skip }
            case .http(let endpoint):
                let current = record
                let outcome = try await retry.run(onRetry: { failure, _ in onRetry(failure) }) {
                    await endpoint.post([current], connector: connector)
                }
                switch outcome {
                case .success(let body, _):
                    record.value = body
                    json = nil
                case .failed(let failure, let attempts), .dropped(let failure, let attempts):
                    return .failed(input, failure, attempts: attempts)
                }
            }
        }
        return .deliver(record)
    }
}

/// `map:`: select, then set, then drop.
enum MapTransform {
    static func apply(_ configuration: MapProcessorConfiguration, to value: JSONValue) -> JSONValue {
        var result: JSONValue
        if configuration.select.isEmpty {
            result = value
        } else {
            var members: [String: JSONValue] = [:]
            for (name, path) in configuration.select { members[name] = path.value(in: value) ?? .null }
            result = .object(members)
        }
        if !configuration.set.isEmpty {
            var members: [String: JSONValue] = [:]
            if case .object(let existing) = result { members = existing } else { members["value"] = result }
            for (name, constant) in configuration.set { members[name] = constant }
            result = .object(members)
        }
        for path in configuration.drop { path.remove(from: &result) }
        return result
    }
}

/// Where a `dedupe` processor remembers ids: in memory, or (with `state:`) in a journal.
enum DedupeSet: Sendable {
    case memory(DedupeWindow)
    case persistent(PersistentDedupe)

    /// Whether the record's `id` was seen within the window (and remembers it otherwise).
    /// - Throws: a journal failure (the pipeline restarts and the set is recovered from the journal).
    func isDuplicate(_ id: String, record: ConnectorRecord) async throws -> Bool {
        switch self {
        case .memory(let window): window.isDuplicate(id)
        case .persistent(let store): try await store.isDuplicate(id, record: record)
        }
    }
}

/// Remembers ids seen within a time window, bounded in count (the oldest are forgotten first).
final class DedupeWindow: Sendable {
    let configuration: DedupeProcessorConfiguration
    private let state = Mutex<(seen: [String: ContinuousClock.Instant], order: Deque<(String, ContinuousClock.Instant)>)>(([:], []))

    init(_ configuration: DedupeProcessorConfiguration) { self.configuration = configuration }

    /// Whether `id` was seen within the window; records it as seen now otherwise.
    func isDuplicate(_ id: String, now: ContinuousClock.Instant = .now) -> Bool {
        state.withLock { state in
            while let oldest = state.order.first,
                oldest.1 + configuration.window < now || state.order.count > configuration.maxIDs
            {
                state.order.removeFirst()
                if state.seen[oldest.0] == oldest.1 { state.seen[oldest.0] = nil }
            }
            if let seenAt = state.seen[id], seenAt + configuration.window >= now { return true }
            state.seen[id] = now
            state.order.append((id, now))
            return false
        }
    }
}
