import Foundation
import Hummingbird
import NIOCore
import SluiceConnectorConfig
import SluiceConnectors
import SluiceKafka
import Synchronization

/// `POST /v1/publish/{topic}`: publishes for the application and answers once the broker acknowledged.
///
/// Body (JSON): one message `{"key": "k", "value": <any JSON>, "headers": {"h": "v"}, "partition": 0}` or a batch
/// `{"messages": [ ... ]}`. A JSON string value is published as its text; other JSON values as their JSON text;
/// `"value_encoding": "base64"` publishes the decoded bytes of a base64 string; `null` publishes a tombstone. A body
/// with any other content type is published as raw bytes, the key taken from the `key` query parameter.
///
/// Answers 200 with `{"topic","partition","offset"}` (batch: `{"results": [...]}`); 400 for a malformed body,
/// 404 for an unknown topic, 503 when the broker cannot be reached in time, 502 for other delivery failures.
enum PublishAPI {
    static let maxBodyBytes = 16 * 1024 * 1024

    struct BadRequest: Error { var message: String }

    static func publish(topic: String, cluster: String, body: [UInt8], contentType: String?, key: String?, sidecar: Sidecar) async -> Response {
        guard !topic.isEmpty else { return SidecarRoutes.error(.badRequest, "the topic is missing: POST /v1/publish/{topic}") }
        let producer: KafkaProducer
        do {
            producer = try sidecar.clients.producer(cluster: cluster)
        } catch {
            return SidecarRoutes.error(.badRequest, "\(error)")
        }
        let messages: [KafkaProducerMessage]
        let isBatch: Bool
        do {
            if let contentType, !contentType.lowercased().hasPrefix("application/json") {
                messages = [KafkaProducerMessage(topic: topic, key: key.map { Array($0.utf8) }, value: body)]
                isBatch = false
            } else {
                (messages, isBatch) = try parse(body, topic: topic)
            }
        } catch let error as BadRequest {
            return SidecarRoutes.error(.badRequest, error.message)
        } catch {
            return SidecarRoutes.error(.badRequest, "\(error)")
        }
        let results = await sendAll(messages, with: producer)
        var firstFailure: HTTPResponse.Status?
        let rendered: [JSONValue] = results.map { result in
            switch result {
            case .success(let report):
                sidecar.metrics.increment("sluice_published_total", labels: [("topic", topic)])
                return .object(["topic": .string(report.topic), "partition": .number(Double(report.partition)), "offset": .number(Double(report.offset))])
            case .failure(let error):
                sidecar.metrics.increment("sluice_publish_failures_total", labels: [("topic", topic)])
                let status = statusFor(error)
                if firstFailure == nil { firstFailure = status }
                return .object(["error": .string("\(error)")])
            }
        }
        if !isBatch {
            if let firstFailure, case .object(let members) = rendered[0] { return SidecarRoutes.json(firstFailure, .object(members)) }
            return SidecarRoutes.json(.ok, rendered[0])
        }
        return SidecarRoutes.json(firstFailure ?? .ok, .object(["results": .array(rendered)]))
    }

    /// Produces every message and waits for all their delivery reports, in message order. One task, no task group:
    /// the messages are handed to librdkafka in order and their reports collected by callbacks. (A task group
    /// returning `(Int, Result)` tuples here was miscompiled by Swift 6.3.1 in release builds: the index came back
    /// corrupted.)
    static func sendAll(_ messages: [KafkaProducerMessage], with producer: KafkaProducer) async -> [Result<KafkaDeliveryReport, any Error>] {
        let collector = DeliveryCollector(count: messages.count)
        for (index, message) in messages.enumerated() {
            do {
                try await producer.send(message) { result in collector.set(index, result.mapError { $0 }) }
            } catch {
                collector.set(index, .failure(error))
            }
        }
        return await collector.all()
    }

    static func statusFor(_ error: any Error) -> HTTPResponse.Status {
        guard let error = error as? KafkaError else { return .badGateway }
        switch error.code {
        case .unknownTopic: return .notFound
        case .timedOut, .queueFull, .connection, .closed: return .serviceUnavailable
        case .invalidConfiguration: return .badRequest
        default: return error.isRetriable ? .serviceUnavailable : .badGateway
        }
    }

    static func parse(_ body: [UInt8], topic: String) throws -> ([KafkaProducerMessage], Bool) {
        guard let json = JSONValue.parse(body) else { throw BadRequest(message: "the body is not valid JSON (send application/octet-stream for raw bytes)") }
        guard case .object(let members) = json else { throw BadRequest(message: "the body must be a JSON object: {\"key\":…,\"value\":…} or {\"messages\":[…]}") }
        if let batch = members["messages"] {
            guard case .array(let items) = batch, !items.isEmpty else { throw BadRequest(message: "'messages' must be a non-empty list") }
            return (try items.enumerated().map { try message($0.element, topic: topic, position: "messages[\($0.offset)]") }, true)
        }
        return ([try message(json, topic: topic, position: "body")], false)
    }

    static func message(_ json: JSONValue, topic: String, position: String) throws -> KafkaProducerMessage {
        guard case .object(let members) = json else { throw BadRequest(message: "\(position) must be an object with key, value and headers") }
        let known: Set<String> = ["key", "value", "headers", "partition", "value_encoding", "timestamp"]
        if let unknown = members.keys.first(where: { !known.contains($0) }) {
            throw BadRequest(message: "\(position): unknown field '\(unknown)' (known: \(known.sorted().joined(separator: ", ")))")
        }
        var key: [UInt8]?
        switch members["key"] {
        case nil, .null?: key = nil
        case .string(let text)?: key = Array(text.utf8)
        case let other?: key = other.serialized()
        }
        var value: [UInt8]?
        let encoding = members["value_encoding"].map(\.keyText) ?? "auto"
        switch (members["value"], encoding) {
        case (nil, _), (.null?, _): value = nil
        case (.string(let text)?, "base64"):
            guard let data = Data(base64Encoded: text) else { throw BadRequest(message: "\(position).value is not valid base64") }
            value = Array(data)
        case (_, "base64"): throw BadRequest(message: "\(position).value must be a base64 string when value_encoding is base64")
        case (.string(let text)?, _): value = Array(text.utf8)
        case (let other?, _): value = other.serialized()
        }
        var headers: [KafkaHeader] = []
        if let headerValue = members["headers"] {
            guard case .object(let pairs) = headerValue else { throw BadRequest(message: "\(position).headers must be an object of names to strings") }
            for (name, value) in pairs.sorted(by: { $0.key < $1.key }) { headers.append(KafkaHeader(name: name, string: value.keyText)) }
        }
        var partition: Int32?
        if let partitionValue = members["partition"] {
            guard case .number(let number) = partitionValue, number >= 0, number == number.rounded(), number < 1_000_000 else {
                throw BadRequest(message: "\(position).partition must be a non-negative whole number")
            }
            partition = Int32(number)
        }
        var timestamp: Int64?
        if let timestampValue = members["timestamp"] {
            guard case .number(let number) = timestampValue, number >= 0, number < 1e15, number == number.rounded() else {
                throw BadRequest(message: "\(position).timestamp must be whole milliseconds since the epoch")
            }
            timestamp = Int64(number)
        }
        return KafkaProducerMessage(topic: topic, partition: partition, key: key, value: value, headers: headers, timestampMilliseconds: timestamp)
    }
}

/// Collects the delivery reports of one publish request; ``all()`` returns once every message has one.
final class DeliveryCollector: Sendable {
    private struct State {
        var results: [Result<KafkaDeliveryReport, any Error>?]
        var missing: Int
        var waiter: CheckedContinuation<Void, Never>?
    }
    private let state: Mutex<State>

    init(count: Int) {
        state = Mutex(State(results: Array(repeating: nil, count: count), missing: count))
    }

    func set(_ index: Int, _ result: Result<KafkaDeliveryReport, any Error>) {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard state.results[index] == nil else { return nil }
            state.results[index] = result
            state.missing -= 1
            return state.missing == 0 ? state.waiter.take() : nil
        }
        waiter?.resume()
    }

    func all() async -> [Result<KafkaDeliveryReport, any Error>] {
        await withCheckedContinuation { continuation in
            let done = state.withLock { state -> Bool in
                if state.missing == 0 { return true }
                state.waiter = continuation
                return false
            }
            if done { continuation.resume() }
        }
        return state.withLock { $0.results.map { $0! } }
    }
}
