public import SluiceKafka
public import SluiceStreams
import Synchronization

/// The materialized value of a Kafka source: stops it, drains it, shuts its consumer down, and reports metrics.
public final class KafkaConsumerControl: Sendable {
    private let consumer: KafkaConsumer
    private let stopped = Atomic<Bool>(false)
    let coordinator: KafkaCommitCoordinator?
    private let onShutdown: @Sendable () -> Void
    private let counters: SourceCounters

    init(
        consumer: KafkaConsumer, coordinator: KafkaCommitCoordinator?, counters: SourceCounters,
        onShutdown: @escaping @Sendable () -> Void
    ) {
        self.consumer = consumer
        self.coordinator = coordinator
        self.counters = counters
        self.onShutdown = onShutdown
    }

    /// Whether ``stop()`` was called: the source hands out nothing more.
    public var isStopped: Bool { stopped.load(ordering: .acquiring) }

    /// Stops handing out messages: the source completes, so downstream stages finish what they have and complete
    /// too. The consumer stays in its group (and can still commit) until ``shutdown()``.
    public func stop() {
        stopped.store(true, ordering: .releasing)
        consumer.wakeUpReader()
    }

    /// Leaves the group: partitions are revoked cleanly (in-flight messages get up to the source's `revokeWait`
    /// to be acknowledged and committed), the consumer is closed, and the source completes.
    public func shutdown() async {
        stop()
        await consumer.close()
        coordinator?.detach()
        onShutdown()
    }

    /// Leaves the group without committing anything more: in-flight and acknowledged-but-uncommitted messages are
    /// abandoned and will be delivered again to the partitions' next owners (at-least-once). For a stream that is
    /// being torn down after a failure, when finishing in-flight work is not wanted.
    public func abandon() async {
        coordinator?.abandonAll()
        await shutdown()
    }

    /// Drains and shuts down: stop taking new messages, wait (up to `timeout`) for the stream to complete (every
    /// in-flight message acknowledged and committed by the committer at the end of the stream), then leave the
    /// group. This is what a graceful shutdown (SIGTERM) calls.
    ///
    /// - Parameter streamCompletion: the completion of the stream this source feeds (usually the committer
    ///   sink's materialized value).
    /// - Returns: the stream's result.
    /// - Throws: the stream's error, or ``KafkaStreamsError/drainTimedOut(_:)`` when it did not complete in time
    ///   (what was not committed is delivered again after a restart).
    public func drainAndShutdown<T: Sendable>(_ streamCompletion: StreamCompletion<T>, timeout: Duration) async throws -> T {
        stop()
        let finished = await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                _ = try? await streamCompletion.value()
                return true
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return false
            }
            let first = await group.next()!
            group.cancelAll()
            return first
        }
        await shutdown()
        guard finished, let result = streamCompletion.result else { throw KafkaStreamsError.drainTimedOut(timeout) }
        return try result.get()
    }

    /// A snapshot of the source's metrics.
    public var metrics: KafkaSourceMetrics {
        KafkaSourceMetrics(
            messagesEmitted: counters.emitted, inFlight: coordinator?.inFlight ?? [:],
            committed: coordinator?.committedPositions ?? [:], pausedPartitions: consumer.pausedPartitions,
            bufferedMessages: consumer.bufferedMessageCount + counters.held, assignment: consumer.assignment)
    }

    /// The consumer behind the source, for queries such as committed offsets and watermarks.
    public var kafkaConsumer: KafkaConsumer { consumer }
}

/// What a Kafka source reports.
public struct KafkaSourceMetrics: Sendable {
    /// Messages handed downstream so far.
    public var messagesEmitted: Int
    /// Messages handed out but not yet acknowledged, per partition (committable sources).
    public var inFlight: [KafkaTopicPartition: Int]
    /// The last committed position per partition (committable sources).
    public var committed: [KafkaTopicPartition: Int64]
    /// Partitions paused in librdkafka (by backpressure or by the in-flight limit).
    public var pausedPartitions: Set<KafkaTopicPartition>
    /// Messages held in the process but not handed out yet (hand-over buffer plus held partitions).
    public var bufferedMessages: Int
    /// The partitions currently assigned.
    public var assignment: Set<KafkaTopicPartition>
}

/// Errors of the Kafka stream stages.
public enum KafkaStreamsError: Error, Sendable, CustomStringConvertible {
    /// The stream did not complete within the drain timeout.
    case drainTimedOut(Duration)

    public var description: String {
        switch self {
        case .drainTimedOut(let timeout):
            "the stream did not finish its in-flight messages within \(timeout); the consumer was shut down anyway "
                + "and uncommitted messages will be delivered again"
        }
    }
}

/// Counters shared by a source and its control.
final class SourceCounters: Sendable {
    private let emittedCount = Atomic<Int>(0)
    private let heldCount = Atomic<Int>(0)
    func emit(_ count: Int = 1) { emittedCount.wrappingAdd(count, ordering: .relaxed) }
    func setHeld(_ count: Int) { heldCount.store(count, ordering: .relaxed) }
    var emitted: Int { emittedCount.load(ordering: .relaxed) }
    var held: Int { heldCount.load(ordering: .relaxed) }
}
