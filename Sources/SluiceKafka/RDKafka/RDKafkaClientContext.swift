internal import CRDKafka
import Logging

/// What librdkafka's C callbacks need from Swift, reached through the client's opaque pointer.
///
/// Every field is immutable and `Sendable`; callbacks run on librdkafka's threads (logs) or on the client's
/// poll thread (errors, rebalances, commits). A producer's deliveries come as events that its poll loop serves.
final class RDKafkaClientContext: Sendable {
    let logger: Logger
    /// Called for every error librdkafka reports through its error callback (on the poll thread).
    let onError: @Sendable (KafkaError) -> Void
    /// Called for consumer-group rebalances (on the poll thread, which waits for it to return).
    let onRebalance: (@Sendable (OpaquePointer, rd_kafka_resp_err_t, UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?) -> Void)?
    /// Called with the result of asynchronous commits (on the poll thread).
    let onCommit: (@Sendable (rd_kafka_resp_err_t, [KafkaTopicPartitionOffset]) -> Void)?

    init(
        logger: Logger,
        onError: @escaping @Sendable (KafkaError) -> Void,
        onRebalance: (@Sendable (OpaquePointer, rd_kafka_resp_err_t, UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?) -> Void)? = nil,
        onCommit: (@Sendable (rd_kafka_resp_err_t, [KafkaTopicPartitionOffset]) -> Void)? = nil
    ) {
        self.logger = logger
        self.onError = onError
        self.onRebalance = onRebalance
        self.onCommit = onCommit
    }

    static func from(_ rk: OpaquePointer?) -> RDKafkaClientContext? {
        guard let rk, let opaque = rd_kafka_opaque(rk) else { return nil }
        return Unmanaged<RDKafkaClientContext>.fromOpaque(opaque).takeUnretainedValue()
    }
}

// MARK: - C callbacks (exact C signatures; the context is unretained: the client keeps it alive until after
// rd_kafka_destroy returns, and librdkafka calls no callback after that).

private func logCallback(_ rk: OpaquePointer?, _ level: Int32, _ facility: UnsafePointer<CChar>?, _ text: UnsafePointer<CChar>?) {
    guard let context = RDKafkaClientContext.from(rk) else { return }
    // syslog levels: 0 emerg ... 3 err, 4 warning, 5 notice, 6 info, 7 debug
    let swiftLevel: Logger.Level
    switch level {
    case ...3: swiftLevel = .error
    case 4: swiftLevel = .warning
    case 5: swiftLevel = .notice
    case 6: swiftLevel = .info
    default: swiftLevel = .debug
    }
    let facilityName = facility.map { String(cString: $0) } ?? ""
    context.logger.log(
        level: swiftLevel, "\(text.map { String(cString: $0) } ?? "")",
        metadata: [LogKey.librdkafkaFacility: .string(facilityName)])
}

private func errorCallback(_ rk: OpaquePointer?, _ code: Int32, _ reason: UnsafePointer<CChar>?, _ opaque: UnsafeMutableRawPointer?) {
    guard let rk, let context = RDKafkaClientContext.from(rk) else { return }
    var raw = rd_kafka_resp_err_t(rawValue: code)
    var message = reason.map { String(cString: $0) } ?? ""
    var isFatal = false
    if raw == RD_KAFKA_RESP_ERR__FATAL {
        var buffer = [CChar](repeating: 0, count: 512)
        raw = rd_kafka_fatal_error(rk, &buffer, buffer.count)
        message = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        isFatal = true
    }
    context.onError(RDKafkaClientContext.clientError(raw, message: message, isFatal: isFatal))
}

extension RDKafkaClientContext {
    /// An error librdkafka reported about the client (through the error callback or an error event).
    static func clientError(_ raw: rd_kafka_resp_err_t, message: String, isFatal: Bool) -> KafkaError {
        var error = KafkaError.rdkafka(raw, as: isFatal ? .fatal : .connection, context: message)
        error.message = message
        error.isFatal = isFatal
        if isFatal { error.code = .fatal }
        return error
    }

    /// Reports an error event (`RD_KAFKA_EVENT_ERROR`, which librdkafka has already resolved when fatal).
    func reportErrorEvent(_ event: OpaquePointer) {
        let message = rd_kafka_event_error_string(event).map { String(cString: $0) } ?? ""
        onError(Self.clientError(rd_kafka_event_error(event), message: message, isFatal: rd_kafka_event_error_is_fatal(event) != 0))
    }
}

private func rebalanceCallback(
    _ rk: OpaquePointer?, _ code: rd_kafka_resp_err_t, _ partitions: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?,
    _ opaque: UnsafeMutableRawPointer?
) {
    guard let rk, let context = RDKafkaClientContext.from(rk), let onRebalance = context.onRebalance else { return }
    onRebalance(rk, code, partitions)
}

private func offsetCommitCallback(
    _ rk: OpaquePointer?, _ code: rd_kafka_resp_err_t, _ offsets: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?,
    _ opaque: UnsafeMutableRawPointer?
) {
    guard let context = RDKafkaClientContext.from(rk), let onCommit = context.onCommit else { return }
    onCommit(code, RDKafkaTopicPartitionList.offsets(offsets))
}

extension RDKafkaClientContext {
    /// Installs the callbacks and this context as the configuration's opaque.
    /// The caller must keep `self` alive until `rd_kafka_destroy` of the client made from `conf` has returned.
    /// With `deliveryReportEvents`, deliveries and errors come as events on the main queue
    /// (`RD_KAFKA_EVENT_DR | RD_KAFKA_EVENT_ERROR`), for a producer's poll loop to serve in batches.
    func install(on conf: OpaquePointer, deliveryReportEvents: Bool) {
        rd_kafka_conf_set_opaque(conf, Unmanaged.passUnretained(self).toOpaque())
        rd_kafka_conf_set_log_cb(conf, logCallback)
        rd_kafka_conf_set_error_cb(conf, errorCallback)
        if onRebalance != nil { rd_kafka_conf_set_rebalance_cb(conf, rebalanceCallback) }
        if onCommit != nil { rd_kafka_conf_set_offset_commit_cb(conf, offsetCommitCallback) }
        if deliveryReportEvents { rd_kafka_conf_set_events(conf, RD_KAFKA_EVENT_DR | RD_KAFKA_EVENT_ERROR) }
    }
}
