import Synchronization

/// A committer's bookkeeping, shared by ``KafkaCommitter`` and ``KafkaProducerStages/committableSink(producer:committerSettings:parallelism:)``:
/// acknowledges offsets in their partitions' ledgers, counts the acknowledgements of the batch under way, and asks
/// for the batch's commit when it is due (``KafkaCommitterSettings/maxBatch`` acknowledgements, or
/// ``KafkaCommitterSettings/maxInterval`` after its first one). Any thread may acknowledge.
final class CommitBatcher: Sendable {
    private struct State {
        /// The coordinators acknowledged for in the batch under way.
        var coordinators: [ObjectIdentifier: KafkaCommitCoordinator] = [:]
        /// Every coordinator acknowledged for since the start: each gets a last commit at the end.
        var acknowledgedFor: [ObjectIdentifier: KafkaCommitCoordinator] = [:]
        /// Acknowledgements in the batch under way.
        var pending = 0
        /// When the batch under way got its first acknowledgement.
        var batchStart: ContinuousClock.Instant?
        /// Whoever waits in ``waitForBatch()`` for a batch to start.
        var startWaiter: CheckedContinuation<Void, Never>?
    }

    /// A batch whose commit is to be asked for, and the coordinators to commit.
    private typealias DueBatch = (batch: KafkaCommitBatch, coordinators: [KafkaCommitCoordinator])

    let settings: KafkaCommitterSettings
    private let commits: CommitScheduler<KafkaCommitCoordinator>
    private let state = Mutex(State())

    init(settings: KafkaCommitterSettings) {
        self.settings = settings
        self.commits = CommitScheduler(limit: settings.parallelism) { try await $0.commit() }
    }

    /// How many more acknowledgements the batch under way takes before it is due (at least 1).
    var room: Int { max(settings.maxBatch - state.withLock { $0.pending }, 1) }

    /// When the batch under way is due by time; `nil` when no batch is under way.
    var deadline: ContinuousClock.Instant? {
        state.withLock { $0.batchStart.map { $0.advanced(by: settings.maxInterval) } }
    }

    /// Acknowledges `offsets`, each partition's run of them under one lock of its ledger, and adds them to the batch
    /// under way.
    /// - Returns: the batch, if this made it due (its commit is asked for); `nil` otherwise.
    /// - Throws: the failure of an earlier commit.
    func acknowledge<Offsets: Collection<CommittableOffset>>(_ offsets: Offsets) throws -> KafkaCommitBatch? {
        guard !offsets.isEmpty else { return nil }
        // Offsets come in runs of one partition; the runs mostly share one coordinator (one consumer).
        var coordinator: KafkaCommitCoordinator?
        var others: [KafkaCommitCoordinator] = []
        var start = offsets.startIndex
        while start != offsets.endIndex {
            let ledger = offsets[start].ledger
            var end = offsets.index(after: start)
            while end != offsets.endIndex, offsets[end].ledger === ledger { end = offsets.index(after: end) }
            ledger.acknowledge(contentsOf: offsets[start..<end].lazy.map(\.offset))
            // No coordinator: its consumer is gone, and nothing can be committed for the offset any more.
            if let owner = ledger.coordinator, owner !== coordinator {
                if coordinator == nil { coordinator = owner } else { others.append(owner) }
            }
            start = end
        }
        let (due, waiter): (DueBatch?, CheckedContinuation<Void, Never>?) = state.withLock { state in
            func note(_ owner: KafkaCommitCoordinator) {
                state.coordinators[ObjectIdentifier(owner)] = owner
                state.acknowledgedFor[ObjectIdentifier(owner)] = owner
            }
            if let coordinator { note(coordinator) }
            for owner in others { note(owner) }
            state.pending += offsets.count
            var waiter: CheckedContinuation<Void, Never>?
            if state.batchStart == nil {
                state.batchStart = .now
                waiter = state.startWaiter.take()
            }
            return (state.pending >= settings.maxBatch ? Self.takeBatch(&state) : nil, waiter)
        }
        waiter?.resume()
        return try request(due)
    }

    /// Asks for the commit of the batch under way if it is due by time (the reader of ``deadline`` calls it once
    /// that passed), and ends an empty batch.
    /// - Returns: the batch whose commit was asked for, if any.
    func commitIfOverdue() throws -> KafkaCommitBatch? {
        let due: DueBatch? = state.withLock { state in
            guard let start = state.batchStart, start.advanced(by: settings.maxInterval) <= .now else { return nil }
            guard state.pending > 0 else {
                state.batchStart = nil
                return nil
            }
            return Self.takeBatch(&state)
        }
        return try request(due)
    }

    /// Commits each batch at the latest ``KafkaCommitterSettings/maxInterval`` after its first acknowledgement, until
    /// the calling task is cancelled. A failed commit is left for the next acknowledgement or ``finish()`` to
    /// throw.
    func commitOnTime() async {
        while !Task.isCancelled {
            await waitForBatch()
            guard let deadline else { continue }
            try? await Task.sleep(until: deadline, clock: .continuous)
            if Task.isCancelled { return }
            _ = try? commitIfOverdue()
        }
    }

    /// The end of the stream: asks for the commit of the batch under way, waits for every commit, then gives each
    /// consumer acknowledged for a last commit, which must land: no later commit would retry it, and a drain must
    /// not report as committed what was not (it is delivered again after a restart). Positions already committed
    /// make it a no-op.
    /// - Returns: the last batch (possibly empty).
    func finish() async throws -> KafkaCommitBatch {
        let (last, everyCoordinator) = state.withLock { state in (Self.takeBatch(&state), Array(state.acknowledgedFor.values)) }
        try commits.request(last.coordinators)
        try await commits.waitForAll()
        for coordinator in everyCoordinator { try await coordinator.commitFinal() }
        return last.batch
    }

    private func request(_ due: DueBatch?) throws -> KafkaCommitBatch? {
        guard let due else { return nil }
        try commits.request(due.coordinators)
        return due.batch
    }

    private static func takeBatch(_ state: inout State) -> DueBatch {
        defer {
            state.coordinators.removeAll(keepingCapacity: true)
            state.pending = 0
            state.batchStart = nil
        }
        return (KafkaCommitBatch(acknowledgements: state.pending), Array(state.coordinators.values))
    }

    /// Returns once a batch is under way, or the calling task is cancelled.
    private func waitForBatch() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { state in
                    if state.batchStart != nil || Task.isCancelled { return true }
                    state.startWaiter = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.startWaiter.take() }?.resume()
        }
    }
}
