import Synchronization

/// The bounded hand-over buffer between a consumer's poll thread and the task reading its messages.
///
/// The poll thread appends whole batches (one lock per batch). The reader takes either one message at a time
/// (``nextMessage()``) or everything buffered at once (``nextBatch()``); either way every message stays in the
/// buffer until it is taken, so dropping an iterator never loses messages, and a revocation removes exactly the
/// messages not yet taken. When the buffer holds ``capacity`` messages the poll thread pauses the assignment in
/// librdkafka; once the reader has drained it to ``resumeThreshold`` the poll thread is woken to resume.
final class KafkaConsumerMessageBuffer: Sendable {
    enum Completion: Sendable {
        case finished
        case failed(KafkaError)
    }

    /// What a message read returns: a message, a wake-up (``wakeUpReader()``), or the end (`nil`).
    enum Read: Sendable {
        case message(KafkaConsumerMessage)
        case wokenUp
    }

    private enum Waiter {
        /// A ``read(wakeable:)``.
        case message(CheckedContinuation<Read?, any Error>)
        /// A ``readBatch(wakeable:limit:)``: it gets the poll thread's next batch whole when that fits `limit`.
        case batch(CheckedContinuation<BatchRead?, any Error>, limit: Int, wakeable: Bool)

        func finish(_ completion: Completion) {
            switch (self, completion) {
            case (.message(let continuation), .finished): continuation.resume(returning: nil)
            case (.message(let continuation), .failed(let error)): continuation.resume(throwing: error)
            case (.batch(let continuation, _, _), .finished): continuation.resume(returning: nil)
            case (.batch(let continuation, _, _), .failed(let error)): continuation.resume(throwing: error)
            }
        }
    }

    private struct State {
        /// Buffered batches; the first one is consumed from ``head`` on.
        var batches: [[KafkaConsumerMessage]] = []
        var head = 0
        var count = 0
        var completion: Completion?
        var waiter: Waiter?
        /// Set by the poll thread when it paused partitions because the buffer was full.
        var isBackpressurePaused = false
        /// Messages taken by the reader so far (for stall detection).
        var taken = 0
        /// Set by ``wakeUpReader()`` when no reader was waiting: the next read returns `.wokenUp` at once.
        var isWakeUpPending = false
    }

    /// At this many buffered messages the poll thread pauses fetching.
    let capacity: Int
    /// At or below this many buffered messages fetching resumes.
    let resumeThreshold: Int
    private let state = Mutex(State())
    /// Called (outside the lock) when the reader drained a paused buffer to ``resumeThreshold``.
    private let onDrained: @Sendable () -> Void

    init(capacity: Int, onDrained: @escaping @Sendable () -> Void) {
        self.capacity = max(capacity, 1)
        self.resumeThreshold = max(capacity / 2, 0)
        self.onDrained = onDrained
    }

    /// Messages currently buffered (not yet taken by the reader).
    var count: Int { state.withLock { $0.count } }

    /// Messages taken by the reader so far.
    var takenCount: Int { state.withLock { $0.taken } }

    /// Whether the poll thread has partitions paused because the buffer was full.
    var isBackpressurePaused: Bool { state.withLock { $0.isBackpressurePaused } }

    /// Appends a batch (poll thread). Returns `true` when the buffer is now at or over capacity, so the poll
    /// thread should pause fetching.
    ///
    /// The batch is moved into the buffer (or to a waiting reader), never shared: a reader that finds its batch
    /// uniquely referenced can move its messages out, where a shared one would be copied message by message.
    func append(_ batch: consuming [KafkaConsumerMessage]) -> Bool {
        guard !batch.isEmpty else { return state.withLock { $0.count >= capacity } }
        enum Handoff {
            case none
            case message(CheckedContinuation<Read?, any Error>, KafkaConsumerMessage)
            case batch(CheckedContinuation<BatchRead?, any Error>, [KafkaConsumerMessage])
        }
        var incoming: [KafkaConsumerMessage]? = consume batch
        let (handoff, isFull): (Handoff, Bool) = state.withLock { state in
            guard state.completion == nil else { return (.none, false) }
            let batch = incoming.take()!
            let count = batch.count
            // A waiting reader means the buffer is empty: the batch goes to it directly.
            switch state.waiter.take() {
            case .message(let continuation)?:
                let first = batch[0]
                if count > 1 {
                    state.batches.append(batch)
                    state.head = 1
                    state.count = count - 1
                }
                state.taken &+= 1
                return (.message(continuation, first), state.count >= capacity)
            case .batch(let continuation, let limit, _)?:
                guard count > limit else {
                    state.taken &+= count
                    return (.batch(continuation, batch), false)  // whole, not copied
                }
                state.batches.append(batch)
                state.count += count
                var drained = false
                let taken = takeUpToLocked(limit, &state, drained: &drained)
                guard case .messages(let messages) = taken else { preconditionFailure("a non-empty buffer yields messages") }
                return (.batch(continuation, messages), state.count >= capacity)
            case nil:
                state.batches.append(batch)
                state.count += count
                return (.none, state.count >= capacity)
            }
        }
        switch handoff {
        case .none: break
        case .message(let continuation, let message): continuation.resume(returning: .message(message))
        case .batch(let continuation, let messages): continuation.resume(returning: .messages(messages))
        }
        return isFull
    }

    /// Records whether the poll thread paused fetching for backpressure.
    func setBackpressurePaused(_ paused: Bool) {
        state.withLock { $0.isBackpressurePaused = paused }
    }

    /// Drops buffered messages of partitions the consumer no longer owns. Returns how many were dropped.
    @discardableResult
    func removeMessages(of partitions: Set<KafkaTopicPartition>) -> Int {
        guard !partitions.isEmpty else { return 0 }
        return state.withLock { state in
            var remaining: [[KafkaConsumerMessage]] = []
            var kept = 0
            for (index, batch) in state.batches.enumerated() {
                let live = index == 0 ? batch[state.head...] : batch[...]
                let filtered = live.filter { !partitions.contains($0.topicPartition) }
                if !filtered.isEmpty { remaining.append(filtered) }
                kept += filtered.count
            }
            let removed = state.count - kept
            state.batches = remaining
            state.head = 0
            state.count = kept
            return removed
        }
    }

    /// Ends the stream; the reader gets the buffered messages first, then the end (or the error).
    func finish(_ completion: Completion) {
        let waiter: Waiter? = state.withLock { state in
            guard state.completion == nil else { return nil }
            state.completion = completion
            return state.batches.isEmpty ? state.waiter.take() : nil
        }
        waiter?.finish(completion)
    }

    /// Takes the next message, waiting for one; `nil` at the end of the stream or when the task is cancelled.
    func nextMessage() async throws -> KafkaConsumerMessage? {
        while true {
            switch try await read(wakeable: false) {
            case .message(let message)?: return message
            case .wokenUp?: continue
            case nil: return nil
            }
        }
    }

    /// Takes the next message, waiting for one or for ``wakeUpReader()``; `nil` at the end of the stream or when
    /// the task is cancelled.
    func read(wakeable: Bool) async throws -> Read? {
        var drained = false
        let immediate: Read?? = try state.withLock { state in
            if wakeable && state.isWakeUpPending {
                state.isWakeUpPending = false
                return .some(.wokenUp)
            }
            if state.count > 0 { return .some(.message(takeMessageLocked(&state, drained: &drained))) }
            return try endLocked(state).map { _ in .none }
        }
        if drained { onDrained() }
        if let immediate { return immediate }
        return try await waitForMessages(
            wakeable: wakeable, wokenUp: .wokenUp,
            take: { state, drained in .message(takeMessageLocked(&state, drained: &drained)) },
            waiter: { .message($0) })
    }

    /// Waits for the poll thread's next batch (or a wake-up, or the end): `take` takes from the messages once there
    /// are some, or `waiter` is what the poll thread hands them to. `nil` at the end or when the task is cancelled.
    private func waitForMessages<Value: Sendable>(
        wakeable: Bool, wokenUp: Value, take: (inout State, inout Bool) -> Value,
        waiter: (CheckedContinuation<Value?, any Error>) -> Waiter
    ) async throws -> Value? {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Value?, any Error>) in
                var drained = false
                let result: Result<Value?, any Error>? = state.withLock { state in
                    if wakeable && state.isWakeUpPending {
                        state.isWakeUpPending = false
                        return .success(wokenUp)
                    }
                    if state.count > 0 { return .success(take(&state, &drained)) }
                    do {
                        if try endLocked(state) != nil { return .success(nil) }
                    } catch { return .failure(error) }
                    if Task.isCancelled { return .success(nil) }
                    precondition(state.waiter == nil, "KafkaConsumer messages must be read from one task at a time")
                    state.waiter = waiter(continuation)
                    return nil
                }
                if drained { onDrained() }
                if let result { continuation.resume(with: result) }
            }
        } onCancel: {
            cancelWaiter()
        }
    }

    /// What ``readBatch(wakeable:limit:)`` returns.
    enum BatchRead: Sendable {
        case messages([KafkaConsumerMessage])
        case wokenUp
    }

    /// Takes up to `limit` messages at once, waiting for at least one (or for ``wakeUpReader()`` when `wakeable`);
    /// `nil` at the end of the stream or when the task is cancelled.
    func readBatch(wakeable: Bool, limit: Int) async throws -> BatchRead? {
        let limit = max(limit, 1)
        if let immediate = takeUpTo(limit, wakeable: wakeable) { return immediate }
        // Waiting for the poll thread's next batch, which comes here whole when it fits `limit`.
        return try await waitForMessages(
            wakeable: wakeable, wokenUp: .wokenUp,
            take: { state, drained in takeUpToLocked(limit, &state, drained: &drained) },
            waiter: { .batch($0, limit: limit, wakeable: wakeable) })
    }

    private func takeUpTo(_ limit: Int, wakeable: Bool) -> BatchRead? {
        var drained = false
        let result: BatchRead? = state.withLock { state in
            if wakeable && state.isWakeUpPending {
                state.isWakeUpPending = false
                return .wokenUp
            }
            guard state.count > 0 else { return nil }
            return takeUpToLocked(limit, &state, drained: &drained)
        }
        if drained { onDrained() }
        return result
    }

    /// Takes up to `limit` of the buffered messages (there is at least one).
    private func takeUpToLocked(_ limit: Int, _ state: inout State, drained: inout Bool) -> BatchRead {
        if state.head == 0, state.batches[0].count <= limit {
            // The common case: hand the poll thread's whole first batch over, alone, without copying it (a copy
            // costs a retain of each of a message's buffers, and later a release of the original's).
            let taken = state.batches.removeFirst()
            drained = takeCountLocked(&state, taken.count)
            return .messages(taken)
        }
        var taken: [KafkaConsumerMessage] = []
        taken.reserveCapacity(min(limit, state.count))
        while taken.count < limit, !state.batches.isEmpty {
            let batch = state.batches[0]
            let available = batch.count - state.head
            let wanted = min(available, limit - taken.count)
            taken.append(contentsOf: batch[state.head..<(state.head + wanted)])
            state.head += wanted
            if state.head == batch.count {
                state.batches.removeFirst()
                state.head = 0
            }
        }
        drained = takeCountLocked(&state, taken.count)
        return .messages(taken)
    }

    /// Makes a pending (or the next) wakeable read return `.wokenUp`.
    func wakeUpReader() {
        let waiter: Waiter? = state.withLock { state in
            switch state.waiter {
            case .message?, .batch(_, _, wakeable: true)?:
                return state.waiter.take()
            case .batch(_, _, wakeable: false)?, nil:
                state.isWakeUpPending = true
                return nil
            }
        }
        switch waiter {
        case .message(let continuation)?: continuation.resume(returning: .wokenUp)
        case .batch(let continuation, _, _)?: continuation.resume(returning: .wokenUp)
        case nil: break
        }
    }

    /// Takes every buffered message at once, waiting for at least one; `nil` at the end of the stream or when the
    /// task is cancelled.
    func nextBatch() async throws -> [KafkaConsumerMessage]? {
        guard case .messages(let batch)? = try await readBatch(wakeable: false, limit: .max) else { return nil }
        return batch
    }

    private func cancelWaiter() {
        let waiter = state.withLock { $0.waiter.take() }
        waiter?.finish(.finished)
    }

    /// `.some(())` when the stream has ended normally, `nil` while it goes on; throws when it failed.
    private func endLocked(_ state: State) throws -> Void? {
        switch state.completion {
        case .finished?: return ()
        case .failed(let error)?: throw error
        case nil: return nil
        }
    }

    private func takeMessageLocked(_ state: inout State, drained: inout Bool) -> KafkaConsumerMessage {
        let message = state.batches[0][state.head]
        state.head += 1
        if state.head == state.batches[0].count {
            state.batches.removeFirst()
            state.head = 0
        }
        drained = takeCountLocked(&state, 1)
        return message
    }

    /// Subtracts taken messages; true when that crossed the resume threshold while paused.
    private func takeCountLocked(_ state: inout State, _ taken: Int) -> Bool {
        let before = state.count
        state.count -= taken
        state.taken &+= taken
        // Wake the poll thread when a full buffer has room again (it waits for room) and when a stalled one is
        // drained to half (it resumes paused partitions then).
        let refillThreshold = capacity - capacity / 4
        return (before > refillThreshold && state.count <= refillThreshold)
            || (state.isBackpressurePaused && before > resumeThreshold && state.count <= resumeThreshold)
    }
}
