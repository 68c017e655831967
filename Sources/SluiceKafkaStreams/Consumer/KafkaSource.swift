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
                // The rest of the last batch read from the consumer (at most one poll's worth), last message first:
                // each is moved out with `popLast`, never copied (a copy retains each of the message's buffers).
                var unadmitted: [KafkaConsumerMessage] = []
                // The ledger of the last message's partition: consecutive messages of a batch mostly share a
                // partition, and looking the ledger up costs two locks and a hash of the topic name.
                var lastLedger: PartitionLedger?
                return {
                    var chunk: [CommittableMessage] = []
                    while !control.isStopped {
                        while chunk.count < Self.sourceBatch, let ready = state.nextHeld(coordinator: coordinator) {
                            chunk.append(ready)
                        }
                        while chunk.count < Self.sourceBatch, !unadmitted.isEmpty {
                            // The common case: a run of the last partition's messages, admitted under one lock.
                            if let ledger = lastLedger,
                                state.admitRun(
                                    from: &unadmitted, into: &chunk, limit: Self.sourceBatch - chunk.count, ledger: ledger) > 0
                            {
                                continue
                            }
                            guard let message = unadmitted.popLast() else { break }
                            if let admitted = state.admit(message, coordinator: coordinator, cached: &lastLedger) {
                                chunk.append(admitted)
                            } else {
                                counters.setHeld(state.heldCount)
                            }
                        }
                        if !chunk.isEmpty {
                            counters.emit(chunk.count)
                            return chunk
                        }
                        switch try await consumer.readBatch(maxCount: settings.consumer.pollBatchSize) {
                        case .messages(let next)?:
                            unadmitted = next
                            // Reversed through the buffer, which swaps by moving (Array's own `reverse` copies).
                            unadmitted.withUnsafeMutableBufferPointer { $0.reverse() }
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
        /// Messages taken from the consumer for partitions at their in-flight limit, in offset order.
        var held: [KafkaTopicPartition: Deque<KafkaConsumerMessage>] = [:]
        /// Held partitions whose in-flight count came down: their held messages may go out again.
        var ready: Set<KafkaTopicPartition> = []
        var heldCount = 0
    }
    private let state = Mutex(State())
    private let consumerBox = ConsumerBox()
    private let logger: Logger

    init(logger: Logger) { self.logger = logger }

    func attach(_ consumer: KafkaConsumer) { consumerBox.set(consumer) }
    func detach() { consumerBox.clear() }

    var heldCount: Int { state.withLock { $0.heldCount } }

    /// Hands a fresh message out (registered in its partition's ledger), holds it back (partition at its limit,
    /// or earlier messages of it held), or drops it (partition no longer owned).
    ///
    /// `cached` is the ledger used for the previous message; it is used again for a message of the same partition.
    /// That is safe because the coordinator marks a ledger revoked before replacing or removing it: a cached
    /// ledger that is no longer current answers `.notOwned`, and the message is then admitted against the
    /// coordinator's current ledger, exactly as without the cache.
    func admit(
        _ message: consuming KafkaConsumerMessage, coordinator: KafkaCommitCoordinator, cached: inout PartitionLedger?
    ) -> CommittableMessage? {
        var admission: Admission = .retry
        if let ledger = cached, ledger.topicPartition.partition == message.partition,
            ledger.topicPartition.topic == message.topic
        {
            admission = admit(message, ledger: ledger, dropIfNotOwned: false)
        }
        if case .retry = admission {
            let ledger = coordinator.ledger(for: message.topicPartition)
            cached = ledger
            admission = admit(message, ledger: ledger, dropIfNotOwned: true)
        }
        guard case .emit(let ledger) = admission else { return nil }
        // The message's last use: moved into the committable message, not copied.
        let offset = message.offset
        return CommittableMessage(message: message, committableOffset: CommittableOffset(offset: offset, ledger: ledger))
    }

    /// Admits the run of messages at the end of `unadmitted` (the next ones, it is reversed) that belong to
    /// `ledger`'s partition, at most `limit`, under one lock of this state and one of the ledger, moving them into
    /// `chunk`. It stops at the first message it cannot simply register (its partition has held messages, is at
    /// its in-flight limit, or the ledger is no longer current): ``admit(_:coordinator:cached:)`` takes that one
    /// alone. Returns how many it admitted.
    func admitRun(
        from unadmitted: inout [KafkaConsumerMessage], into chunk: inout [CommittableMessage], limit: Int,
        ledger: PartitionLedger
    ) -> Int {
        let partition = ledger.topicPartition
        let run = unadmitted.withUnsafeBufferPointer { messages in
            var run = 0
            var index = messages.count - 1
            while run < limit, index >= 0, messages[index].partition == partition.partition,
                messages[index].topic == partition.topic
            {
                run += 1
                index -= 1
            }
            return run
        }
        guard run > 0 else { return 0 }
        let registered: Int = state.withLock { state in
            if state.heldCount > 0, state.held[partition]?.isEmpty == false { return 0 }
            return unadmitted.withUnsafeBufferPointer { messages in
                ledger.admit(run: messages[(messages.count - run)...].reversed().lazy.map(\.offset))
            }
        }
        for _ in 0..<registered {
            let message = unadmitted.removeLast()
            let offset = message.offset
            chunk.append(CommittableMessage(message: message, committableOffset: CommittableOffset(offset: offset, ledger: ledger)))
        }
        return registered
    }

    private enum Admission {
        /// Registered in `ledger`: hand the message out.
        case emit(PartitionLedger)
        /// Held back or dropped.
        case taken
        /// `ledger` is not the partition's owner: try the coordinator's current ledger.
        case retry
    }

    /// One admission against `ledger` (`.retry` only when `dropIfNotOwned` is false). The message is copied only
    /// when it is held back.
    private func admit(_ message: borrowing KafkaConsumerMessage, ledger: PartitionLedger, dropIfNotOwned: Bool) -> Admission {
        enum Outcome { case emit, hold(pause: Bool), drop, retry }
        let outcome: Outcome = state.withLock { state in
            if state.heldCount > 0, state.held[ledger.topicPartition]?.isEmpty == false {  // no binding: a copy would make the append copy the deque
                state.held[ledger.topicPartition]!.append(copy message)
                state.heldCount += 1
                return .hold(pause: false)
            }
            switch ledger.admit(message.offset) {
            case .registered: return .emit
            case .notOwned: return dropIfNotOwned ? .drop : .retry
            case .blocked:
                state.held[ledger.topicPartition, default: []].append(copy message)
                state.heldCount += 1
                return .hold(pause: true)
            }
        }
        switch outcome {
        case .emit:
            return .emit(ledger)
        case .hold(let pause):
            if pause, let consumer = consumerBox.get() {
                let partition = ledger.topicPartition
                do { try consumer.pause([partition]) } catch { logger.warning("cannot pause \(partition): \(error)") }
            }
            return .taken
        case .drop:
            return .taken
        case .retry:
            return .retry
        }
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
                return CommittableMessage(
                    message: message,
                    committableOffset: CommittableOffset(offset: message.offset, ledger: ledger))
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

    /// Drops what is held for partitions being revoked or lost.
    func forget(_ partitions: [KafkaTopicPartition]) {
        state.withLock { state in
            for partition in partitions {
                state.heldCount -= state.held[partition]?.count ?? 0
                state.held[partition] = nil
                state.ready.remove(partition)
            }
        }
    }
}
