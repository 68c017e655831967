import Logging
import SluiceActors
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

/// A region of entities that sum their messages, all kept alive (no passivation): the non-persistent entity the
/// entity and persistence benchmarks compare with.
func makeSumRegion(system: ActorSystem, keys: Int) throws -> ShardRegion<Int> {
    var settings = ShardRegionSettings()
    settings.maxLiveEntities = max(keys, 1000)
    settings.idleTimeout = nil
    return try ShardRegion(system: system, typeKey: EntityTypeKey<Int>("sum"), settings: settings) { _ in
        let total = Mutex(0)
        return Behaviors.receiveMessage { value in
            total.withLock { $0 += value }
            return .same
        }
    }
}
