public import Logging
public import SluiceActors
public import SluiceKafka
public import SluiceKafkaStreams
public import SluicePersistence
public import SluiceStreams
import Synchronization

/// Settings of ``PersistentShardedEntities``.
public struct PersistentEntitiesSettings: Sendable {
    /// The entity type: the name of the region and the first half of every entity's ``PersistenceID``.
    public var entityType: String
    /// How the region keeps entities alive (passivation, mailbox size, supervision). Supervision defaults to
    /// restart: an entity whose journal write failed is started again and recovers from the journal.
    public var region = ShardRegionSettings()

    public init(entityType: String) { self.entityType = entityType }
}

/// What persistent sharded entities have done since they started.
public struct PersistentEntityStatistics: Sendable, Hashable {
    /// Commands handled (including those skipped as already applied).
    public var commandsHandled = 0
    /// Commands skipped because their input offset was applied already: redeliveries after a crash or rebalance.
    public var skippedAsAlreadyApplied = 0
    /// Events persisted.
    public var eventsPersisted = 0
    /// Entity recoveries (entity starts).
    public var recoveries = 0
    /// Events replayed by those recoveries.
    public var eventsReplayed = 0
    /// Partition restores from a ``PartitionedJournal`` that succeeded, and that failed.
    public var partitionRestores = 0
    public var partitionRestoreFailures = 0
}

/// Event-sourced entities sharded by Kafka partition: Pekko's cluster sharding plus persistence, with Kafka's consumer
/// group as the cluster.
///
/// Each input message becomes a command to the entity its id names, carrying its input offset, in the shard of its
/// partition. The entity recovers from the journal before its first command, persists the command's events (with the
/// input offset) and only then reports the message processed, so its offset is committed only after the events are
/// durable. A message redelivered after a crash is recognised by its input offset and skipped: state is
/// effectively-once over at-least-once delivery.
///
/// With a ``PartitionedJournal`` (the Kafka changelog), an assigned partition's entities are restored before its
/// first message and released after revocation, so state moves with the partition between instances. With a journal
/// that holds all entities (SQLite, one file per instance) state stays on the instance: run one instance, or give each
/// instance fixed partitions.
///
/// ```swift
/// let counters = try PersistentShardedEntities(system: system, settings: .init(entityType: "counter"),
///                                              journal: journal) { id in counterBehavior(id) }
/// let (control, done) = try KafkaSource.committable(counters.handOff(sourceSettings))
///     .via(counters.flow { message in try decodeCommand(message) })
///     .map { delivery in delivery.message.committableOffset }   // after checking delivery.isProcessed
///     .toMat(KafkaCommitter.sink(), Keep.both).run()
/// ```
public final class PersistentShardedEntities<Command: Sendable, Event: Sendable, State: Sendable, Reply: Sendable>:
    Sendable
{
    /// The message an entity actor takes.
    public typealias Envelope = EntityEnvelope<Command, Reply>

    /// The entity type.
    public let entityType: String
    /// Where the entities persist.
    public let journal: any Journal
    /// The region running the entity actors.
    public let region: ShardRegion<Envelope>
    private let counters: StatisticsBox
    private let owned = Mutex<Set<Int32>>([])
    private let logger: Logger

    /// Creates the entities' region (no entity runs until a message or ``EntityRef`` reaches it).
    /// - Parameter behavior: the behaviour of the entity with the given id.
    public init(
        system: ActorSystem, settings: PersistentEntitiesSettings, journal: any Journal,
        logger: Logger = Logger(label: "sluice.sharding.persistent"),
        behavior: @escaping @Sendable (PersistenceID) -> EventSourcedBehavior<Command, Event, State, Reply>
    ) throws {
        let counters = StatisticsBox()
        let entityType = settings.entityType
        self.entityType = entityType
        self.journal = journal
        self.counters = counters
        self.logger = logger
        self.region = try ShardRegion(
            system: system, typeKey: EntityTypeKey<Envelope>(entityType), settings: settings.region
        ) { entityID in
            behavior(PersistenceID(entityType: entityType, entityID: entityID)).actorBehavior(
                journal: journal,
                onRecovered: { recovery in
                    counters.add(.recoveries, 1)
                    counters.add(.eventsReplayed, recovery.eventsReplayed)
                },
                onResult: { result in
                    counters.add(.commandsHandled, 1)
                    counters.add(.eventsPersisted, result.eventsPersisted)
                    if result.skippedAsAlreadyApplied { counters.add(.skippedAsAlreadyApplied, 1) }
                })
        }
    }

    /// What the entities have done so far.
    public var statistics: PersistentEntityStatistics { counters.snapshot }

    /// The input partitions this instance owns now (assigned, and restored for a ``PartitionedJournal``).
    public var ownedPartitions: Set<Int32> { owned.withLock { $0 } }

    /// Source settings that, on assignment, restore the partitions' entities from a ``PartitionedJournal`` and then
    /// start their shards, and on revocation stop the shards' entities (after their in-flight messages were finished
    /// and committed) and release the partitions from the journal.
    ///
    /// A partition whose restore fails keeps its shard stopped: its messages come out of ``flow(decode:)`` as
    /// ``SluiceActors/MessageOutcome/dropped`` (never processed on empty state); fail the stream on them, and the
    /// restart restores again.
    public func handOff(_ settings: KafkaSourceSettings) -> KafkaSourceSettings {
        var settings = settings
        let previousAssigned = settings.onAssigned
        let previousRevoked = settings.onRevoked
        settings.onAssigned = { [self] partitions in
            await assign(partitions.map(\.partition))
            await previousAssigned?(partitions)
        }
        settings.onRevoked = { [self] partitions in
            await revoke(partitions.map(\.partition))
            await previousRevoked?(partitions)
        }
        return settings
    }

    /// Takes over partitions: restores them (for a ``PartitionedJournal``), then starts their shards.
    /// ``handOff(_:)`` calls it; call it yourself only when partitions are assigned by other means.
    public func assign(_ partitions: [Int32]) async {
        guard !partitions.isEmpty else { return }
        if let partitioned = journal as? any PartitionedJournal {
            do {
                let restored = try await partitioned.restore(partitions: partitions)
                counters.add(.partitionRestores, partitions.count)
                logger.info(
                    "restored entities of partitions from the journal",
                    metadata: [
                        "entity-type": "\(entityType)", "journal": "\(journal.name)", "partitions": "\(partitions)",
                        "entities": "\(restored.entities)", "events": "\(restored.events)",
                        "duration": "\(restored.duration)",
                    ])
            } catch {
                counters.add(.partitionRestoreFailures, partitions.count)
                logger.error(
                    "restoring partitions failed: their messages are refused until they are assigned again",
                    metadata: [
                        "entity-type": "\(entityType)", "partitions": "\(partitions)", "error": "\(error)",
                    ])
                for partition in partitions { await region.stopShard(partition) }
                return
            }
        }
        for partition in partitions { region.startShard(partition) }
        owned.withLock { $0.formUnion(partitions) }
    }

    /// Gives up partitions: stops their entities (after their current messages), then releases them from a
    /// ``PartitionedJournal``. ``handOff(_:)`` calls it.
    public func revoke(_ partitions: [Int32]) async {
        guard !partitions.isEmpty else { return }
        owned.withLock { $0.subtract(partitions) }
        for partition in partitions { await region.stopShard(partition) }
        (journal as? any PartitionedJournal)?.release(partitions: partitions)
    }

    /// The stage between the committable source and the committer: each message becomes a command (by `decode`) to
    /// the entity `entityID` names, with the message's input offset; the entity's outcome comes out once its events
    /// are durable. Per-entity order is kept; entities run in parallel with at most `parallelism` messages in flight.
    ///
    /// Commit processed messages; dead-letter (then commit) failed ones, or fail the stream, as the application
    /// requires. A message skipped as already applied is processed.
    public func flow(
        entityID: EntityIDExtractor = .messageKey, parallelism: Int = 1000,
        decode: @escaping @Sendable (KafkaConsumerMessage) throws -> Command
    ) -> Flow<CommittableMessage, EntityDelivery, Void> {
        flow(entityID: entityID, parallelism: parallelism) { message in
            EntityEnvelope(try decode(message), inputOffset: message.inputOffset)
        }
    }

    /// Like ``flow(entityID:parallelism:decode:)``, with `envelope` building the whole envelope (for a reply
    /// target carried by the message).
    public func flow(
        entityID: EntityIDExtractor = .messageKey, parallelism: Int = 1000,
        envelope: @escaping @Sendable (KafkaConsumerMessage) throws -> Envelope
    ) -> Flow<CommittableMessage, EntityDelivery, Void> {
        ShardedEntities.flow(region: region, entityID: entityID, parallelism: parallelism, decode: envelope)
    }

    /// Stops every entity (their current messages finish first).
    public func shutdown() async {
        await region.shutdown()
    }
}

/// The statistics, shared by the region's entities: a counter each, added to without a lock (every command adds
/// to them, from whichever thread completes it). A read takes each counter in turn, not all at one instant.
private final class StatisticsBox: Sendable {
    enum Counter {
        case commandsHandled, skippedAsAlreadyApplied, eventsPersisted, recoveries, eventsReplayed
        case partitionRestores, partitionRestoreFailures
    }

    private let commandsHandled = Atomic<Int>(0)
    private let skippedAsAlreadyApplied = Atomic<Int>(0)
    private let eventsPersisted = Atomic<Int>(0)
    private let recoveries = Atomic<Int>(0)
    private let eventsReplayed = Atomic<Int>(0)
    private let partitionRestores = Atomic<Int>(0)
    private let partitionRestoreFailures = Atomic<Int>(0)

    func add(_ counter: Counter, _ amount: Int) {
        guard amount != 0 else { return }
        switch counter {
        case .commandsHandled: commandsHandled.wrappingAdd(amount, ordering: .relaxed)
        case .skippedAsAlreadyApplied: skippedAsAlreadyApplied.wrappingAdd(amount, ordering: .relaxed)
        case .eventsPersisted: eventsPersisted.wrappingAdd(amount, ordering: .relaxed)
        case .recoveries: recoveries.wrappingAdd(amount, ordering: .relaxed)
        case .eventsReplayed: eventsReplayed.wrappingAdd(amount, ordering: .relaxed)
        case .partitionRestores: partitionRestores.wrappingAdd(amount, ordering: .relaxed)
        case .partitionRestoreFailures: partitionRestoreFailures.wrappingAdd(amount, ordering: .relaxed)
        }
    }

    var snapshot: PersistentEntityStatistics {
        var statistics = PersistentEntityStatistics()
        statistics.commandsHandled = commandsHandled.load(ordering: .relaxed)
        statistics.skippedAsAlreadyApplied = skippedAsAlreadyApplied.load(ordering: .relaxed)
        statistics.eventsPersisted = eventsPersisted.load(ordering: .relaxed)
        statistics.recoveries = recoveries.load(ordering: .relaxed)
        statistics.eventsReplayed = eventsReplayed.load(ordering: .relaxed)
        statistics.partitionRestores = partitionRestores.load(ordering: .relaxed)
        statistics.partitionRestoreFailures = partitionRestoreFailures.load(ordering: .relaxed)
        return statistics
    }
}

extension KafkaConsumerMessage {
    /// This message's position as an entity's input offset.
    public var inputOffset: InputOffset { InputOffset(topic: topic, partition: partition, offset: offset) }
}
