import SluiceKafka
public import SluiceStreams
import Synchronization

/// Settings of a committer.
public struct KafkaCommitterSettings: Sendable {
    /// Commit after this many acknowledgements. Default: 1,000.
    public var maxBatch: Int = 1000
    /// Commit at the latest this long after the first acknowledgement of a batch. Default: 1 second.
    public var maxInterval: Duration = .seconds(1)
    /// At most this many commits in flight at once (commits of one consumer still go one after another, so its
    /// positions only move forward). Default: 1.
    public var parallelism: Int = 1

    public init(maxBatch: Int = 1000, maxInterval: Duration = .seconds(1), parallelism: Int = 1) {
        self.maxBatch = maxBatch
        self.maxInterval = maxInterval
        self.parallelism = parallelism
    }
}

/// What a committer flow emits each time it commits a batch (when the commit is issued; a commit that fails
/// fatally fails the stream, other failures are retried with the next batch).
public struct KafkaCommitBatch: Sendable {
    /// Acknowledgements covered by this commit.
    public var acknowledgements: Int
}

/// Committers (modelled on Pekko Connectors Kafka's `Committer`): acknowledge each offset as it arrives, and commit,
/// per partition, the highest position below which every message was acknowledged, in batches.
///
/// Acknowledgements may arrive in any order: a later offset's acknowledgement never commits past an earlier
/// unacknowledged one. Nothing is committed for a partition the consumer gave up.
public enum KafkaCommitter {
    /// A sink that acknowledges and commits; completes (after a final commit) when the stream does.
    public static func sink(_ settings: KafkaCommitterSettings = .init()) -> Sink<CommittableOffset, StreamCompletion<Void>> {
        flow(settings).toMat(Sink.ignore(), Keep.right)
    }

    /// A flow that acknowledges and commits, emitting a ``KafkaCommitBatch`` after each commit.
    public static func flow(_ settings: KafkaCommitterSettings = .init()) -> Flow<CommittableOffset, KafkaCommitBatch, Void> {
        Flow.fromElements { upstream in
            .make {
                let pump = Pump<CommittableOffset>(capacity: max(settings.maxBatch, 16)) { channel in
                    var offsets = upstream.makeAsyncIterator()
                    while let chunk = try await offsets.nextChunk() {
                        guard await channel.send(contentsOf: chunk) else { return }
                    }
                }
                let permits = CommitPermits(settings.parallelism)
                let clock = ContinuousClock()
                var coordinators: [ObjectIdentifier: KafkaCommitCoordinator] = [:]
                var pending = 0
                var batchStart: ContinuousClock.Instant?
                var isFinished = false

                func commit() async throws -> KafkaCommitBatch {
                    let batch = KafkaCommitBatch(acknowledgements: pending)
                    let toCommit = Array(coordinators.values)
                    coordinators = [:]
                    pending = 0
                    batchStart = nil
                    try await permits.run {
                        for coordinator in toCommit { try await coordinator.commit() }
                    }
                    return batch
                }

                var lastCoordinator: KafkaCommitCoordinator?
                var run: [Int64] = []
                func acknowledge(_ first: CommittableOffset, _ rest: [CommittableOffset]) {
                    var ledger = first.ledger
                    run.removeAll(keepingCapacity: true)
                    run.append(first.offset)
                    note(ledger.coordinator)
                    for offset in rest {
                        if offset.ledger !== ledger {
                            ledger.acknowledge(contentsOf: run)
                            run.removeAll(keepingCapacity: true)
                            ledger = offset.ledger
                            note(ledger.coordinator)
                        }
                        run.append(offset.offset)
                    }
                    ledger.acknowledge(contentsOf: run)
                }
                func note(_ coordinator: KafkaCommitCoordinator?) {
                    // No coordinator: its consumer is gone, and nothing can be committed for the offset any more.
                    guard let coordinator, coordinator !== lastCoordinator || coordinators.isEmpty else { return }
                    lastCoordinator = coordinator
                    coordinators[ObjectIdentifier(coordinator)] = coordinator
                }

                return {
                    guard !isFinished else { return nil }
                    pump.start()
                    while true {
                        let deadline = batchStart.map { $0.advanced(by: settings.maxInterval) }
                        switch try await pump.channel.receive(until: deadline, clock: deadline == nil ? nil : clock) {
                        case .element(let first):
                            // Chunked: take what else is buffered now (never more than the batch has room for),
                            // and acknowledge each partition's run of offsets under one lock.
                            let rest = pump.channel.drain(maxCount: settings.maxBatch - pending - 1)
                            acknowledge(first, rest)
                            pending += 1 + rest.count
                            if batchStart == nil { batchStart = clock.now }
                            if pending >= settings.maxBatch { return try await commit() }
                        case .timedOut:
                            if pending > 0 { return try await commit() }
                            batchStart = nil
                        case .finished:
                            try Task.checkCancellation()
                            isFinished = true
                            let last = try await commit()
                            try await permits.waitForAll()
                            return last.acknowledgements == 0 ? nil : last
                        }
                    }
                }
            }
        }
    }
}

/// Limits how many commits run at once; commits run in the background so acknowledgements keep flowing.
final class CommitPermits: Sendable {
    private let limit: Int
    private let state = Mutex<(running: Int, failure: (any Error)?, waiters: [CheckedContinuation<Void, Never>])>((0, nil, []))

    init(_ limit: Int) { self.limit = max(limit, 1) }

    /// Starts `body` in the background once a permit is free. Rethrows the failure of an earlier commit.
    func run(_ body: @escaping @Sendable () async throws -> Void) async throws {
        while true {
            let acquired: Bool = try state.withLock { state in
                if let failure = state.failure { throw failure }
                guard state.running < limit else { return false }
                state.running += 1
                return true
            }
            if acquired { break }
            await withCheckedContinuation { continuation in
                let resumeNow = state.withLock { state in
                    if state.running < limit || state.failure != nil { return true }
                    state.waiters.append(continuation)
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        }
        Task {
            var failure: (any Error)?
            do { try await body() } catch { failure = error }
            let waiters = state.withLock { state in
                state.running -= 1
                if let failure, state.failure == nil { state.failure = failure }
                defer { state.waiters = [] }
                return state.waiters
            }
            for waiter in waiters { waiter.resume() }
        }
    }

    /// Waits until no commit runs; rethrows a commit failure.
    func waitForAll() async throws {
        while true {
            let done: Bool = try state.withLock { state in
                if let failure = state.failure { throw failure }
                return state.running == 0
            }
            if done { return }
            await withCheckedContinuation { continuation in
                let resumeNow = state.withLock { state in
                    if state.running == 0 || state.failure != nil { return true }
                    state.waiters.append(continuation)
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        }
    }
}
