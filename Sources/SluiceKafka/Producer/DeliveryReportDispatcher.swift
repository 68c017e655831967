internal import CRDKafka
import Logging

/// Hands the messages of a producer's delivery-report events to whoever waits for them: the closure of each message
/// sent with a handler, and one call per run of consecutive reports for each registered ``KafkaDeliveryReceiver``.
///
/// librdkafka reports deliveries a produce response at a time (`RD_KAFKA_EVENT_DR`, enabled on producers), so a
/// receiver sees up to a whole batch per call. Lives on the producer's poll thread only.
struct DeliveryReportDispatcher: ~Copyable {
    private static let arrayCapacity = 512

    private let closures: DeliveryHandlerTable
    private let routes: DeliveryRouteTable
    private let logger: Logger
    /// Where `rd_kafka_event_message_array` puts an event's messages.
    private let messages: UnsafeMutablePointer<UnsafePointer<rd_kafka_message_t>?>
    /// The reports collected for `batchRoute`, not yet handed over.
    private var batch: [KafkaDelivery] = []
    private var batchRoute = DeliveryRouteTable.closureRoute

    init(closures: DeliveryHandlerTable, routes: DeliveryRouteTable, logger: Logger) {
        self.closures = closures
        self.routes = routes
        self.logger = logger
        messages = .allocate(capacity: Self.arrayCapacity)
        batch.reserveCapacity(Self.arrayCapacity)
    }

    deinit {
        messages.deallocate()
    }

    /// Reports every message of a delivery-report event (which the caller destroys afterwards).
    mutating func dispatch(_ event: OpaquePointer) {
        while true {
            let count = rd_kafka_event_message_array(event, messages, Self.arrayCapacity)
            if count == 0 { break }
            for index in 0..<count {
                guard let message = messages[index] else { continue }
                report(message)
            }
        }
        handOver()
    }

    private mutating func report(_ message: UnsafePointer<rd_kafka_message_t>) {
        // Every message Sluice sends has an opaque: its route and tag, never 0 (tickets start at 1, routes at 1).
        guard let opaque = message.pointee._private else { return }
        let bits = UInt64(UInt(bitPattern: opaque))
        let route = DeliveryRouteTable.route(ofOpaque: bits)
        let tag = DeliveryRouteTable.tag(ofOpaque: bits)
        if route == DeliveryRouteTable.closureRoute {
            if let handler = closures.take(UInt32(truncatingIfNeeded: tag)) { handler(Self.outcome(of: message)) }
            return
        }
        if route != batchRoute {
            handOver()
            batchRoute = route
        }
        batch.append(KafkaDelivery(tag: tag, result: Self.outcome(of: message)))
    }

    /// Gives the collected reports to their receiver, which takes the array over: it is consumed, so the receiver
    /// holds the only reference and can take it apart in place. The next batch gets a new array, sized like this one.
    private mutating func handOver() {
        guard !batch.isEmpty else { return }
        var reports: [KafkaDelivery] = []
        reports.reserveCapacity(batch.count)
        swap(&reports, &batch)
        if let receiver = routes.receiver(batchRoute) {
            receiver.receiveDeliveries(consume reports)
        } else {
            logger.error(
                """
                \(reports.count) delivery reports arrived for an unregistered receiver and were dropped: a receiver \
                must stay registered until the last message sent to it is reported
                """)
        }
    }

    /// A message's delivery report, or why it was not delivered, with advice for the common failures.
    static func outcome(of message: UnsafePointer<rd_kafka_message_t>) -> Result<KafkaDeliveryReport, KafkaError> {
        let topic = RDKafkaTopicName.of(message.pointee.rkt)
        let error = message.pointee.err
        guard error != RD_KAFKA_RESP_ERR_NO_ERROR else {
            var timestampType = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE
            let timestamp = rd_kafka_message_timestamp(message, &timestampType)
            return .success(
                KafkaDeliveryReport(
                    topic: topic, partition: message.pointee.partition, offset: message.pointee.offset,
                    timestamp: KafkaTimestamp(rdkafka: timestamp, type: timestampType)))
        }
        var failure = KafkaError.rdkafka(error, as: .delivery, context: "delivery to \(topic) failed")
        switch KafkaErrorCode(error) {
        case .unknownTopic, .unknownTopicOrPartition:
            failure.message = "delivery to \(topic) failed: topic '\(topic)' does not exist and the broker "
                + "did not create it (auto-creation is off): create the topic first"
        case .messageTimedOut:
            failure.message = "delivery to \(topic) failed: not acknowledged within message.timeout.ms "
                + "(is the broker reachable, and does the topic exist?)"
        default:
            break
        }
        return .failure(failure)
    }
}
