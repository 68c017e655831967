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
    /// Producer topic handles by name; kept until teardown, so `lastTopic` may point at one without retaining it.
    private let topics = Mutex<[String: RDKafkaTopic]>([:])
    /// The topic handle returned last (an unretained `RDKafkaTopic` that `topics` keeps alive), or 0: a producer
    /// sending to one topic finds its handle with a string comparison, without hashing or locking.
    private let lastTopic = Atomic<UInt>(0)
    /// Set once a consumer's poll thread has left its group (or given up trying): the teardown then destroys the
    /// handle without librdkafka's own consumer close, which would wait again, without a bound.
    private let skipsConsumerClose = Atomic<Bool>(false)

    /// Creates a client; fails with librdkafka's message when a property is unknown or invalid.
    /// - Parameter servesDeliveryReportEvents: a producer whose poll loop serves delivery reports and errors as
    ///   events from the main queue (``KafkaProducer``); other clients get callbacks from `rd_kafka_poll`.
    init(
        kind: Kind, properties: [(String, String)], context: RDKafkaClientContext,
        servesDeliveryReportEvents: Bool = false
    ) throws {
        try KafkaLibrary.requireSupportedVersion()
        let conf = try RDKafkaConfig.make(properties)
        context.install(on: conf, deliveryReportEvents: servesDeliveryReportEvents)
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
        if servesDeliveryReportEvents {
            // A poll loop that serves events does not run librdkafka's OAUTHBEARER token refresh callback (the
            // refresh would come back as an event): let librdkafka run it on its background thread. Fails, harmlessly,
            // when SASL OAUTHBEARER is not configured.
            if let error = rd_kafka_sasl_background_callbacks_enable(handle) { rd_kafka_error_destroy(error) }
        }
        if kind == .consumer {
            // Route the main queue (errors, logs' events) into the consumer queue: one queue to poll.
            rd_kafka_poll_set_consumer(handle)
            self.consumerQueue = rd_kafka_queue_get_consumer(handle)
        } else {
            self.consumerQueue = nil
        }
    }

    /// A cached topic handle for producing (librdkafka looks a topic name up on every message otherwise), whose
    /// librdkafka opaque is the topic's name (``RDKafkaTopicName``) for delivery reports.
    @inline(__always)
    func topicHandle(_ name: String) -> OpaquePointer? {
        let bits = lastTopic.load(ordering: .acquiring)
        if bits != 0 {
            // Unretained: `topics` owns every RDKafkaTopic until deinit, and deinit cannot run during this call.
            let handle = Unmanaged<RDKafkaTopic>.fromOpaque(UnsafeRawPointer(bitPattern: bits)!)
                ._withUnsafeGuaranteedRef { $0.name == name ? $0.handle : nil }
            if let handle { return handle }
        }
        return cachedTopicHandle(name)
    }

    private func cachedTopicHandle(_ name: String) -> OpaquePointer? {
        topics.withLock { topics in
            let topic: RDKafkaTopic
            if let existing = topics[name] {
                topic = existing
            } else {
                // A copy with storage of its own: delivery reports retain and release it on the poll thread, and
                // sharing the caller's storage would bounce its reference count between threads per message.
                let label = RDKafkaTopicName(String(decoding: Array(name.utf8), as: UTF8.self))
                // The default topic configuration (acks, partitioner, timeouts set on the client) plus the opaque;
                // librdkafka takes ownership of the configuration, on failure too.
                guard let conf = rd_kafka_default_topic_conf_dup(handle) else { return nil }
                rd_kafka_topic_conf_set_opaque(conf, Unmanaged.passUnretained(label).toOpaque())
                guard let created = rd_kafka_topic_new(handle, name, conf) else { return nil }
                topic = RDKafkaTopic(handle: created, name: name, label: label)
                topics[name] = topic
            }
            lastTopic.store(UInt(bitPattern: Unmanaged.passUnretained(topic).toOpaque()), ordering: .releasing)
            return topic.handle
        }
    }

    /// Makes the teardown skip librdkafka's consumer close (the poll thread has done it, or given up on it).
    func skipsConsumerCloseOnDestroy() { skipsConsumerClose.store(true, ordering: .releasing) }

    deinit {
        let teardown = Teardown(
            handle: handle, consumerQueue: consumerQueue, topics: topics.withLock { Array($0.values) },
            context: context, skipsConsumerClose: skipsConsumerClose.load(ordering: .acquiring))
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
        let topics: [RDKafkaTopic]
        let context: RDKafkaClientContext
        let skipsConsumerClose: Bool

        func run() {
            for topic in topics { rd_kafka_topic_destroy(topic.handle) }
            if let consumerQueue { rd_kafka_queue_destroy(consumerQueue) }
            rd_kafka_destroy_flags(handle, skipsConsumerClose ? RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE : 0)
            // The callbacks' context and the topics' names (their opaques) must outlive rd_kafka_destroy: librdkafka
            // may log until it returns.
            withExtendedLifetime((context, topics)) {}
        }
    }
}

/// A producer's topic handle, its name as first asked for (usually the caller's own string, so comparing is cheap)
/// and the name its librdkafka opaque points to.
///
/// `@unchecked Sendable`: every field is immutable; librdkafka's topic handles may be used from any thread, and the
/// handle is destroyed only in the client's teardown, when no other reference to the client exists.
final class RDKafkaTopic: @unchecked Sendable {
    let handle: OpaquePointer
    let name: String
    let label: RDKafkaTopicName

    init(handle: OpaquePointer, name: String, label: RDKafkaTopicName) {
        self.handle = handle
        self.name = name
        self.label = label
    }
}

/// A topic name that a librdkafka topic handle carries as its opaque (unretained; the client keeps it alive until
/// after `rd_kafka_destroy`), so a delivery report gets its topic as a Swift `String` without a lookup or a copy.
final class RDKafkaTopicName: Sendable {
    let value: String

    init(_ value: String) { self.value = value }

    /// The name of a topic handle: from its opaque when Sluice created the handle, else from librdkafka.
    static func of(_ rkt: OpaquePointer?) -> String {
        guard let rkt else { return "" }
        if let opaque = rd_kafka_topic_opaque(rkt) {
            return Unmanaged<RDKafkaTopicName>.fromOpaque(opaque)._withUnsafeGuaranteedRef { $0.value }
        }
        return rd_kafka_topic_name(rkt).map { String(cString: $0) } ?? ""
    }
}
