internal import CRDKafka
public import Logging
import Synchronization

/// Produces messages to Kafka through librdkafka, batching them (``KafkaProducerConfiguration/linger``) and
/// reporting each delivery.
///
/// Three ways to send:
/// - ``send(_:)`` awaits the delivery report: simple, one message at a time per task.
/// - ``send(_:onDelivery:)`` returns as soon as librdkafka accepted the message and calls back on delivery:
///   for pipelines that keep many messages in flight.
/// - ``send(_:route:tag:)`` returns as soon as librdkafka accepted the message and reports it, with `tag`, to a
///   registered ``KafkaDeliveryReceiver`` together with the rest of its delivery batch: the cheapest, for
///   pipelines that produce at full speed (no allocation or reference counting per message).
///
/// All of them await room (they never drop or spin) when librdkafka's local queue is full.
///
/// ```swift
/// let producer = try KafkaProducer(configuration: .init(bootstrapServers: ["127.0.0.1:9092"]))
/// let report = try await producer.send(KafkaProducerMessage(topic: "orders", key: "o-1", value: "{}"))
/// try await producer.close()
/// ```
public final class KafkaProducer: Sendable {
    /// Called once per message with its delivery report or the reason it was not delivered.
    /// - Important: It runs on the producer's poll thread: keep it short and never block in it.
    public typealias DeliveryHandler = @Sendable (Result<KafkaDeliveryReport, KafkaError>) -> Void

    private let client: RDKafkaClient
    private let pollThread = RDKafkaPollThread()
    private let shared: KafkaProducerShared
    /// The delivery handlers of the messages sent with a closure, by ticket.
    private let deliveryHandlers: DeliveryHandlerTable
    /// The registered delivery receivers, by route.
    private let deliveryRoutes = DeliveryRouteTable()
    /// Identifies this producer in its routes (``KafkaDeliveryRoute``).
    private let routeOwnerID = UInt64.random(in: 0...UInt64.max)
    private let logger: Logger
    /// The configuration this producer was created with.
    public let configuration: KafkaProducerConfiguration

    /// Creates a producer and starts its poll thread.
    ///
    /// - Throws: ``KafkaError`` with ``KafkaError/Code/invalidConfiguration`` naming an unknown or invalid
    ///   property, or ``KafkaError/Code/unsupportedLibrary`` when the loaded librdkafka is too old.
    public init(configuration: KafkaProducerConfiguration, logger: Logger = Logger(label: "sluice.kafka.producer")) throws {
        self.configuration = configuration
        var logger = logger
        logger[metadataKey: LogKey.client] = .string(configuration.client.clientID)
        self.logger = logger
        let shared = KafkaProducerShared()
        self.shared = shared
        let deliveryHandlers = DeliveryHandlerTable()
        self.deliveryHandlers = deliveryHandlers
        let errorLogger = logger
        let context = RDKafkaClientContext(
            logger: logger,
            onError: { error in
                if error.isFatal {
                    shared.failFatally(error)
                    errorLogger.critical("producer fatal error: \(error)")
                } else {
                    errorLogger.warning("producer error: \(error)")
                }
            })
        self.client = try RDKafkaClient(
            kind: .producer, properties: configuration.librdkafkaProperties(), context: context,
            servesDeliveryReportEvents: true)
        let client = self.client
        let pollThread = self.pollThread
        let deliveryRoutes = self.deliveryRoutes
        let dispatchLogger = logger
        pollThread.start(name: "sluice-producer-poll") {
            var dispatcher = DeliveryReportDispatcher(closures: deliveryHandlers, routes: deliveryRoutes, logger: dispatchLogger)
            Self.pollLoop(client: client, pollThread: pollThread, shared: shared, dispatcher: &dispatcher)
        }
    }

    deinit {
        pollThread.requestStop()
    }

    /// Serves the main queue's events: delivery reports (a produce response's worth at a time) and errors.
    private static func pollLoop(
        client: RDKafkaClient, pollThread: RDKafkaPollThread, shared: KafkaProducerShared,
        dispatcher: inout DeliveryReportDispatcher
    ) {
        let queue = rd_kafka_queue_get_main(client.handle)
        defer { rd_kafka_queue_destroy(queue) }
        while !pollThread.isStopRequested {
            if serveEvent(queue, timeoutMilliseconds: 100, client: client, dispatcher: &dispatcher) {
                shared.wakeRoomWaiters()
            }
        }
        // Nothing may be left waiting: fail whatever librdkafka still holds, then serve those reports.
        rd_kafka_purge(client.handle, Int32(RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT))
        // Purged messages report within a poll or two; bound the wait in case a request never returns.
        for _ in 0..<100 where rd_kafka_outq_len(client.handle) > 0 {
            _ = serveEvent(queue, timeoutMilliseconds: 50, client: client, dispatcher: &dispatcher)
        }
        shared.wakeRoomWaiters()
    }

    /// Waits up to `timeoutMilliseconds` for one event and serves it; returns whether senders waiting for room
    /// should look again (deliveries freed room, or an error may have made the producer unusable).
    private static func serveEvent(
        _ queue: OpaquePointer?, timeoutMilliseconds: Int32, client: RDKafkaClient,
        dispatcher: inout DeliveryReportDispatcher
    ) -> Bool {
        guard let event = rd_kafka_queue_poll(queue, timeoutMilliseconds) else { return false }
        defer { rd_kafka_event_destroy(event) }
        switch rd_kafka_event_type(event) {
        case RD_KAFKA_EVENT_DR:
            dispatcher.dispatch(event)
            return true
        case RD_KAFKA_EVENT_ERROR:
            client.context.reportErrorEvent(event)
            return true
        case let type:
            // OAUTHBEARER token refreshes are served on librdkafka's background thread (see RDKafkaClient); other
            // event types are not enabled on producers.
            client.context.logger.debug(
                "producer: ignored a librdkafka event of type \(type) (\(rd_kafka_event_name(event).map { String(cString: $0) } ?? "?"))")
            return false
        }
    }

    /// Sends a message and waits for the broker's acknowledgement.
    ///
    /// - Returns: where the message was stored.
    /// - Throws: ``KafkaError``: ``KafkaError/Code/delivery`` when the broker or the message timeout refused it,
    ///   ``KafkaError/Code/produce`` when librdkafka did not accept it, ``KafkaError/Code/closed`` after ``close()``.
    public func send(_ message: KafkaProducerMessage) async throws -> KafkaDeliveryReport {
        let promise = DeliveryPromise()
        try await send(message, onDelivery: promise.complete)
        return try await promise.value()
    }

    /// Hands a message to librdkafka and returns; `onDelivery` is called once with the outcome.
    ///
    /// Awaits room when the local queue is full.
    /// - Throws: ``KafkaError`` if the message cannot be accepted at all (closed producer, unknown partition,
    ///   message too large); `onDelivery` is not called then.
    @inlinable
    public func send(
        _ message: KafkaProducerMessage, onDelivery: @escaping DeliveryHandler
    ) async throws {
        // The common case, room in librdkafka's queue, is synchronous and inlined into the caller, so that it costs
        // no async frame.
        guard let generation = try enqueueUnlessFull(message, onDelivery: onDelivery) else { return }
        try await sendWaitingForRoom(message, onDelivery: onDelivery, after: generation)
    }

    /// Hands a message to librdkafka and returns; its outcome goes, with `tag`, to the receiver registered as
    /// `route` (see ``KafkaDeliveryReceiver``).
    ///
    /// Awaits room when the local queue is full.
    /// - Parameter tag: any value below 2^48, typically an index into the caller's table of messages in flight.
    /// - Important: `route` must still be registered; the report of a message sent with an unregistered route is
    ///   logged and dropped.
    /// - Throws: ``KafkaError`` if the message cannot be accepted at all (closed producer, unknown partition,
    ///   message too large, a route of another producer, a tag of 2^48 or more); nothing is reported then.
    @inlinable
    public func send(_ message: KafkaProducerMessage, route: KafkaDeliveryRoute, tag: UInt64) async throws {
        // As for closures: the common case is synchronous and inlined.
        guard let generation = try enqueueUnlessFull(message, route: route, tag: tag) else { return }
        try await sendWaitingForRoom(message, route: route, tag: tag, after: generation)
    }

    /// Tries to hand a message to librdkafka without waiting.
    ///
    /// - Returns: `false` when librdkafka's local queue is full (nothing was enqueued and `onDelivery` will not
    ///   be called); `true` when the message was accepted.
    /// - Throws: as ``send(_:onDelivery:)``.
    public func trySend(_ message: KafkaProducerMessage, onDelivery: @escaping DeliveryHandler) throws -> Bool {
        try enqueueUnlessFull(message, onDelivery: onDelivery) == nil
    }

    /// Tries to hand a message to librdkafka without waiting.
    ///
    /// - Returns: `false` when librdkafka's local queue is full (nothing was enqueued or will be reported);
    ///   `true` when the message was accepted.
    /// - Throws: as ``send(_:route:tag:)``.
    public func trySend(_ message: KafkaProducerMessage, route: KafkaDeliveryRoute, tag: UInt64) throws -> Bool {
        try enqueueUnlessFull(message, route: route, tag: tag) == nil
    }

    /// Registers a receiver for the reports of messages sent with the returned route.
    ///
    /// Keep it registered until the last of those messages was reported (``close()`` reports every message, purged
    /// ones as failures); reports that find no receiver are logged and dropped.
    /// - Throws: ``KafkaError/Code/produce`` when 65,535 receivers are registered already.
    public func register(_ receiver: some KafkaDeliveryReceiver) throws(KafkaError) -> KafkaDeliveryRoute {
        guard let index = deliveryRoutes.register(receiver) else {
            throw KafkaError(code: .produce, message: "65,535 delivery receivers are registered: unregister those no longer used")
        }
        return KafkaDeliveryRoute(index: index, producerID: routeOwnerID)
    }

    /// Removes a receiver registered with ``register(_:)``.
    ///
    /// Call it only once every message sent with the route was reported: reports that arrive later find no
    /// receiver and are logged and dropped.
    public func unregister(_ route: KafkaDeliveryRoute) {
        guard route.producerID == routeOwnerID else { return }
        _ = deliveryRoutes.unregister(route.index)
    }

    /// How many delivery receivers are registered (for tests that check that stages unregister theirs).
    @_spi(Testing) public var registeredDeliveryReceiverCount: Int { deliveryRoutes.count }

    /// Enqueues `message`; returns `nil` when done, or the room generation read before librdkafka refused it as full.
    @usableFromInline
    func enqueueUnlessFull(
        _ message: borrowing KafkaProducerMessage, onDelivery: @escaping DeliveryHandler
    ) throws(KafkaError) -> UInt64? {
        let generation = shared.roomGeneration.load(ordering: .acquiring)
        try shared.checkUsable(message.topic)
        guard let ticket = deliveryHandlers.claim(onDelivery) else {
            throw KafkaError(code: .produce, message: "more than 4 billion messages in flight")
        }
        let result = enqueue(message, opaque: UInt64(ticket))
        if case .enqueued = result { return nil }
        _ = deliveryHandlers.take(ticket)
        return try result.generationIfFull(generation)
    }

    @usableFromInline
    func enqueueUnlessFull(
        _ message: borrowing KafkaProducerMessage, route: KafkaDeliveryRoute, tag: UInt64
    ) throws(KafkaError) -> UInt64? {
        let generation = shared.roomGeneration.load(ordering: .acquiring)
        try shared.checkUsable(message.topic)
        guard route.producerID == routeOwnerID else {
            throw KafkaError(code: .produce, message: "the delivery route was registered with another producer")
        }
        guard tag <= DeliveryRouteTable.maxTag else {
            throw KafkaError(code: .produce, message: "delivery tag \(tag) is out of range: tags are below 2^48")
        }
        return try enqueue(message, opaque: DeliveryRouteTable.opaque(route: route.index, tag: tag))
            .generationIfFull(generation)
    }

    @usableFromInline
    func sendWaitingForRoom(
        _ message: KafkaProducerMessage, onDelivery: @escaping DeliveryHandler, after generation: UInt64
    ) async throws {
        try await waitForRoom(after: generation) { try self.enqueueUnlessFull(message, onDelivery: onDelivery) }
    }

    @usableFromInline
    func sendWaitingForRoom(
        _ message: KafkaProducerMessage, route: KafkaDeliveryRoute, tag: UInt64, after generation: UInt64
    ) async throws {
        try await waitForRoom(after: generation) { try self.enqueueUnlessFull(message, route: route, tag: tag) }
    }

    /// Retries `attempt` each time deliveries free room, until it enqueues or throws.
    private func waitForRoom(after generation: UInt64, _ attempt: () throws -> UInt64?) async throws {
        var generation = generation
        while true {
            await shared.waitForRoom(after: generation)
            guard let next = try attempt() else { return }
            generation = next
        }
    }

    private enum EnqueueResult {
        case enqueued, queueFull, failed(KafkaError)

        /// `nil` when enqueued, `generation` when the queue was full; throws the failure.
        @inline(__always)
        func generationIfFull(_ generation: UInt64) throws(KafkaError) -> UInt64? {
            switch self {
            case .enqueued: return nil
            case .queueFull: return generation
            case .failed(let error): throw error
            }
        }
    }

    /// Hands `message` to librdkafka with `opaque` (its route and tag) as the message's opaque.
    @inline(__always)
    private func enqueue(_ message: borrowing KafkaProducerMessage, opaque: UInt64) -> EnqueueResult {
        guard let topic = client.topicHandle(message.topic) else {
            return .failed(KafkaError(code: .produce, message: "cannot create a handle for topic '\(message.topic)'"))
        }
        var headers: OpaquePointer?
        if !message.headers.isEmpty {
            headers = rd_kafka_headers_new(message.headers.count)
            for header in message.headers {
                if let value = header.value {
                    value.withUnsafeBytes { bytes in
                        _ = rd_kafka_header_add(headers, header.name, -1, bytes.baseAddress ?? UnsafeRawPointer(bitPattern: 1), bytes.count)
                    }
                } else {
                    _ = rd_kafka_header_add(headers, header.name, -1, nil, 0)
                }
            }
        }
        let raw = withOptionalBytes(message.key) { key, keyLength in
            withOptionalBytes(message.value) { value, valueLength in
                sluice_produce(
                    client.handle, topic, message.partition ?? RD_KAFKA_PARTITION_UA,
                    key, keyLength, message.key == nil ? 0 : 1,
                    value, valueLength, message.value == nil ? 0 : 1,
                    headers, message.timestampMilliseconds ?? 0, UnsafeMutableRawPointer(bitPattern: UInt(opaque)))
            }
        }
        if raw == RD_KAFKA_RESP_ERR_NO_ERROR { return .enqueued }
        if let headers { rd_kafka_headers_destroy(headers) }
        if raw == RD_KAFKA_RESP_ERR__QUEUE_FULL { return .queueFull }
        return .failed(.rdkafka(raw, as: .produce, context: "producing to \(message.topic)"))
    }

    /// The number of messages librdkafka holds that are not yet delivered (queued or in flight).
    public var outstandingCount: Int { Int(rd_kafka_outq_len(client.handle)) }

    /// Waits until every message sent so far is delivered or failed, or `timeout` passes.
    ///
    /// - Throws: ``KafkaError/Code/timedOut`` when messages are still outstanding after `timeout`.
    public func flush(timeout: Duration = .seconds(30)) async throws {
        let client = self.client
        let raw = await RDKafkaBlocking.run { rd_kafka_flush(client.handle, timeout.milliseconds) }
        if raw != RD_KAFKA_RESP_ERR_NO_ERROR {
            throw KafkaError.rdkafka(raw, as: .timedOut, context: "flush: \(outstandingCount) messages still outstanding after \(timeout)")
        }
    }

    /// Flushes (up to `timeout`), then stops the producer. Messages still undelivered after `timeout` fail
    /// with a purge error in their delivery reports. Later sends throw ``KafkaError/Code/closed``.
    public func close(timeout: Duration = .seconds(30)) async throws {
        if shared.markClosed() { return }
        let flushError: (any Error)?
        do { try await flush(timeout: timeout); flushError = nil } catch { flushError = error }
        pollThread.requestStop()
        await pollThread.waitForExit()
        if let flushError { throw flushError }
    }
}

/// What the producer's callers, its poll thread and librdkafka's callbacks share.
private final class KafkaProducerShared: Sendable {
    private struct State {
        var isClosed = false
        var fatalError: KafkaError?
        /// Senders waiting for room in librdkafka's full queue; woken after the poll thread served deliveries.
        var roomWaiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())
    /// Set (under the lock) once the producer is closed or failed fatally: a send checks this atomic, not the lock.
    private let isUnusable = Atomic<Bool>(false)
    /// Bumped (under the lock) whenever deliveries free room, so a sender never sleeps through a wake-up.
    let roomGeneration = Atomic<UInt64>(0)

    /// Throws the fatal error, or ``KafkaError/Code/closed``, if the producer can no longer send.
    @inline(__always)
    func checkUsable(_ topic: String) throws(KafkaError) {
        if isUnusable.load(ordering: .acquiring) { try throwUnusable(topic) }
    }

    private func throwUnusable(_ topic: String) throws(KafkaError) {
        try state.withLock { (state) throws(KafkaError) -> Void in
            if let fatalError = state.fatalError { throw fatalError }
            if state.isClosed { throw KafkaError.closed("send to \(topic)") }
        }
    }

    func failFatally(_ error: KafkaError) {
        state.withLock { state in
            state.fatalError = error
            isUnusable.store(true, ordering: .releasing)
        }
    }

    /// Marks the producer closed; returns whether it already was.
    func markClosed() -> Bool {
        state.withLock { state in
            defer {
                state.isClosed = true
                isUnusable.store(true, ordering: .releasing)
            }
            return state.isClosed
        }
    }

    func wakeRoomWaiters() {
        let waiters = state.withLock { state in
            roomGeneration.add(1, ordering: .releasing)
            defer { state.roomWaiters = [] }
            return state.roomWaiters
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Waits for the next wake-up, unless one came since the caller read `generation` (or the producer closed).
    func waitForRoom(after generation: UInt64) async {
        await withCheckedContinuation { continuation in
            let wakeNow = state.withLock { state in
                if roomGeneration.load(ordering: .relaxed) != generation || state.isClosed { return true }
                state.roomWaiters.append(continuation)
                return false
            }
            if wakeNow { continuation.resume() }
        }
    }
}

/// A one-shot delivery result that one task awaits.
final class DeliveryPromise: Sendable {
    private enum State {
        case pending
        case waiting(CheckedContinuation<KafkaDeliveryReport, any Error>)
        case done(Result<KafkaDeliveryReport, KafkaError>)
    }
    private let state = Mutex(State.pending)

    var complete: KafkaProducer.DeliveryHandler {
        { [self] result in
            let waiter: CheckedContinuation<KafkaDeliveryReport, any Error>? = state.withLock { state in
                if case .waiting(let continuation) = state {
                    state = .done(result)
                    return continuation
                }
                state = .done(result)
                return nil
            }
            waiter?.resume(with: result.mapError { $0 as any Error })
        }
    }

    func value() async throws -> KafkaDeliveryReport {
        try await withCheckedThrowingContinuation { continuation in
            let result: Result<KafkaDeliveryReport, KafkaError>? = state.withLock { state in
                if case .done(let result) = state { return result }
                state = .waiting(continuation)
                return nil
            }
            if let result { continuation.resume(with: result.mapError { $0 as any Error }) }
        }
    }
}

extension KafkaTimestamp {
    init?(rdkafka milliseconds: Int64, type: rd_kafka_timestamp_type_t) {
        switch type {
        case RD_KAFKA_TIMESTAMP_CREATE_TIME: self.init(milliseconds: milliseconds, kind: .createTime)
        case RD_KAFKA_TIMESTAMP_LOG_APPEND_TIME: self.init(milliseconds: milliseconds, kind: .logAppendTime)
        default: return nil
        }
    }
}

/// Calls `body` with a pointer and length for optional bytes (`nil` pointer for `nil` bytes).
@inline(__always)
func withOptionalBytes<R>(_ bytes: [UInt8]?, _ body: (UnsafeRawPointer?, Int) -> R) -> R {
    guard let bytes else { return body(nil, 0) }
    return bytes.withUnsafeBytes { body($0.baseAddress, $0.count) }
}
