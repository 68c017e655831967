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
    ///
    /// A commit due while that many are in flight does not hold the stream back: it waits for one of them to end
    /// and then commits everything acknowledged by then, so under load one commit can cover several batches.
    public var parallelism: Int = 1

    public init(maxBatch: Int = 1000, maxInterval: Duration = .seconds(1), parallelism: Int = 1) {
        self.maxBatch = maxBatch
        self.maxInterval = maxInterval
        self.parallelism = parallelism
    }
}

/// What a committer flow emits each time a batch is due for commit (when the commit is asked for: it starts at
/// once, or with the next commit to start if ``KafkaCommitterSettings/parallelism`` commits are in flight). A commit
/// that fails fatally fails the stream; other failures are retried with the next batch.
public struct KafkaCommitBatch: Sendable {
    /// Acknowledgements in this batch.
    public var acknowledgements: Int
}

/// Committers (modelled on Pekko Connectors Kafka's `Committer`): acknowledge each offset as it arrives, and commit,
/// per partition, the highest position below which every message was acknowledged, in batches.
///
/// Acknowledgements may arrive in any order: a later offset's acknowledgement never commits past an earlier
/// unacknowledged one. Nothing is committed for a partition the consumer gave up.
public enum KafkaCommitter {
    /// A sink that acknowledges and commits; completes (after a final commit) when the stream does. It fails if
    /// that final commit fails (earlier failed commits are logged and retried by the next one).
    public static func sink(_ settings: KafkaCommitterSettings = .init()) -> Sink<CommittableOffset, StreamCompletion<Void>> {
        flow(settings).toMat(Sink.ignore(), Keep.right)
    }

    /// A flow that acknowledges and commits, emitting a ``KafkaCommitBatch`` each time a batch is due for commit
    /// (commits due while earlier ones are in flight coalesce; see ``KafkaCommitterSettings/parallelism``).
    public static func flow(_ settings: KafkaCommitterSettings = .init()) -> Flow<CommittableOffset, KafkaCommitBatch, Void> {
        Flow.fromElements { upstream in
            .make {
                let pump = Pump<CommittableOffset>(capacity: max(settings.maxBatch, 16)) { channel in
                    var offsets = upstream.makeAsyncIterator()
                    while let chunk = try await offsets.nextChunk() {
                        guard await channel.send(contentsOf: chunk) else { return }
                    }
                }
                let batcher = CommitBatcher(settings: settings)
                let clock = ContinuousClock()
                var isFinished = false
                return {
                    guard !isFinished else { return nil }
                    pump.start()
                    while true {
                        let deadline = batcher.deadline
                        switch try await pump.channel.receive(until: deadline, clock: deadline == nil ? nil : clock) {
                        case .element(let first):
                            // Chunked: take what else is buffered now (never more than the batch has room for),
                            // and acknowledge each partition's run of offsets under one lock.
                            let rest = pump.channel.drain(maxCount: batcher.room - 1)
                            if let batch = try batcher.acknowledge(CollectionOfOne(first)) { return batch }
                            if let batch = try batcher.acknowledge(rest) { return batch }
                        case .timedOut:
                            if let batch = try batcher.commitIfOverdue() { return batch }
                        case .finished:
                            try Task.checkCancellation()
                            isFinished = true
                            let last = try await batcher.finish()
                            return last.acknowledgements == 0 ? nil : last
                        }
                    }
                }
            }
        }
    }
}

/// Runs a committer's commits in the background, at most `limit` at once, and coalesces the ones asked for
/// meanwhile.
///
/// A commit asked for while `limit` commits run does not wait, and does not queue up either: its targets join the
/// one pending commit, which starts when a running commit ends and commits whatever is acknowledged by then (a
/// commit reads its positions when it starts). So acknowledgements keep flowing while commits are in flight, and
/// under load each commit covers more acknowledgements rather than commits lining up one per batch, each a round
/// trip to the group coordinator that holds the stream back.
final class CommitScheduler<Target: AnyObject & Sendable>: Sendable {
    private struct State {
        var running = 0
        /// The targets of the pending commit, by identity.
        var pending: [ObjectIdentifier: Target] = [:]
        var failure: (any Error)?
        var waiters: [CheckedContinuation<Void, Never>] = []

        /// Nothing runs or is pending, or a commit failed: what ``waitForAll()`` waits for.
        var isSettled: Bool { (running == 0 && pending.isEmpty) || failure != nil }
    }
    private let limit: Int
    private let commit: @Sendable (Target) async throws -> Void
    private let state = Mutex(State())

    /// - Parameter commit: commits one target's acknowledged positions.
    init(limit: Int, commit: @escaping @Sendable (Target) async throws -> Void) {
        self.limit = max(limit, 1)
        self.commit = commit
    }

    /// Asks for a commit of `targets`: it starts now if fewer than `limit` commits run, and joins the pending commit
    /// otherwise. Rethrows the failure of an earlier commit.
    func request(_ targets: some Sequence<Target>) throws {
        let start: [Target]? = try state.withLock { state in
            if let failure = state.failure { throw failure }
            for target in targets { state.pending[ObjectIdentifier(target)] = target }
            return Self.takePendingLocked(&state, limit: limit)
        }
        if let start { run(start) }
    }

    /// Waits until no commit runs or is pending; rethrows a commit failure.
    func waitForAll() async throws {
        while true {
            let done: Bool = try state.withLock { state in
                if let failure = state.failure { throw failure }
                return state.isSettled
            }
            if done { return }
            await withCheckedContinuation { continuation in
                let resumeNow = state.withLock { state in
                    if state.isSettled { return true }
                    state.waiters.append(continuation)
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        }
    }

    /// The pending targets, counted as running, when a commit may start; `nil` otherwise.
    private static func takePendingLocked(_ state: inout State, limit: Int) -> [Target]? {
        guard !state.pending.isEmpty, state.running < limit, state.failure == nil else { return nil }
        state.running += 1
        defer { state.pending.removeAll(keepingCapacity: true) }
        return Array(state.pending.values)
    }

    /// Commits `first`, then whatever became pending meanwhile, until nothing is.
    private func run(_ first: [Target]) {
        Task {
            var targets = first
            while true {
                var failure: (any Error)?
                do {
                    for target in targets { try await commit(target) }
                } catch { failure = error }
                let (next, waiters): ([Target]?, [CheckedContinuation<Void, Never>]) = state.withLock { state in
                    state.running -= 1
                    if let failure, state.failure == nil { state.failure = failure }
                    let next = Self.takePendingLocked(&state, limit: limit)
                    guard next == nil, state.isSettled else { return (next, []) }
                    defer { state.waiters = [] }
                    return (nil, state.waiters)
                }
                for waiter in waiters { waiter.resume() }
                guard let next else { return }
                targets = next
            }
        }
    }
}
