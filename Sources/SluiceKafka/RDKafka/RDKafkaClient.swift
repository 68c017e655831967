internal import CRDKafka
import Dispatch
import Logging
import Synchronization

/// Owns one `rd_kafka_t` handle and its callback context, and destroys both in the right order.
///
/// `@unchecked Sendable`: the only stored state is the handle and immutable references. librdkafka documents its
/// public API as thread-safe on one `rd_kafka_t`, and Sluice never calls `rd_kafka_destroy` while any other
/// reference to this object exists (it runs from `deinit`), so no call can race with destruction.
final class RDKafkaClient: @unchecked Sendable {
    enum Kind {
        case producer, consumer
    }

    let handle: OpaquePointer
    let context: RDKafkaClientContext
    /// For consumers: the consumer queue, which carries messages, rebalances and commit results.
    let consumerQueue: OpaquePointer?
    /// The configured bootstrap servers, for error messages.
    let bootstrapServers: String
    private let topicHandles = Mutex<[String: OpaquePointer]>([:])

    /// Creates a client; fails with librdkafka's message when a property is unknown or invalid.
    init(kind: Kind, properties: [(String, String)], context: RDKafkaClientContext) throws {
        try KafkaLibrary.requireSupportedVersion()
        let conf = try RDKafkaConfig.make(properties)
        context.install(on: conf, deliveryReports: kind == .producer)
        var errorBuffer = [CChar](repeating: 0, count: 512)
        guard
            let handle = rd_kafka_new(
                kind == .producer ? RD_KAFKA_PRODUCER : RD_KAFKA_CONSUMER, conf, &errorBuffer, errorBuffer.count)
        else {
            rd_kafka_conf_destroy(conf)
            let reason = String(decoding: errorBuffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw KafkaError(code: .clientCreation, message: "librdkafka could not create the client: \(reason)")
        }
        self.handle = handle
        self.context = context
        self.bootstrapServers = properties.last { $0.0 == "bootstrap.servers" }?.1 ?? ""
        if kind == .consumer {
            // Route the main queue (errors, logs' events) into the consumer queue: one queue to poll.
            rd_kafka_poll_set_consumer(handle)
            self.consumerQueue = rd_kafka_queue_get_consumer(handle)
        } else {
            self.consumerQueue = nil
        }
    }

    /// A cached topic handle for producing (librdkafka looks a topic name up on every message otherwise).
    func topicHandle(_ name: String) -> OpaquePointer? {
        topicHandles.withLock { handles in
            if let existing = handles[name] { return existing }
            guard let created = rd_kafka_topic_new(handle, name, nil) else { return nil }
            handles[name] = created
            return created
        }
    }

    deinit {
        let teardown = Teardown(
            handle: handle, consumerQueue: consumerQueue, topics: topicHandles.withLock { Array($0.values) },
            context: context)
        // rd_kafka_destroy joins librdkafka's threads and can take a while: never on the cooperative pool.
        DispatchQueue.global().async { teardown.run() }
    }

    /// The pointers to release after the last reference to the client is gone.
    ///
    /// `@unchecked Sendable`: created in `deinit`, when no other reference to these pointers exists any more,
    /// and moved to exactly one Dispatch block that releases them; nothing else ever touches them again.
    private struct Teardown: @unchecked Sendable {
        let handle: OpaquePointer
        let consumerQueue: OpaquePointer?
        let topics: [OpaquePointer]
        let context: RDKafkaClientContext

        func run() {
            for topic in topics { rd_kafka_topic_destroy(topic) }
            if let consumerQueue { rd_kafka_queue_destroy(consumerQueue) }
            rd_kafka_destroy(handle)
            // The callbacks' context must outlive rd_kafka_destroy: librdkafka may log until it returns.
            withExtendedLifetime(context) {}
        }
    }
}
