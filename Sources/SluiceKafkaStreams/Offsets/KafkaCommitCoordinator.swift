import SluiceKafka
import Logging
import Synchronization

/// The commit side of one consumer: its partitions' ledgers, and the one lane through which every commit for the
/// consumer goes (committer batches and revocations alike), so commits stay monotonic and none lands after a
/// partition was given up.
final class KafkaCommitCoordinator: Sendable {
    private let ledgers = Mutex<[KafkaTopicPartition: PartitionLedger]>([:])
    /// Set by ``abandonAll()``: no ledger is made or committed any more.
    private let isAbandoned = Mutex(false)
    /// Set by the first rebalance (``assigned(_:)``, ``revoke(_:wait:)``, ``lost(_:)``): the group assigns the
    /// partitions, and a partition without a ledger is not owned (its ledger was removed when it was revoked).
    private let isGroupManaged = Atomic<Bool>(false)
    private let lane = AsyncSerialLane()
    private let consumerBox: ConsumerBox
    private let logger: Logger
    let maxInFlightPerPartition: Int
    private let onUnblocked: @Sendable (KafkaTopicPartition) -> Void

    init(
        maxInFlightPerPartition: Int, logger: Logger,
        onUnblocked: @escaping @Sendable (KafkaTopicPartition) -> Void
    ) {
        self.consumerBox = ConsumerBox()
        self.maxInFlightPerPartition = maxInFlightPerPartition
        self.logger = logger
        self.onUnblocked = onUnblocked
    }

    func attach(_ consumer: KafkaConsumer) { consumerBox.set(consumer) }

    /// Lets go of the consumer once it is closed (nothing can be committed through it any more). The consumer's
    /// rebalance handler holds this coordinator, so holding the consumer would keep both alive for good.
    func detach() { consumerBox.clear() }

    /// The current ledger of a partition; made on first use when the consumer was assigned partitions manually.
    ///
    /// Under group management a partition without a ledger is not owned (its ledger is made on assignment, before
    /// any of its messages, and removed once it is revoked): a message of it read before the revoke gets a revoked
    /// ledger, which refuses it, never a fresh one that would commit for a partition another member owns now.
    func ledger(for partition: KafkaTopicPartition) -> PartitionLedger {
        if isAbandoned.withLock({ $0 }) { return revokedLedger(partition) }
        let isGroupManaged = isGroupManaged.load(ordering: .acquiring)
        let current: PartitionLedger? = ledgers.withLock { ledgers in
            if let existing = ledgers[partition] { return existing }
            guard !isGroupManaged else { return nil }
            let ledger = makeLedger(partition)
            ledgers[partition] = ledger
            return ledger
        }
        return current ?? revokedLedger(partition)
    }

    /// A ledger that refuses every offset.
    private func revokedLedger(_ partition: KafkaTopicPartition) -> PartitionLedger {
        let ledger = makeLedger(partition)
        ledger.markRevoked()
        return ledger
    }

    /// A new ledger of this consumer for `partition`.
    private func makeLedger(_ partition: KafkaTopicPartition) -> PartitionLedger {
        PartitionLedger(partition, maxInFlight: maxInFlightPerPartition, coordinator: self, onUnblocked: onUnblocked)
    }

    /// Whether the partition has a ledger that hands out offsets: it is assigned, and not being revoked.
    func isActivelyOwned(_ partition: KafkaTopicPartition) -> Bool {
        guard !isAbandoned.withLock({ $0 }) else { return false }
        return ledgers.withLock { $0[partition]?.phase == .active }
    }

    /// New ledgers for newly assigned partitions.
    func assigned(_ partitions: [KafkaTopicPartition]) {
        isGroupManaged.store(true, ordering: .releasing)
        guard !isAbandoned.withLock({ $0 }) else { return }
        ledgers.withLock { ledgers in
            for partition in partitions {
                ledgers[partition]?.markRevoked()
                ledgers[partition] = makeLedger(partition)
            }
        }
    }

    /// Gives partitions up cleanly: stop handing their messages out, wait up to `wait` for the ones in flight to
    /// be acknowledged, commit what is done, then mark them revoked. Runs while the consumer still owns them.
    func revoke(_ partitions: [KafkaTopicPartition], wait: Duration) async {
        isGroupManaged.store(true, ordering: .releasing)
        let revoking = ledgers.withLock { ledgers in partitions.compactMap { ledgers[$0] } }
        for ledger in revoking { ledger.beginRevoke() }
        let deadline = ContinuousClock.now.advanced(by: wait)
        for ledger in revoking where !(await ledger.waitUntilIdle(deadline: deadline)) {
            logger.warning(
                """
                revoking \(ledger.topicPartition) with \(ledger.outstanding) messages still in flight after \(wait): \
                they will be delivered again to the partition's next owner
                """)
        }
        await lane.run {
            await commitLocked(revoking)
            for ledger in revoking { ledger.markRevoked() }
        }
        ledgers.withLock { ledgers in
            for partition in partitions where ledgers[partition].map({ ledger in revoking.contains { $0 === ledger } }) ?? false {
                ledgers[partition] = nil
            }
        }
    }

    /// Gives every partition up without committing (``KafkaConsumerControl/abandon()``).
    func abandonAll() {
        isAbandoned.withLock { $0 = true }
        let all = ledgers.withLock { ledgers in
            defer { ledgers = [:] }
            return Array(ledgers.values)
        }
        for ledger in all { ledger.markRevoked() }
    }

    /// Applies a rebalance for a committable source, in the order that keeps offsets safe: new ledgers before the
    /// `onAssigned` hook and any message; on revoke, `release` first (the source drops what it holds of the
    /// partitions), then the clean revoke (finish in-flight, commit), then the `onRevoked` hook; a lost assignment
    /// skips the commit.
    func handle(
        _ event: KafkaRebalanceEvent, settings: KafkaSourceSettings,
        opened: ([KafkaTopicPartition]) -> Void = { _ in }, release: ([KafkaTopicPartition]) -> Void
    ) async {
        switch event {
        case .assigned(let partitions):
            assigned(partitions)
            await settings.onAssigned?(partitions)
            opened(partitions)
        case .revoked(let partitions):
            release(partitions)
            await settings.onRevoking?(partitions)
            await revoke(partitions, wait: settings.revokeWait)
            await settings.onRevoked?(partitions)
        case .lost(let partitions):
            release(partitions)
            await settings.onRevoking?(partitions)
            lost(partitions)
            await settings.onRevoked?(partitions)
        }
    }

    /// Partitions lost without a clean revoke: another member may own them, so nothing is committed for them.
    func lost(_ partitions: [KafkaTopicPartition]) {
        isGroupManaged.store(true, ordering: .releasing)
        let lost = ledgers.withLock { ledgers in partitions.compactMap { ledgers.removeValue(forKey: $0) } }
        for ledger in lost { ledger.markRevoked() }
    }

    /// Commits the committable position of every owned partition that moved since its last commit.
    /// Failures are logged and retried with the next commit (positions only move forward), except fatal ones.
    func commit() async throws { try await commitOwned(throwing: .fatal) }

    /// The last commit of a stream: like ``commit()``, but every failure is thrown, because no later commit will
    /// retry it (what it did not commit is delivered again after a restart).
    func commitFinal() async throws { try await commitOwned(throwing: .all) }

    /// Commits every owned partition's position in the lane.
    private func commitOwned(throwing thrown: ThrownFailures) async throws {
        let current = ledgers.withLock { Array($0.values) }
        try await lane.run { try await commitLocked(current, throwing: thrown) }
    }

    /// Which commit failures ``commitLocked(_:throwing:)`` throws rather than logs.
    private enum ThrownFailures { case none, fatal, all }

    /// Commits `ledgers`' positions; must run inside the lane.
    private func commitLocked(_ ledgers: [PartitionLedger], throwing thrown: ThrownFailures) async throws {
        let positions = ledgers.compactMap { ledger in
            ledger.positionToCommit().map { (ledger, $0) }
        }
        guard !positions.isEmpty, let consumer = consumerBox.get() else { return }
        do {
            try await consumer.commit(positions.map { KafkaTopicPartitionOffset($0.0.topicPartition, offset: $0.1) })
            for (ledger, position) in positions { ledger.committed(position) }
        } catch let error as KafkaError {
            switch thrown {
            case .all: throw error
            case .fatal where error.isFatal: throw error
            case .fatal, .none: logger.warning("commit failed (will retry with the next commit): \(error)")
            }
        }
    }

    private func commitLocked(_ ledgers: [PartitionLedger]) async {
        try? await commitLocked(ledgers, throwing: .none)
    }

    /// Offsets in flight per partition (handed out, not yet acknowledged).
    var inFlight: [KafkaTopicPartition: Int] {
        ledgers.withLock { ledgers in ledgers.mapValues { $0.outstanding } }
    }

    /// The last committed position per partition.
    var committedPositions: [KafkaTopicPartition: Int64] {
        ledgers.withLock { ledgers in ledgers.compactMapValues { $0.lastCommitted } }
    }
}

/// Holds the consumer weakly-ish: set once after the consumer exists (its rebalance handler needs the coordinator
/// first).
final class ConsumerBox: Sendable {
    private let consumer = Mutex<KafkaConsumer?>(nil)
    func set(_ value: KafkaConsumer) { consumer.withLock { $0 = value } }
    func get() -> KafkaConsumer? { consumer.withLock { $0 } }
    func clear() { consumer.withLock { $0 = nil } }
}
