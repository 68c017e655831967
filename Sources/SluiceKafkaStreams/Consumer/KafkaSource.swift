import DequeModule
public import Logging
public import SluiceKafka
public import SluiceStreams
import Synchronization

/// Kafka consumer sources (modelled on Pekko Connectors Kafka's `Consumer`). Each run creates its own consumer;
/// the materialized ``KafkaConsumerControl`` stops, drains and shuts it down.
public enum KafkaSource {
    /// How many messages a source hands downstream at once (the plain source also takes no more than this from
    /// its consumer at once). Small on purpose: messages a source holds are invisible to the consumer's buffer,
    /// whose fill level decides when fetching stops and when a stalled reader's partitions are paused. The
    /// committable source takes a whole poll batch (the hand-over's unit, moved rather than copied) and admits it
    /// in chunks of this size; it holds at most that one batch.
    static let sourceBatch = 64

    /// Messages as they come, with nothing to commit (offsets are neither stored nor committed by the source).
    public static func plain(
        _ settings: KafkaSourceSettings, logger: Logger = Logger(label: "sluice.kafka.source")
    ) -> Source<KafkaConsumerMessage, KafkaConsumerControl> {
        Source {
            let counters = SourceCounters()
            let consumer = try KafkaConsumer(configuration: settings.consumer, logger: logger)
            try settings.subscription.apply(to: consumer)
            let control = KafkaConsumerControl(consumer: consumer, coordinator: nil, counters: counters) {}
            // Each batch read from the consumer goes downstream as one chunk.
            let elements = StreamElements<KafkaConsumerMessage>.makeChunked {
                {
                    while !control.isStopped {
                        switch try await consumer.readBatch(maxCount: Self.sourceBatch) {
                        case .messages(let batch)? where !batch.isEmpty:
                            counters.emit(batch.count)
                            return batch
                        case .messages?, .wokenUp?: continue
                        case nil: return nil
                        }
                    }
                    return nil
                }
            }
            return (elements, control)
        }
    }

    /// Messages with a ``CommittableOffset`` each: pass the offsets to a committer (``KafkaCommitter``) once the
    /// messages are done. A partition's committed offset never passes its lowest message not acknowledged.
    ///
    /// On revoke, the source stops handing out the partition's messages, waits up to
    /// ``KafkaSourceSettings/revokeWait`` for its in-flight ones to be acknowledged, commits, and only then lets
    /// the partition go: a clean rebalance causes no duplicates.
    public static func committable(
        _ settings: KafkaSourceSettings, logger: Logger = Logger(label: "sluice.kafka.source")
    ) -> Source<CommittableMessage, KafkaConsumerControl> {
        Source {
            let state = CommittableSourceState(logger: logger)
            let coordinator = KafkaCommitCoordinator(
                maxInFlightPerPartition: settings.maxInFlightPerPartition, logger: logger
            ) { partition in state.unblocked(partition) }
            let consumer = try KafkaConsumer(configuration: settings.consumer, logger: logger) { event in
                await coordinator.handle(event, settings: settings) { state.forget($0) }
            }
            coordinator.attach(consumer)
            state.attach(consumer)
            try settings.subscription.apply(to: consumer)
            let counters = SourceCounters()
            let control = KafkaConsumerControl(consumer: consumer, coordinator: coordinator, counters: counters) {
                state.detach()
            }
            // Messages go downstream in chunks: whatever is admitted at once (held messages whose partition may go
            // on again, then the batch read from the consumer), without waiting to fill a chunk.
            let elements = StreamElements<CommittableMessage>.makeChunked {
                // The ledger of the last message's partition: consecutive messages of a batch mostly share a
                // partition, and looking the ledger up costs two locks and a hash of the topic name.
                var lastLedger: PartitionLedger?
                return {
                    var chunk: [CommittableMessage] = []
                    while !control.isStopped {
                        while chunk.count < Self.sourceBatch, let ready = state.nextHeld(coordinator: coordinator) {
                            chunk.append(ready)
                        }
                        admitting: while chunk.count < Self.sourceBatch {
                            switch state.admitNext(
                                into: &chunk, limit: Self.sourceBatch - chunk.count, coordinator: coordinator,
                                cached: &lastLedger)
                            {
                            case .empty: break admitting
                            case .held: counters.setHeld(state.heldCount)
                            case .admitted, .dropped: continue
                            }
                        }
                        if !chunk.isEmpty {
                            counters.emit(chunk.count)
                            return chunk
                        }
                        let readSince = state.forgetCount
                        switch try await consumer.readBatch(maxCount: settings.consumer.pollBatchSize) {
                        case .messages(let next)?:
                            state.setUnadmitted(consume next, readSince: readSince, coordinator: coordinator)
                        case .wokenUp?:
                            continue
                        case nil:
                            return nil
                        }
                    }
                    return nil
                }
            }
            return (elements, control)
        }
    }
}

/// The committable source's own state: messages held back for partitions at their in-flight limit.
final class CommittableSourceState: Sendable {
    private struct State {
        /// The rest of the last batch taken from the consumer (at most one poll's worth), not yet admitted, last
        /// message first: each is moved out with `popLast`, never copied (a copy retains each of a message's
        /// buffers). Here rather than in the source's loop so that ``forget(_:)`` drops a revoked partition's
        /// messages from it under the same lock as their admission.
        var unadmitted: [KafkaConsumerMessage] = []
        /// Messages taken from the consumer for partitions at their in-flight limit, in offset order.
        var held: [KafkaTopicPartition: Deque<KafkaConsumerMessage>] = [:]
        /// Held partitions whose in-flight count came down: their held messages may go out again.
        var ready: Set<KafkaTopicPartition> = []
        var heldCount = 0
        /// How many times partitions were forgotten, and the count at which each partition last was.
        var forgetCount: UInt64 = 0
        var forgottenAt: [KafkaTopicPartition: UInt64] = [:]
    }
    private let state = Mutex(State())
    private let consumerBox = ConsumerBox()
    private let logger: Logger

    init(logger: Logger) { self.logger = logger }

    func attach(_ consumer: KafkaConsumer) { consumerBox.set(consumer) }
    func detach() { consumerBox.clear() }

    var heldCount: Int { state.withLock { $0.heldCount } }

    /// ``forget(_:)``'s count so far: read it before reading a batch from the consumer, for
    /// ``setUnadmitted(_:readSince:coordinator:)``.
    var forgetCount: UInt64 { state.withLock { $0.forgetCount } }

    /// Makes a batch read from the consumer the next messages to admit (the previous ones were all admitted).
    ///
    /// A partition forgotten while the batch was being read may have messages in it that the consumer handed over
    /// just before the partition was revoked: unless the partition is owned again (it has an active ledger: it was
    /// assigned anew, and its messages are new), they are dropped. Messages left here when a partition is revoked
    /// later are dropped by ``forget(_:)``. Either way a revoked partition's message is never admitted against a
    /// ledger of a later assignment.
    ///
    /// The batch is taken, not borrowed: a borrowed batch would still be shared with the caller, and reversing it
    /// would copy every message (retaining each of its buffers) instead of moving them.
    func setUnadmitted(
        _ batch: consuming [KafkaConsumerMessage], readSince: UInt64, coordinator: KafkaCommitCoordinator
    ) {
        var batch = batch
        state.withLock { state in
            precondition(state.unadmitted.isEmpty, "a batch is read only once the previous one is admitted")
            if state.forgetCount != readSince {
                let stale = Set(
                    state.forgottenAt.compactMap { partition, at in
                        at > readSince && !coordinator.isActivelyOwned(partition) ? partition : nil
                    })
                if !stale.isEmpty { batch.removeAll { stale.contains($0.topicPartition) } }
            }
            batch.reverseByMoving()
            state.unadmitted = batch
        }
    }

    /// What ``admitNext(into:limit:coordinator:cached:)`` did.
    enum AdmitStep: Equatable {
        /// Nothing is left to admit.
        case empty
        /// This many messages went into the chunk.
        case admitted(Int)
        /// The next message was held back (its partition is at its in-flight limit, or has held messages).
        case held
        /// The next message was dropped (its partition is no longer owned).
        case dropped
    }

    /// Admits the next messages, under one lock of this state and, for a run of one partition's messages, one of
    /// its ledger: a run (at most `limit`) is registered and moved into `chunk`; a message that cannot simply be
    /// registered is held back (its partition is at its in-flight limit, or has messages held already) or dropped
    /// (its partition is no longer owned).
    ///
    /// `cached` is the ledger used for the previous message; it is used again for a message of the same partition.
    /// That is safe because the coordinator marks a ledger revoked before replacing or removing it: a cached
    /// ledger that is no longer current refuses the message, which is then admitted against the coordinator's
    /// current ledger, exactly as without the cache.
    func admitNext(
        into chunk: inout [CommittableMessage], limit: Int, coordinator: KafkaCommitCoordinator,
        cached: inout PartitionLedger?
    ) -> AdmitStep {
        var pause: KafkaTopicPartition?
        let step: AdmitStep = state.withLock { state in
            // The next message's partition, read in place (without copying the message).
            guard
                let (topic, partition) = state.unadmitted.withUnsafeBufferPointer({ messages in
                    messages.isEmpty ? nil : (messages[messages.count - 1].topic, messages[messages.count - 1].partition)
                })
            else { return .empty }
            var ledger: PartitionLedger
            var isCurrent: Bool
            if let known = cached, known.topicPartition.partition == partition, known.topicPartition.topic == topic {
                (ledger, isCurrent) = (known, false)
            } else {
                (ledger, isCurrent) = (coordinator.ledger(for: KafkaTopicPartition(topic: topic, partition: partition)), true)
            }
            while true {
                let topicPartition = ledger.topicPartition
                if state.heldCount > 0, state.held[topicPartition]?.isEmpty == false {  // no binding: a copy would make the append copy the deque
                    state.held[topicPartition]!.append(state.unadmitted.removeLast())
                    state.heldCount += 1
                    cached = ledger
                    return .held
                }
                // The run of this partition's messages at the end, at most `limit`.
                let (run, registered) = state.unadmitted.withUnsafeBufferPointer { messages in
                    var run = 0
                    var index = messages.count - 1
                    while run < limit, index >= 0, messages[index].partition == partition, messages[index].topic == topic {
                        run += 1
                        index -= 1
                    }
                    return (run, ledger.admit(run: messages[(messages.count - run)...].reversed().lazy.map(\.offset)))
                }
                if registered > 0 {
                    for _ in 0..<registered { chunk.append(CommittableMessage(state.unadmitted.removeLast(), ledger: ledger)) }
                    cached = ledger
                    return .admitted(registered)
                }
                precondition(run > 0, "the next message is of this partition")
                let offset = state.unadmitted.withUnsafeBufferPointer { $0[$0.count - 1].offset }
                switch ledger.admit(offset) {
                case .registered:
                    // Room came between the two calls (an acknowledgement came in): it goes out.
                    chunk.append(CommittableMessage(state.unadmitted.removeLast(), ledger: ledger))
                    cached = ledger
                    return .admitted(1)
                case .notOwned where !isCurrent:
                    // The cached ledger is not current any more: the coordinator's decides.
                    (ledger, isCurrent) = (coordinator.ledger(for: topicPartition), true)
                    continue
                case .notOwned:
                    _ = state.unadmitted.removeLast()
                    cached = ledger
                    return .dropped
                case .blocked:
                    state.held[topicPartition, default: []].append(state.unadmitted.removeLast())
                    state.heldCount += 1
                    pause = topicPartition
                    cached = ledger
                    return .held
                }
            }
        }
        if let pause, let consumer = consumerBox.get() {
            do { try consumer.pause([pause]) } catch { logger.warning("cannot pause \(pause): \(error)") }
        }
        return step
    }

    /// The next held message of a partition whose in-flight count came down, if any.
    func nextHeld(coordinator: KafkaCommitCoordinator) -> CommittableMessage? {
        while true {
            enum Step { case none, emit(KafkaConsumerMessage, PartitionLedger), resume(KafkaTopicPartition), retry }
            let step: Step = state.withLock { state in
                guard let partition = state.ready.first else { return .none }
                guard let message = state.held[partition]?.first else {
                    state.ready.remove(partition)
                    state.held[partition] = nil
                    return .resume(partition)
                }
                let ledger = coordinator.ledger(for: partition)
                switch ledger.admit(message.offset) {
                case .registered:
                    state.held[partition]!.removeFirst()
                    state.heldCount -= 1
                    return .emit(message, ledger)
                case .blocked:
                    state.ready.remove(partition)
                    return .retry
                case .notOwned:
                    state.heldCount -= state.held[partition]?.count ?? 0
                    state.held[partition] = nil
                    state.ready.remove(partition)
                    return .retry
                }
            }
            switch step {
            case .none:
                return nil
            case .emit(let message, let ledger):
                return CommittableMessage(message, ledger: ledger)
            case .resume(let partition):
                if let consumer = consumerBox.get() {
                    do { try consumer.resume([partition]) } catch { logger.warning("cannot resume \(partition): \(error)") }
                }
            case .retry:
                continue
            }
        }
    }

    /// A held partition's in-flight count came down (called from the committer's acknowledgement).
    func unblocked(_ partition: KafkaTopicPartition) {
        let wake = state.withLock { state in
            guard state.held[partition] != nil else { return false }
            state.ready.insert(partition)
            return true
        }
        if wake { consumerBox.get()?.wakeUpReader() }
    }

    /// Drops what is held, and what is not admitted yet, of partitions being revoked or lost.
    func forget(_ partitions: [KafkaTopicPartition]) {
        guard !partitions.isEmpty else { return }
        let forgotten = Set(partitions)
        state.withLock { state in
            state.forgetCount += 1
            for partition in partitions {
                state.heldCount -= state.held[partition]?.count ?? 0
                state.held[partition] = nil
                state.ready.remove(partition)
                state.forgottenAt[partition] = state.forgetCount
            }
            state.unadmitted.removeAll { forgotten.contains($0.topicPartition) }
        }
    }
}
