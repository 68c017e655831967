public import SluiceActors
public import SluiceKafka
public import SluiceKafkaStreams
public import SluiceStreams

/// What became of one message handed to its entity.
public struct EntityDelivery: Sendable {
    /// The message, with its committable offset.
    public let message: CommittableMessage
    /// Whether the entity processed it, failed on it (after supervision), or never got it.
    public let outcome: MessageOutcome

    /// Whether the entity processed the message.
    public var isProcessed: Bool { if case .processed = outcome { true } else { false } }
}

/// The stream stage between a committable source and a committer that hands each message to its entity (Pekko's
/// cluster sharding, with Kafka partitions as shards).
public enum ShardedEntities {
    /// Hands each message to the entity its id names (in the shard of its partition) and emits, as entities finish,
    /// what became of it. Per-entity order is kept; different entities run in parallel, with at most `parallelism`
    /// messages in flight in all.
    ///
    /// Pass processed messages' offsets to a committer; route failed ones to a dead-letter sink first, then commit
    /// them too, so one poison message never blocks its partition.
    ///
    /// - Parameters:
    ///   - region: the region running the entities. Its shards are the source's partitions of one topic: wire
    ///     ``handOff(region:)`` into the source settings so a revoked partition's entities stop before it moves.
    ///   - decode: turns a message into the entity's message type; a decoding error is a failed outcome.
    public static func flow<Message: Sendable>(
        region: ShardRegion<Message>, entityID: EntityIDExtractor = .messageKey, parallelism: Int = 1000,
        decode: @escaping @Sendable (KafkaConsumerMessage) throws -> Message
    ) -> Flow<CommittableMessage, EntityDelivery, Void> {
        Flow.fromElements { upstream in
            .makeChunked {
                let window = AsyncWindow<EntityDelivery>(capacity: parallelism, ordered: false)
                let pump = WindowPump(window: window) {
                    for try await committable in upstream {
                        guard let slot = await window.reserve() else { return }
                        let message = committable.message
                        let decoded: Message
                        let id: String
                        do {
                            id = try entityID.entityID(of: message)
                            decoded = try decode(message)
                        } catch {
                            window.fill(slot, with: EntityDelivery(message: committable, outcome: .failed(error)))
                            continue
                        }
                        await region.deliver(decoded, to: id, shard: message.partition) { outcome in
                            window.fill(slot, with: EntityDelivery(message: committable, outcome: outcome))
                        }
                    }
                }
                return { try await pump.nextChunk(maxCount: min(parallelism, windowChunkSize)) }
            }
        }
    }

    /// Source settings that start a region's shards when their partitions are assigned and stop their entities
    /// (after in-flight messages were finished and committed) before revoked partitions move to another instance.
    public static func handOff<Message: Sendable>(
        _ settings: KafkaSourceSettings, region: ShardRegion<Message>
    ) -> KafkaSourceSettings {
        var settings = settings
        let previousAssigned = settings.onAssigned
        let previousRevoked = settings.onRevoked
        settings.onAssigned = { partitions in
            for partition in partitions { region.startShard(partition.partition) }
            await previousAssigned?(partitions)
        }
        settings.onRevoked = { partitions in
            for partition in partitions { await region.stopShard(partition.partition) }
            await previousRevoked?(partitions)
        }
        return settings
    }
}
