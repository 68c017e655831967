import SluiceKafka
import Synchronization

/// The offsets of one partition for one assignment generation: what was handed downstream, what was
/// acknowledged, what was committed, and whether the partition is still owned.
///
/// A new ledger is made each time a partition is assigned; the ledger of a revoked partition refuses new
/// registrations and is never committed again, so a late acknowledgement can never commit for a partition the
/// consumer gave up.
final class PartitionLedger: Sendable {
    enum Phase: Sendable {
        /// Owned: offsets are handed out and committed.
        case active
        /// Being revoked: no new offsets; waiting for in-flight ones to be acknowledged.
        case revoking
        /// Given up: nothing is committed any more.
        case revoked
    }

    private struct State {
        var tracker = OffsetTracker()
        var phase = Phase.active
        var lastCommitted: Int64?
        var idleWaiters: [CheckedContinuation<Void, Never>] = []
        var isBlocked = false
    }

    let topicPartition: KafkaTopicPartition
    /// The commit coordinator of the consumer this ledger belongs to (the committer commits through it). Weak: the
    /// coordinator holds its ledgers; `nil` once the coordinator is gone, when nothing can be committed anyway.
    weak let coordinator: KafkaCommitCoordinator?
    /// At most this many offsets in flight (handed out, not acknowledged) before the source holds the partition.
    let maxInFlight: Int
    private let state = Mutex(State())
    /// Called (outside the lock) when a blocked partition's in-flight count fell to half of ``maxInFlight``.
    private let onUnblocked: @Sendable (KafkaTopicPartition) -> Void

    init(
        _ topicPartition: KafkaTopicPartition, maxInFlight: Int, coordinator: KafkaCommitCoordinator? = nil,
        onUnblocked: @escaping @Sendable (KafkaTopicPartition) -> Void
    ) {
        self.topicPartition = topicPartition
        self.coordinator = coordinator
        self.maxInFlight = max(maxInFlight, 1)
        self.onUnblocked = onUnblocked
    }

    var phase: Phase { state.withLock { $0.phase } }
    var outstanding: Int { state.withLock { $0.tracker.outstanding } }
    var committable: Int64? { state.withLock { $0.tracker.committable } }
    var lastCommitted: Int64? { state.withLock { $0.lastCommitted } }

    enum Admission {
        case registered
        /// The partition has ``maxInFlight`` offsets in flight: hold the message until ``onUnblocked``.
        case blocked
        /// The partition is being revoked or was revoked: drop the message (its new owner reads it).
        case notOwned
    }

    /// Registers an offset about to be handed downstream, unless the partition is full or no longer owned.
    func admit(_ offset: Int64) -> Admission {
        state.withLock { state in
            guard state.phase == .active else { return .notOwned }
            if state.tracker.outstanding >= maxInFlight {
                state.isBlocked = true
                return .blocked
            }
            state.tracker.register(offset)
            return .registered
        }
    }

    /// Registers offsets in order, under one lock, until one cannot simply be registered (the partition is at its
    /// in-flight limit, or no longer owned): ``admit(_:)`` then decides about that one. Returns how many were
    /// registered.
    func admit<Offsets: Sequence<Int64>>(run offsets: Offsets) -> Int {
        state.withLock { state in
            guard state.phase == .active else { return 0 }
            var registered = 0
            for offset in offsets {
                guard state.tracker.outstanding < maxInFlight else { break }
                state.tracker.register(offset)
                registered += 1
            }
            return registered
        }
    }

    /// Records an acknowledgement (from the committer). Ignored once the partition was revoked.
    func acknowledge(_ offset: Int64) {
        acknowledge(contentsOf: CollectionOfOne(offset))
    }

    /// Records several acknowledgements under one lock (a committer's chunk of one partition).
    func acknowledge<Offsets: Sequence<Int64>>(contentsOf offsets: Offsets) {
        let (waiters, unblocked): ([CheckedContinuation<Void, Never>], Bool) = state.withLock { state in
            guard state.phase != .revoked else { return ([], false) }
            var changed = false
            for offset in offsets where state.tracker.acknowledge(offset) { changed = true }
            guard changed else { return ([], false) }
            var unblocked = false
            if state.isBlocked && state.tracker.outstanding <= maxInFlight / 2 {
                state.isBlocked = false
                unblocked = true
            }
            guard state.tracker.outstanding == 0 else { return ([], unblocked) }
            defer { state.idleWaiters = [] }
            return (state.idleWaiters, unblocked)
        }
        for waiter in waiters { waiter.resume() }
        if unblocked { onUnblocked(topicPartition) }
    }

    /// The position to commit now, if it moved past the last commit and the partition is still owned.
    func positionToCommit() -> Int64? {
        state.withLock { state in
            guard state.phase != .revoked, let committable = state.tracker.committable else { return nil }
            if let last = state.lastCommitted, committable <= last { return nil }
            return committable
        }
    }

    /// Records a successful commit of `position`.
    func committed(_ position: Int64) {
        state.withLock { state in
            if state.lastCommitted.map({ position > $0 }) ?? true { state.lastCommitted = position }
        }
    }

    /// Stops handing out offsets of this partition (the first step of a revoke).
    func beginRevoke() {
        state.withLock { if $0.phase == .active { $0.phase = .revoking } }
    }

    /// Marks the partition given up: nothing is committed for it any more.
    func markRevoked() {
        let waiters = state.withLock { state in
            state.phase = .revoked
            defer { state.idleWaiters = [] }
            return state.idleWaiters
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Waits until every offset handed out was acknowledged, or `deadline` passes. Returns whether it was idle.
    func waitUntilIdle(deadline: ContinuousClock.Instant) async -> Bool {
        let timer = Task { [self] in
            try? await Task.sleep(until: deadline, clock: .continuous)
            let waiters = state.withLock { state in
                defer { state.idleWaiters = [] }
                return state.idleWaiters
            }
            for waiter in waiters { waiter.resume() }
        }
        defer { timer.cancel() }
        while ContinuousClock.now < deadline {
            let isIdle = state.withLock { $0.tracker.outstanding == 0 || $0.phase == .revoked }
            if isIdle { return true }
            await withCheckedContinuation { continuation in
                let resumeNow = state.withLock { state in
                    if state.tracker.outstanding == 0 || state.phase == .revoked { return true }
                    state.idleWaiters.append(continuation)
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        }
        return state.withLock { $0.tracker.outstanding == 0 }
    }
}
