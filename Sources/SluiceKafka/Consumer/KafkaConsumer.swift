internal import CRDKafka
import Dispatch
public import Logging
import Synchronization

/// A consumer-group member that reads messages through librdkafka.
///
/// A dedicated poll thread takes batches from librdkafka and hands them over through a bounded buffer
/// (``KafkaConsumerConfiguration/maxBufferedMessages``): when the reader falls behind, the consumer pauses its
/// partitions in librdkafka (it stays in the group) and resumes them once the reader has caught up, so memory
/// stays bounded by configuration. Rebalances are delivered to `onRebalance` before the partitions change hands.
///
/// Offsets are never committed behind the caller's back: store or commit the ``KafkaConsumerMessage/nextOffset``
/// of messages that are done.
///
/// ```swift
/// let consumer = try KafkaConsumer(configuration: .init(bootstrapServers: servers, groupID: "billing"))
/// try consumer.subscribe(topics: ["orders"])
/// for try await message in consumer.messages {
///     try await handle(message)
///     try await consumer.commit([message.nextOffset])
/// }
/// ```
public final class KafkaConsumer: Sendable {
    /// Receives rebalance events on the consumer's behalf; the consumer waits for it to return.
    /// - Important: Do not call ``close()`` from it (close waits for the handler).
    public typealias RebalanceHandler = @Sendable (KafkaRebalanceEvent) async -> Void

    private let client: RDKafkaClient
    private let shared: Shared
    private let pollThread = RDKafkaPollThread()
    /// The configuration this consumer was created with.
    public let configuration: KafkaConsumerConfiguration

    /// The messages handed over by this consumer. Iterate from one task.
    public var messages: KafkaConsumerMessages { KafkaConsumerMessages(buffer: shared.buffer) }
    /// The same messages as batches. Iterate either ``messages`` or this, from one task.
    public var messageBatches: KafkaConsumerMessageBatches { KafkaConsumerMessageBatches(buffer: shared.buffer) }

    /// Creates a consumer and starts its poll thread. Call ``subscribe(topics:)`` (or ``assign(_:)``) next.
    ///
    /// - Parameters:
    ///   - configuration: the consumer settings.
    ///   - logger: where librdkafka's logs and the consumer's own go.
    ///   - onRebalance: called with every assignment change, on the consumer's behalf, before partitions change
    ///     hands.
    /// - Throws: ``KafkaError`` with ``KafkaError/Code/invalidConfiguration`` naming an unknown or invalid
    ///   property, or ``KafkaError/Code/unsupportedLibrary``.
    public init(
        configuration: KafkaConsumerConfiguration, logger: Logger = Logger(label: "sluice.kafka.consumer"),
        onRebalance: RebalanceHandler? = nil
    ) throws {
        self.configuration = configuration
        var logger = logger
        logger[metadataKey: LogKey.client] = .string(configuration.client.clientID)
        logger[metadataKey: LogKey.groupID] = .string(configuration.groupID)
        let pollThread = self.pollThread
        let signal = RDKafkaPollSignal()
        let buffer = KafkaConsumerMessageBuffer(capacity: configuration.maxBufferedMessages) {
            signal.notify()
        }
        let shared = Shared(
            logger: logger, buffer: buffer, signal: signal, stallPause: configuration.stallPause,
            onRebalance: onRebalance)
        self.shared = shared
        let context = RDKafkaClientContext(
            logger: logger,
            onError: { shared.report($0) },
            onRebalance: { rk, code, list in shared.rebalance(rk: rk, code: code, list: list) },
            onCommit: { code, offsets in shared.asyncCommitted(code: code, offsets: offsets) })
        let client = try RDKafkaClient(kind: .consumer, properties: configuration.librdkafkaProperties(), context: context)
        self.client = client
        if let queue = client.consumerQueue { rd_kafka_queue_cb_event_enable(queue, queueEventCallback, signal.opaque) }
        let batchSize = max(configuration.pollBatchSize, 1)
        let closeTimeout = configuration.closeTimeout
        pollThread.start(name: "sluice-consumer-poll") {
            Self.pollLoop(
                client: client, shared: shared, pollThread: pollThread, batchSize: batchSize, closeTimeout: closeTimeout)
        }
    }

    deinit {
        pollThread.requestStop()
        shared.signal.notify()
    }

    // MARK: - Subscription and assignment

    /// Joins the group for these topics (names, or regular expressions starting with `^`).
    /// - Throws: ``KafkaError/Code/subscription`` when librdkafka rejects the subscription.
    public func subscribe(topics: [String]) throws {
        try checkOpen("subscribe")
        let raw = RDKafkaTopicPartitionList.with(topics.map { KafkaTopicPartition(topic: $0, partition: -1) }) {
            rd_kafka_subscribe(client.handle, $0)
        }
        guard raw == RD_KAFKA_RESP_ERR_NO_ERROR else {
            throw KafkaError.rdkafka(raw, as: .subscription, context: "subscribing to \(topics)")
        }
    }

    /// Joins the group for every topic whose name matches `pattern` (a POSIX regular expression; `^` is added
    /// when missing). Topics created later are picked up at the next metadata refresh.
    public func subscribe(pattern: String) throws {
        try subscribe(topics: [pattern.hasPrefix("^") ? pattern : "^" + pattern])
    }

    /// Reads exactly these partitions from these offsets, outside group management (no rebalances).
    public func assign(_ partitions: [KafkaTopicPartitionOffset]) throws {
        try checkOpen("assign")
        let raw = RDKafkaTopicPartitionList.with(partitions) { rd_kafka_assign(client.handle, $0) }
        guard raw == RD_KAFKA_RESP_ERR_NO_ERROR else {
            throw KafkaError.rdkafka(raw, as: .rebalance, context: "assigning \(partitions)")
        }
        shared.state.withLock { $0.assignment = Set(partitions.map(\.topicPartition)) }
    }

    /// The partitions currently assigned to this consumer.
    public var assignment: Set<KafkaTopicPartition> { shared.state.withLock { $0.assignment } }

    // MARK: - Flow control

    /// Stops fetching from these partitions until ``resume(_:)``; others keep flowing. The consumer stays in
    /// the group. Messages already handed over are not recalled.
    public func pause(_ partitions: [KafkaTopicPartition]) throws {
        try checkOpen("pause")
        shared.state.withLock { $0.userPaused.formUnion(partitions) }
        try RDKafkaTopicPartitionList.with(partitions) { list in
            let raw = rd_kafka_pause_partitions(client.handle, list)
            if raw != RD_KAFKA_RESP_ERR_NO_ERROR {
                throw KafkaError.rdkafka(raw, as: .partitions, context: "pausing \(partitions)")
            }
        }
    }

    /// Resumes fetching from partitions paused with ``pause(_:)`` (unless the consumer itself holds them paused
    /// for backpressure, in which case they resume when the reader catches up).
    public func resume(_ partitions: [KafkaTopicPartition]) throws {
        try checkOpen("resume")
        let toResume = shared.state.withLock { state in
            state.userPaused.subtract(partitions)
            return partitions.filter { !state.backpressurePaused.contains($0) }
        }
        guard !toResume.isEmpty else { return }
        try RDKafkaTopicPartitionList.with(toResume) { list in
            let raw = rd_kafka_resume_partitions(client.handle, list)
            if raw != RD_KAFKA_RESP_ERR_NO_ERROR {
                throw KafkaError.rdkafka(raw, as: .partitions, context: "resuming \(toResume)")
            }
        }
        shared.signal.notify()
    }

    /// What ``read()`` returns.
    public enum Read: Sendable {
        /// The next message.
        case message(KafkaConsumerMessage)
        /// ``wakeUpReader()`` was called.
        case wokenUp
    }

    /// Takes the next message, or returns ``Read/wokenUp`` when ``wakeUpReader()`` is called meanwhile (or was
    /// called since the last read). `nil` when the consumer is closed (or the task is cancelled).
    ///
    /// For stages that wait for messages and for something else at once (for example acknowledgements that
    /// unblock a paused partition). Read from one task at a time, like ``messages``.
    public func read() async throws -> Read? {
        switch try await shared.buffer.read(wakeable: true) {
        case .message(let message)?: return .message(message)
        case .wokenUp?: return .wokenUp
        case nil: return nil
        }
    }

    /// What ``readBatch(maxCount:)`` returns.
    public enum ReadBatch: Sendable {
        /// The next messages (at least one), in hand-over order.
        case messages([KafkaConsumerMessage])
        /// ``wakeUpReader()`` was called.
        case wokenUp
    }

    /// Like ``read()``, but takes up to `maxCount` messages at once: the cheap way for a stage to consume. When the
    /// poll thread's oldest batch fits in `maxCount`, that batch comes alone (handed over whole, not copied), even
    /// if more messages are buffered behind it.
    public func readBatch(maxCount: Int = 1024) async throws -> ReadBatch? {
        switch try await shared.buffer.readBatch(wakeable: true, limit: max(maxCount, 1)) {
        case .messages(let messages)?: return .messages(messages)
        case .wokenUp?: return .wokenUp
        case nil: return nil
        }
    }

    /// Wakes a pending ``read()`` (or makes the next one return at once) with ``Read/wokenUp``.
    public func wakeUpReader() {
        shared.buffer.wakeUpReader()
    }

    /// Partitions paused by ``pause(_:)`` or by the consumer for backpressure.
    public var pausedPartitions: Set<KafkaTopicPartition> {
        shared.state.withLock { $0.userPaused.union($0.backpressurePaused) }
    }

    /// Messages waiting in the hand-over buffer (not yet taken by the reader).
    public var bufferedMessageCount: Int { shared.buffer.count }

    // MARK: - Offsets

    /// Stores positions to be committed by the next ``commitStored()`` (or by auto-commit when enabled).
    /// Each offset is the next one to read: `message.offset + 1`.
    public func storeOffsets(_ offsets: [KafkaTopicPartitionOffset]) throws {
        try checkOpen("storeOffsets")
        try RDKafkaTopicPartitionList.with(offsets) { list in
            let raw = rd_kafka_offsets_store(client.handle, list)
            if raw != RD_KAFKA_RESP_ERR_NO_ERROR {
                throw KafkaError.rdkafka(raw, as: .offsets, context: "storing offsets \(offsets)")
            }
            if let (partition, error) = RDKafkaTopicPartitionList.firstError(list) {
                throw KafkaError.rdkafka(error, as: .offsets, context: "storing the offset of \(partition)")
            }
        }
    }

    /// Commits these positions and waits for the group coordinator's answer. Each offset is the next one to
    /// read. Safe to call from the rebalance handler.
    ///
    /// - Parameter timeout: how long to wait for the answer (default: the client's request timeout). librdkafka's
    ///   own synchronous commit waits for ever when no coordinator can be reached (a broker outage during a drain),
    ///   so the answer is awaited on a queue of the call's own, for at most this long.
    /// - Throws: ``KafkaError/Code/commit`` with the broker's reason (retriable ones marked ``KafkaError/isRetriable``);
    ///   ``KafkaError/Code/timedOut`` (retriable) when no answer came in time: the offsets may or may not be
    ///   committed.
    public func commit(_ offsets: [KafkaTopicPartitionOffset], timeout: Duration? = nil) async throws {
        try checkOpen("commit")
        guard !offsets.isEmpty else { return }
        let client = self.client
        let timeout = timeout ?? configuration.client.requestTimeout
        try await RDKafkaBlocking.run {
            try RDKafkaTopicPartitionList.with(offsets) { list in
                try Self.commitAndWait(client: client, list, timeout: timeout, what: "committing \(offsets)")
            }
        }
    }

    /// Commits the offsets stored with ``storeOffsets(_:)`` and waits for the answer (at most `timeout`, as
    /// ``commit(_:timeout:)``). Nothing stored is not an error.
    public func commitStored(timeout: Duration? = nil) async throws {
        try checkOpen("commit")
        let client = self.client
        let timeout = timeout ?? configuration.client.requestTimeout
        try await RDKafkaBlocking.run {
            try Self.commitAndWait(client: client, nil, timeout: timeout, what: "committing stored offsets")
        }
    }

    /// Sends a commit (of `list`, or of the stored offsets when `nil`) whose answer goes to a queue of its own, and
    /// waits on the calling Dispatch thread for that answer, at most `timeout`.
    private static func commitAndWait(
        client: RDKafkaClient, _ list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?, timeout: Duration,
        what: @autoclosure () -> String
    ) throws {
        guard let queue = rd_kafka_queue_new(client.handle) else {
            throw KafkaError(code: .commit, message: "\(what()): librdkafka could not make a queue for the answer")
        }
        // The queue is reference-counted: an answer that comes after the timeout goes to a queue nobody reads.
        defer { rd_kafka_queue_destroy(queue) }
        let raw = rd_kafka_commit_queue(client.handle, list, queue, nil, nil)
        if raw != RD_KAFKA_RESP_ERR_NO_ERROR {
            throw KafkaError.rdkafka(raw, as: .commit, context: what())
        }
        let deadline = ContinuousClock.now + timeout
        while true {
            let remaining = deadline - ContinuousClock.now
            guard remaining > .zero else {
                throw KafkaError(
                    code: .timedOut,
                    message: "\(what()): no answer from the group coordinator within \(timeout) (is a broker "
                        + "reachable?); the offsets may or may not be committed",
                    librdkafkaCode: .timedOut, isRetriable: true)
            }
            guard let event = rd_kafka_queue_poll(queue, Int32(clamping: max(remaining.milliseconds, 1))) else {
                continue
            }
            defer { rd_kafka_event_destroy(event) }
            guard rd_kafka_event_type(event) == RD_KAFKA_EVENT_OFFSET_COMMIT else { continue }
            let error = rd_kafka_event_error(event)
            if error == RD_KAFKA_RESP_ERR__NO_OFFSET && list == nil { return }  // nothing stored to commit
            if error != RD_KAFKA_RESP_ERR_NO_ERROR {
                throw KafkaError.rdkafka(error, as: .commit, context: what())
            }
            if let partitions = rd_kafka_event_topic_partition_list(event),
                let (partition, error) = RDKafkaTopicPartitionList.firstError(UnsafePointer(partitions))
            {
                throw KafkaError.rdkafka(error, as: .commit, context: "committing the offset of \(partition)")
            }
            return
        }
    }

    /// Sends a commit of these positions and returns at once; `completion` (optional) is called on the poll
    /// thread with the outcome. Failures are logged either way.
    public func commitAsync(
        _ offsets: [KafkaTopicPartitionOffset], completion: (@Sendable (Result<Void, KafkaError>) -> Void)? = nil
    ) throws {
        try checkOpen("commit")
        guard !offsets.isEmpty else {
            completion?(.success(()))
            return
        }
        let box = Unmanaged.passRetained(CommitCompletionBox(offsets: offsets, completion: completion, logger: shared.logger))
        let raw = RDKafkaTopicPartitionList.with(offsets) { list in
            rd_kafka_commit_queue(client.handle, list, client.consumerQueue, commitQueueCallback, box.toOpaque())
        }
        if raw != RD_KAFKA_RESP_ERR_NO_ERROR {
            box.release()
            throw KafkaError.rdkafka(raw, as: .commit, context: "committing \(offsets)")
        }
    }

    /// The group's committed positions for these partitions (``KafkaOffset/invalid`` where none).
    public func committed(
        _ partitions: [KafkaTopicPartition], timeout: Duration? = nil
    ) async throws -> [KafkaTopicPartitionOffset] {
        try checkOpen("committed")
        let client = self.client
        let timeoutMs = (timeout ?? configuration.client.requestTimeout).milliseconds
        return try await RDKafkaBlocking.run {
            try RDKafkaTopicPartitionList.with(partitions) { list in
                let raw = rd_kafka_committed(client.handle, list, timeoutMs)
                if raw != RD_KAFKA_RESP_ERR_NO_ERROR {
                    throw KafkaError.rdkafka(raw, as: .offsets, context: "querying committed offsets of \(partitions)")
                }
                return RDKafkaTopicPartitionList.offsets(list)
            }
        }
    }

    /// The partition's low and high watermarks, asked of the broker.
    public func watermarks(topic: String, partition: Int32, timeout: Duration? = nil) async throws -> KafkaWatermarks {
        try checkOpen("watermarks")
        let client = self.client
        let timeoutMs = (timeout ?? configuration.client.requestTimeout).milliseconds
        return try await RDKafkaBlocking.run {
            var low: Int64 = 0
            var high: Int64 = 0
            let raw = rd_kafka_query_watermark_offsets(client.handle, topic, partition, &low, &high, timeoutMs)
            if raw != RD_KAFKA_RESP_ERR_NO_ERROR {
                throw KafkaError.rdkafka(raw, as: .offsets, context: "querying watermarks of \(topic)[\(partition)]")
            }
            return KafkaWatermarks(low: low, high: high)
        }
    }

    /// Moves an assigned partition's fetch position: the next message handed over is the one at `offset`
    /// (or a logical ``KafkaOffset``). Buffered messages of that partition are dropped.
    public func seek(_ position: KafkaTopicPartitionOffset, timeout: Duration? = nil) async throws {
        try checkOpen("seek")
        let client = self.client
        let timeoutMs = (timeout ?? configuration.client.requestTimeout).milliseconds
        shared.buffer.removeMessages(of: [position.topicPartition])
        try await RDKafkaBlocking.run {
            try RDKafkaTopicPartitionList.with([position]) { list in
                if let error = rd_kafka_seek_partitions(client.handle, list, timeoutMs) {
                    throw KafkaError.consuming(error, as: .seek, context: "seeking \(position)")
                }
                if let (partition, error) = RDKafkaTopicPartitionList.firstError(list) {
                    throw KafkaError.rdkafka(error, as: .seek, context: "seeking \(partition)")
                }
            }
        }
    }

    // MARK: - Closing

    /// Leaves the group cleanly (revoking the assignment through the rebalance handler first), ends ``messages``
    /// and releases the client. Further calls throw ``KafkaError/Code/closed``.
    ///
    /// The consumer counts as closed once it has left the group, not before: the rebalance handler's revoke runs
    /// during the close and commits what was finished (a consumer marked closed first refused that commit).
    public func close() async {
        pollThread.requestStop()
        shared.signal.notify()
        await pollThread.waitForExit()
        shared.state.withLock { $0.isClosed = true }
    }

    private func checkOpen(_ operation: String) throws {
        try shared.state.withLock { state in
            if let fatal = state.fatalError { throw fatal }
            if state.isClosed { throw KafkaError.closed(operation) }
        }
    }

    // MARK: - Poll loop (runs on the dedicated poll thread)

    private static func pollLoop(
        client: RDKafkaClient, shared: Shared, pollThread: RDKafkaPollThread, batchSize: Int, closeTimeout: Duration
    ) {
        guard let consumerQueue = client.consumerQueue else { return }
        let slots = UnsafeMutablePointer<UnsafeMutablePointer<rd_kafka_message_t>?>.allocate(capacity: batchSize)
        defer { slots.deallocate() }
        var topicNames = TopicNames()
        var nextPartition = 0
        // librdkafka's queue event callback fires only when a queue goes from empty to non-empty, so a partially
        // drained partition queue never signals: the idle wait is kept short (10 ms; measured with sluice-bench
        // kafka together with fetch.wait.max.ms 50 ms: consume at 1.17x raw C, where 100 ms waits gave 0.18x).
        let idleWait = 0.01

        /// Takes up to `limit` messages from `queue` without waiting; returns how many it took.
        func drain(_ queue: OpaquePointer, limit: Int) -> Int {
            let received = rd_kafka_consume_batch_queue(queue, 0, slots, min(limit, batchSize))
            guard received > 0 else { return 0 }
            var batch: [KafkaConsumerMessage] = []
            batch.reserveCapacity(received)
            for index in 0..<received {
                guard let pointer = slots[index] else { continue }
                defer { rd_kafka_message_destroy(pointer) }
                if pointer.pointee.err != RD_KAFKA_RESP_ERR_NO_ERROR {
                    shared.messageError(pointer)
                    continue
                }
                batch.append(KafkaConsumerMessage(pointer, topicNames: &topicNames))
            }
            _ = shared.buffer.append(consume batch)
            return received
        }

        while !pollThread.isStopRequested {
            // Events first (rebalances, errors, commit results), served on this thread. Messages only arrive here in
            // the instant between an assignment and the switch to its partition queue.
            var didWork = drain(consumerQueue, limit: batchSize) > 0
            // Then messages, partition by partition in turn, while the hand-over buffer has room. With no room,
            // messages stay in librdkafka's per-partition queues, whose size limits stop its fetching: the bound
            // reaches the broker without pausing anything.
            let queues = shared.fetchableQueues()
            var room = shared.buffer.capacity - shared.buffer.count
            if !queues.isEmpty && room > 0 {
                for step in 0..<queues.count where room > 0 {
                    let taken = drain(queues[(nextPartition + step) % queues.count], limit: room)
                    room -= taken
                    didWork = didWork || taken > 0
                }
                nextPartition = (nextPartition + 1) % queues.count
            }
            shared.applyStallPolicy(client.handle, hasRoom: room > 0)
            if !didWork { shared.signal.wait(timeout: idleWait) }
        }
        leaveGroup(client: client, queue: consumerQueue, shared: shared, slots: slots, batchSize: batchSize, timeout: closeTimeout)
        shared.releasePartitionQueues()
        rd_kafka_queue_cb_event_enable(consumerQueue, nil, nil)
        shared.buffer.finish(shared.state.withLock { $0.fatalError }.map { .failed($0) } ?? .finished)
    }
}

extension KafkaConsumer {
    /// Leaves the group (poll thread): librdkafka revokes the assignment through the rebalance callback, served
    /// here, then leaves. At most `timeout`: librdkafka's own `rd_kafka_consumer_close` waits for a group
    /// coordinator that cannot be reached for ever, so the close is started with `rd_kafka_consumer_close_queue` and
    /// its queue served until librdkafka reports the consumer closed or the time is up. Messages that still arrive
    /// are dropped: their partitions are being given up, and nothing of them was handed over or committed.
    fileprivate static func leaveGroup(
        client: RDKafkaClient, queue: OpaquePointer, shared: Shared,
        slots: UnsafeMutablePointer<UnsafeMutablePointer<rd_kafka_message_t>?>, batchSize: Int, timeout: Duration
    ) {
        // However this ends, the teardown must not try to leave again: that is the unbounded wait avoided here.
        defer { client.skipsConsumerCloseOnDestroy() }
        if let error = rd_kafka_consumer_close_queue(client.handle, queue) {
            defer { rd_kafka_error_destroy(error) }
            shared.logger.warning("closing the consumer: \(String(cString: rd_kafka_error_string(error)))")
            return
        }
        let deadline = ContinuousClock.now + timeout
        var dropped = 0
        while rd_kafka_consumer_closed(client.handle) == 0 {
            guard ContinuousClock.now < deadline else {
                shared.logger.error("""
                    the consumer could not leave its group within \(timeout) (is the group coordinator reachable?): \
                    it stops without leaving; the group reassigns its partitions when its session times out, and what \
                    was not committed is delivered again
                    """)
                return
            }
            let received = rd_kafka_consume_batch_queue(queue, 10, slots, batchSize)
            for index in 0..<max(received, 0) {
                guard let message = slots[index] else { continue }
                if message.pointee.err == RD_KAFKA_RESP_ERR_NO_ERROR { dropped += 1 }
                rd_kafka_message_destroy(message)
            }
        }
        if dropped > 0 { shared.logger.debug("dropped \(dropped) messages that arrived while leaving the group") }
    }
}

extension KafkaConsumer {
    /// The consumer's state shared between the public API, the poll thread and librdkafka's callbacks.
    final class Shared: Sendable {
        struct State {
            var assignment: Set<KafkaTopicPartition> = []
            var userPaused: Set<KafkaTopicPartition> = []
            var backpressurePaused: Set<KafkaTopicPartition> = []
            var partitionQueues: [KafkaTopicPartition: PartitionQueue] = [:]
            var isClosed = false
            var fatalError: KafkaError?
        }

        let state = Mutex(State())
        let logger: Logger
        let buffer: KafkaConsumerMessageBuffer
        let signal: RDKafkaPollSignal
        let stallPause: Duration
        let onRebalance: RebalanceHandler?
        /// The poll thread's view of the reader's progress, for stall detection (poll thread only).
        private let stall = Mutex<(takenAtFull: Int, since: ContinuousClock.Instant?)>((0, nil))

        init(
            logger: Logger, buffer: KafkaConsumerMessageBuffer, signal: RDKafkaPollSignal, stallPause: Duration,
            onRebalance: RebalanceHandler?
        ) {
            self.logger = logger
            self.buffer = buffer
            self.signal = signal
            self.stallPause = stallPause
            self.onRebalance = onRebalance
        }

        /// The partition queues to take messages from now: assigned, and paused neither by the caller nor for a stall.
        func fetchableQueues() -> [OpaquePointer] {
            state.withLock { state in
                state.partitionQueues.compactMap { partition, queue in
                    state.userPaused.contains(partition) || state.backpressurePaused.contains(partition)
                        ? nil : queue.pointer
                }
            }
        }

        /// Gives each newly assigned partition a queue of its own (so its messages wait in librdkafka, bounded by its
        /// pre-fetch limits, until the reader has room), waking the poll thread when messages land in it.
        func openPartitionQueues(_ rk: OpaquePointer, _ partitions: [KafkaTopicPartition]) {
            var opened: [KafkaTopicPartition: PartitionQueue] = [:]
            for partition in partitions {
                guard let queue = rd_kafka_queue_get_partition(rk, partition.topic, partition.partition) else { continue }
                rd_kafka_queue_forward(queue, nil)
                rd_kafka_queue_cb_event_enable(queue, queueEventCallback, signal.opaque)
                opened[partition] = PartitionQueue(pointer: queue)
            }
            let replaced = state.withLock { state in
                opened.compactMap { partition, queue in
                    defer { state.partitionQueues[partition] = queue }
                    return state.partitionQueues[partition]
                }
            }
            for queue in replaced { queue.release() }
            signal.notify()
        }

        /// Releases the queues of partitions given up.
        func closePartitionQueues(_ partitions: [KafkaTopicPartition]) {
            let closed = state.withLock { state in partitions.compactMap { state.partitionQueues.removeValue(forKey: $0) } }
            for queue in closed { queue.release() }
        }

        func releasePartitionQueues() {
            let all = state.withLock { state in
                defer { state.partitionQueues = [:] }
                return Array(state.partitionQueues.values)
            }
            for queue in all { queue.release() }
        }

        /// A reader that has taken nothing for ``stallPause`` while the buffer was full has stalled: pause the
        /// partitions in librdkafka (releasing its pre-fetched messages) until the reader drains the buffer to half.
        /// Short waits never pause: resuming a partition costs librdkafka up to a second before it fetches again.
        func applyStallPolicy(_ rk: OpaquePointer, hasRoom: Bool) {
            let now = ContinuousClock.now
            let taken = buffer.takenCount
            if !hasRoom {
                let shouldPause = stall.withLock { stall -> Bool in
                    if stall.since == nil || stall.takenAtFull != taken {
                        stall = (taken, now)
                        return false
                    }
                    return now - stall.since! >= stallPause
                }
                if shouldPause && !buffer.isBackpressurePaused { pauseForBackpressure(rk) }
            } else {
                stall.withLock { $0 = (taken, nil) }
                if buffer.isBackpressurePaused && buffer.count <= buffer.resumeThreshold { resumeAfterStall(rk) }
            }
        }

        func report(_ error: KafkaError) {
            if error.isFatal {
                state.withLock { $0.fatalError = error }
                logger.critical("consumer fatal error: \(error)")
                buffer.finish(.failed(error))
            } else {
                logger.warning("consumer error: \(error)")
            }
        }

        func messageError(_ message: UnsafeMutablePointer<rd_kafka_message_t>) {
            let raw = message.pointee.err
            if raw == RD_KAFKA_RESP_ERR__PARTITION_EOF { return }
            let topic = message.pointee.rkt.map { String(cString: rd_kafka_topic_name($0)) } ?? "?"
            let text = rd_kafka_message_errstr(message).map { String(cString: $0) } ?? ""
            report(.rdkafka(raw, as: .consume, context: "consuming \(topic)[\(message.pointee.partition)]: \(text)"))
        }

        /// Pauses every fetching partition because the reader stalled (poll thread).
        func pauseForBackpressure(_ rk: OpaquePointer) {
            let toPause = state.withLock { state -> [KafkaTopicPartition] in
                let fetching = state.assignment.subtracting(state.userPaused).subtracting(state.backpressurePaused)
                state.backpressurePaused.formUnion(fetching)
                return Array(fetching)
            }
            if !toPause.isEmpty {
                RDKafkaTopicPartitionList.with(toPause) { _ = rd_kafka_pause_partitions(rk, $0) }
                logger.debug("reader stalled with a full hand-over buffer: paused \(toPause.count) partitions")
            }
            buffer.setBackpressurePaused(true)
        }

        /// Resumes partitions paused for a stall once the reader drained the buffer (poll thread).
        func resumeAfterStall(_ rk: OpaquePointer) {
            let toResume = state.withLock { state -> [KafkaTopicPartition] in
                defer { state.backpressurePaused = [] }
                return Array(state.backpressurePaused.subtracting(state.userPaused))
            }
            if !toResume.isEmpty {
                RDKafkaTopicPartitionList.with(toResume) { _ = rd_kafka_resume_partitions(rk, $0) }
                logger.debug("hand-over buffer drained: resumed \(toResume.count) partitions")
            }
            buffer.setBackpressurePaused(false)
        }

        /// librdkafka's rebalance callback (poll thread): apply the change and tell the handler, in the order
        /// that keeps "before the partitions change hands" true.
        func rebalance(rk: OpaquePointer, code: rd_kafka_resp_err_t, list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?) {
            let partitions = RDKafkaTopicPartitionList.partitions(list)
            let isCooperative = sluice_is_cooperative(rk) != 0
            switch code {
            case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
                if isCooperative {
                    if let error = rd_kafka_incremental_assign(rk, list) {
                        report(.consuming(error, as: .rebalance, context: "incremental assign of \(partitions)"))
                    }
                } else {
                    let raw = rd_kafka_assign(rk, list)
                    if raw != RD_KAFKA_RESP_ERR_NO_ERROR {
                        report(.rdkafka(raw, as: .rebalance, context: "assign of \(partitions)"))
                    }
                }
                let pauseNew = state.withLock { state -> Bool in
                    state.assignment.formUnion(partitions)
                    if !state.backpressurePaused.isEmpty || buffer.isBackpressurePaused {
                        state.backpressurePaused.formUnion(partitions)
                        return true
                    }
                    return false
                }
                if pauseNew, let list { _ = rd_kafka_pause_partitions(rk, list) }
                openPartitionQueues(rk, partitions)
                logger.info("assigned \(partitions.count) partitions", metadata: [LogKey.partitions: "\(partitions)"])
                deliver(.assigned(partitions))
            case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
                let isLost = rd_kafka_assignment_lost(rk) != 0
                buffer.removeMessages(of: Set(partitions))
                logger.info(
                    "\(isLost ? "lost" : "revoking") \(partitions.count) partitions",
                    metadata: [LogKey.partitions: "\(partitions)"])
                deliver(isLost ? .lost(partitions) : .revoked(partitions))
                if isCooperative {
                    if let error = rd_kafka_incremental_unassign(rk, list) {
                        report(.consuming(error, as: .rebalance, context: "incremental unassign of \(partitions)"))
                    }
                } else {
                    _ = rd_kafka_assign(rk, nil)
                }
                closePartitionQueues(isCooperative ? partitions : Array(state.withLock { $0.partitionQueues.keys }))
                state.withLock { state in
                    if isCooperative {
                        state.assignment.subtract(partitions)
                    } else {
                        state.assignment = []
                    }
                    state.userPaused.subtract(partitions)
                    state.backpressurePaused.subtract(partitions)
                }
            default:
                report(.rdkafka(code, as: .rebalance, context: "rebalance"))
                _ = rd_kafka_assign(rk, nil)
                releasePartitionQueues()
                state.withLock { $0.assignment = [] }
            }
        }

        /// Runs the rebalance handler and blocks the poll thread (never a cooperative thread) until it returns.
        private func deliver(_ event: KafkaRebalanceEvent) {
            guard let onRebalance else { return }
            let done = DispatchSemaphore(value: 0)
            Task {
                await onRebalance(event)
                done.signal()
            }
            done.wait()
        }

        func asyncCommitted(code: rd_kafka_resp_err_t, offsets: [KafkaTopicPartitionOffset]) {
            if code != RD_KAFKA_RESP_ERR_NO_ERROR && code != RD_KAFKA_RESP_ERR__NO_OFFSET {
                logger.warning("asynchronous commit failed: \(KafkaErrorCode(code))")
            }
        }
    }

    /// A partition's own librdkafka queue.
    ///
    /// `@unchecked Sendable`: the pointer is only used by the poll thread (to read) and released once, by the poll
    /// thread, after its event callback was disabled; librdkafka queues are thread-safe.
    struct PartitionQueue: @unchecked Sendable {
        let pointer: OpaquePointer

        func release() {
            rd_kafka_queue_cb_event_enable(pointer, nil, nil)
            rd_kafka_queue_destroy(pointer)
        }
    }
}

/// Context of one ``KafkaConsumer/commitAsync(_:completion:)`` call: retained into librdkafka's opaque,
/// released in ``commitQueueCallback``.
final class CommitCompletionBox {
    let offsets: [KafkaTopicPartitionOffset]
    let completion: (@Sendable (Result<Void, KafkaError>) -> Void)?
    let logger: Logger

    init(offsets: [KafkaTopicPartitionOffset], completion: (@Sendable (Result<Void, KafkaError>) -> Void)?, logger: Logger) {
        self.offsets = offsets
        self.completion = completion
        self.logger = logger
    }
}

private func commitQueueCallback(
    _ rk: OpaquePointer?, _ code: rd_kafka_resp_err_t, _ list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?,
    _ opaque: UnsafeMutableRawPointer?
) {
    guard let opaque else { return }
    let box = Unmanaged<CommitCompletionBox>.fromOpaque(opaque).takeRetainedValue()
    var failure: KafkaError?
    if code != RD_KAFKA_RESP_ERR_NO_ERROR {
        failure = .rdkafka(code, as: .commit, context: "committing \(box.offsets)")
    } else if let list, let (partition, error) = RDKafkaTopicPartitionList.firstError(list) {
        failure = .rdkafka(error, as: .commit, context: "committing the offset of \(partition)")
    }
    if let failure { box.logger.warning("asynchronous commit failed: \(failure)") }
    box.completion?(failure.map { .failure($0) } ?? .success(()))
}

/// The poll thread's topic names by librdkafka topic handle, made once per topic; the last one is at hand without
/// hashing (a batch's messages mostly share a topic).
struct TopicNames {
    private var last: (handle: OpaquePointer, name: String)?
    private var names: [OpaquePointer: String] = [:]

    mutating func name(of handle: OpaquePointer) -> String {
        if let last, last.handle == handle { return last.name }
        let name: String
        if let known = names[handle] {
            name = known
        } else {
            name = String(cString: rd_kafka_topic_name(handle))
            names[handle] = name
        }
        last = (handle, name)
        return name
    }
}

extension KafkaConsumerMessage {
    /// Copies a librdkafka message (which the caller destroys right after).
    init(_ pointer: UnsafeMutablePointer<rd_kafka_message_t>, topicNames: inout TopicNames) {
        let message = pointer.pointee
        let topic = message.rkt.map { topicNames.name(of: $0) } ?? ""
        // `Array(UnsafeRawBufferPointer)` compiles to one allocation and one `memcpy`, the array type's metadata cached
        // at the call site. (`Array(unsafeUninitializedCapacity:)` called the standard library's unspecialized
        // allocator, which looked the metadata up in a locked cache per array: 5% of the bridge's client CPU.)
        let key = message.key.map { Array(UnsafeRawBufferPointer(start: $0, count: message.key_len)) }
        let value = message.payload.map { Array(UnsafeRawBufferPointer(start: $0, count: message.len)) }
        var headers: [KafkaHeader] = []
        var rawHeaders: OpaquePointer?
        if rd_kafka_message_headers(pointer, &rawHeaders) == RD_KAFKA_RESP_ERR_NO_ERROR, let rawHeaders {
            var index = 0
            var name: UnsafePointer<CChar>?
            var valuePointer: UnsafeRawPointer?
            var size = 0
            while rd_kafka_header_get_all(rawHeaders, index, &name, &valuePointer, &size) == RD_KAFKA_RESP_ERR_NO_ERROR {
                headers.append(
                    KafkaHeader(
                        name: name.map { String(cString: $0) } ?? "",
                        value: valuePointer.map { Array(UnsafeRawBufferPointer(start: $0, count: size)) }))
                index += 1
            }
        }
        var timestampType = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE
        let timestamp = rd_kafka_message_timestamp(pointer, &timestampType)
        self.init(
            topic: topic, partition: message.partition, offset: message.offset, headers: headers, key: key,
            value: value, timestamp: KafkaTimestamp(rdkafka: timestamp, type: timestampType))
    }
}
