import Logging
import SluiceKafka
import SluiceKafkaStreams
import SluiceStreams
import Synchronization

/// Messages per second through committable source → `stage` → committer over `topic` (`count` messages, a fresh
/// group), from the first message to the last acknowledgement. Shared by the entity and persistence benchmarks.
/// - Parameter settings: adjusts the source settings (for example a rebalance hand-off).
func measureCommittablePipeline(
    _ servers: [String], topic: String, count: Int, logger: Logger,
    settings adjust: (KafkaSourceSettings) -> KafkaSourceSettings = { $0 },
    stage: Flow<CommittableMessage, CommittableOffset, Void>
) async throws -> Double {
    var consumer = KafkaConsumerConfiguration(bootstrapServers: servers, groupID: "bench-\(UInt32.random(in: 0...UInt32.max))")
    consumer.sessionTimeout = .seconds(6)
    var settings = KafkaSourceSettings(consumer: consumer, subscription: .topics([topic]))
    settings.maxInFlightPerPartition = 10_000
    settings = adjust(settings)
    let acknowledged = AtomicCounter()
    let first = Mutex<ContinuousClock.Instant?>(nil)
    let done = OneShotSignal()
    let (control, completion) = try KafkaSource.committable(settings, logger: logger)
        .map { message -> CommittableMessage in
            first.withLock { if $0 == nil { $0 = .now } }
            return message
        }
        .via(stage)
        .map { offset -> CommittableOffset in
            if acknowledged.increment() == count { done.fire() }
            return offset
        }
        .toMat(KafkaCommitter.sink(), Keep.both).run()
    await done.wait()
    let end = ContinuousClock.now
    _ = try await control.drainAndShutdown(completion, timeout: .seconds(30))
    return Double(count) / (end - first.withLock { $0! }).seconds
}
