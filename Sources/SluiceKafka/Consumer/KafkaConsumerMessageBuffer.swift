import Synchronization

/// The bounded hand-over buffer between a consumer's poll thread and the task iterating its messages.
///
/// The poll thread appends whole batches (one lock per batch, not per message); the iterator takes whole
/// batches. When the buffer holds ``capacity`` messages or more the poll thread pauses the assignment in
/// librdkafka; once the iterator has drained it to ``resumeThreshold`` it asks the poll thread to resume.
final class KafkaConsumerMessageBuffer: Sendable {
    enum Completion: Sendable {
        case finished
        case failed(KafkaError)
    }

    private struct State {
        var batches: [[KafkaConsumerMessage]] = []
        var count = 0
        var completion: Completion?
        var waiters: [CheckedContinuation<[KafkaConsumerMessage]?, any Error>] = []
        /// Set by the poll thread when it paused partitions because the buffer was full.
        var isBackpressurePaused = false
    }

    /// At this many buffered messages the poll thread pauses fetching.
    let capacity: Int
    /// At or below this many buffered messages fetching resumes.
    let resumeThreshold: Int
    private let state = Mutex(State())
    /// Called (outside the lock) when the iterator drained a paused buffer below ``resumeThreshold``.
    private let onDrained: @Sendable () -> Void

    init(capacity: Int, onDrained: @escaping @Sendable () -> Void) {
        self.capacity = max(capacity, 1)
        self.resumeThreshold = max(capacity / 2, 0)
        self.onDrained = onDrained
    }

    /// Messages currently buffered (not yet taken by the iterator).
    var count: Int { state.withLock { $0.count } }

    /// Whether the poll thread has partitions paused because the buffer was full.
    var isBackpressurePaused: Bool { state.withLock { $0.isBackpressurePaused } }

    /// Appends a batch (poll thread). Returns `true` when the buffer is now at or over capacity and the
    /// poll thread should pause fetching.
    func append(_ batch: [KafkaConsumerMessage]) -> Bool {
        guard !batch.isEmpty else { return state.withLock { $0.count >= capacity } }
        let (waiter, isFull): (CheckedContinuation<[KafkaConsumerMessage]?, any Error>?, Bool) = state.withLock { state in
            guard state.completion == nil else { return (nil, false) }
            if !state.waiters.isEmpty {
                return (state.waiters.removeFirst(), false)
            }
            state.batches.append(batch)
            state.count += batch.count
            return (nil, state.count >= capacity)
        }
        waiter?.resume(returning: batch)
        return isFull
    }

    /// Records whether the poll thread paused fetching for backpressure. Returns whether, given the current
    /// count, fetching should resume right away (the iterator drained the buffer meanwhile).
    func setBackpressurePaused(_ paused: Bool) -> Bool {
        state.withLock { state in
            state.isBackpressurePaused = paused
            return paused && state.count <= resumeThreshold
        }
    }

    /// Drops buffered messages of partitions the consumer no longer owns. Returns how many were dropped.
    @discardableResult
    func removeMessages(of partitions: Set<KafkaTopicPartition>) -> Int {
        guard !partitions.isEmpty else { return 0 }
        return state.withLock { state in
            var removed = 0
            state.batches = state.batches.compactMap { batch in
                let kept = batch.filter { !partitions.contains($0.topicPartition) }
                removed += batch.count - kept.count
                return kept.isEmpty ? nil : kept
            }
            state.count -= removed
            return removed
        }
    }

    /// Ends the stream; the iterator sees the buffered messages first, then the end (or the error).
    func finish(_ completion: Completion) {
        let waiters = state.withLock { state -> [CheckedContinuation<[KafkaConsumerMessage]?, any Error>] in
            guard state.completion == nil else { return [] }
            state.completion = completion
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters {
            switch completion {
            case .finished: waiter.resume(returning: nil)
            case .failed(let error): waiter.resume(throwing: error)
            }
        }
    }

    /// Takes the next batch, waiting for one; `nil` at the end of the stream or when the task is cancelled.
    func nextBatch() async throws -> [KafkaConsumerMessage]? {
        if let immediate = try takeBatchIfAvailable() { return immediate }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                enum Action { case resume([KafkaConsumerMessage]?), fail(KafkaError), wait }
                var drained = false
                let action: Action = state.withLock { state in
                    if !state.batches.isEmpty {
                        let batch = state.batches.removeFirst()
                        drained = takeCountLocked(&state, batch.count)
                        return .resume(batch)
                    }
                    switch state.completion {
                    case .finished?: return .resume(nil)
                    case .failed(let error)?: return .fail(error)
                    case nil:
                        if Task.isCancelled { return .resume(nil) }
                        state.waiters.append(continuation)
                        return .wait
                    }
                }
                if drained { onDrained() }
                switch action {
                case .resume(let batch): continuation.resume(returning: batch)
                case .fail(let error): continuation.resume(throwing: error)
                case .wait: break
                }
            }
        } onCancel: {
            let waiters = state.withLock { state in
                defer { state.waiters = [] }
                return state.waiters
            }
            for waiter in waiters { waiter.resume(returning: nil) }
        }
    }

    private func takeBatchIfAvailable() throws -> [KafkaConsumerMessage]? {
        var drained = false
        let batch: [KafkaConsumerMessage]? = try state.withLock { state in
            if !state.batches.isEmpty {
                let batch = state.batches.removeFirst()
                drained = takeCountLocked(&state, batch.count)
                return batch
            }
            if case .failed(let error)? = state.completion, state.batches.isEmpty { throw error }
            return nil
        }
        if drained { onDrained() }
        return batch
    }

    /// Subtracts taken messages; true when that crossed the resume threshold while paused.
    private func takeCountLocked(_ state: inout State, _ taken: Int) -> Bool {
        let before = state.count
        state.count -= taken
        return state.isBackpressurePaused && before > resumeThreshold && state.count <= resumeThreshold
    }

    var isFinished: Bool { state.withLock { $0.completion != nil && $0.batches.isEmpty } }
}
