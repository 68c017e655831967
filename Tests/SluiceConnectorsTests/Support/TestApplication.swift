import Foundation
import Hummingbird
import NIOCore
import SluiceConnectorConfig
import SluiceTesting
import Synchronization

/// A small HTTP application standing in for the app beside the sidecar: records every delivery and answers with
/// whatever the test's responder decides (2xx, 503, drop...).
final class TestApplication: Sendable {
    struct Delivery: Sendable {
        var key: String?
        var value: JSONValue
        var topic: String
        var partition: Int32
        var offset: Int64
        var authorization: String?
        var attempt: Int
        var sequence: (key: String, number: Int)? {
            guard case .string(let text) = value else { return nil }
            let parts = text.split(separator: ":")
            guard parts.count == 2, let number = Int(parts[1]) else { return nil }
            return (String(parts[0]), number)
        }
    }

    typealias Responder = @Sendable (Delivery) async -> (status: Int, body: String)

    private struct State {
        var accepted: [Delivery] = []
        var attempts: [String: Int] = [:]
        var requests = 0
        var batches = 0
    }
    private let state = Mutex(State())
    private let responder: Responder
    private let task = Mutex<Task<Void, any Error>?>(nil)

    init(responder: @escaping Responder = { _ in (200, "") }) {
        self.responder = responder
    }

    /// Deliveries answered with 2xx (not drop), in arrival order.
    var accepted: [Delivery] { state.withLock { $0.accepted } }
    var requestCount: Int { state.withLock { $0.requests } }
    var batchCount: Int { state.withLock { $0.batches } }

    /// Per key, the sequence numbers accepted, in order.
    var acceptedSequencesByKey: [String: [Int]] {
        var result: [String: [Int]] = [:]
        for delivery in accepted {
            if let sequence = delivery.sequence { result[sequence.key, default: []].append(sequence.number) }
        }
        return result
    }

    /// Starts listening on a free loopback port; returns the app's URL.
    func start() async throws -> String {
        let router = Router()
        router.post("deliver") { request, _ -> Response in
            let body = try await request.body.collect(upTo: 64 * 1024 * 1024)
            guard let json = JSONValue.parse(Array(body.readableBytesView)), case .object(let members) = json else {
                return Response(status: .badRequest)
            }
            let envelopes: [JSONValue]
            if case .array(let items)? = members["messages"] {
                envelopes = items
                self.state.withLock { $0.batches += 1 }
            } else {
                envelopes = [json]
            }
            var deliveries: [Delivery] = []
            for envelope in envelopes {
                guard case .object(let fields) = envelope else { return Response(status: .badRequest) }
                let topic = fields["topic"].map(\.keyText) ?? ""
                let partition = Int32(fields["partition"]?.number ?? -1)
                let offset = Int64(fields["offset"]?.number ?? -1)
                let id = "\(topic)/\(partition)/\(offset)"
                let attempt = self.state.withLock { state in
                    state.attempts[id, default: 0] += 1
                    return state.attempts[id]!
                }
                deliveries.append(Delivery(
                    key: fields["key"].flatMap { if case .string(let key) = $0 { key } else { nil } },
                    value: fields["value"] ?? .null, topic: topic, partition: partition, offset: offset,
                    authorization: request.headers[.authorization], attempt: attempt))
            }
            self.state.withLock { $0.requests += 1 }
            let (status, text) = await self.responder(deliveries[0])
            if (200..<300).contains(status), !text.contains("drop") {
                self.state.withLock { $0.accepted += deliveries }
            }
            return Response(
                status: .init(code: status), headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(string: text)))
        }
        let port = Mutex<Int?>(nil)
        let application = Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { channel in port.withLock { $0 = channel.localAddress?.port } })
        task.withLock { $0 = Task { try await application.runService(gracefulShutdownSignals: []) } }
        let bound = try await Eventually.value(timeout: .seconds(20), "the test application listens") { port.withLock { $0 } }
        return "http://127.0.0.1:\(bound)/deliver"
    }

    func stop() {
        task.withLock { $0?.cancel() }
    }
}
