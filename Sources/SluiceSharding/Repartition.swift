public import SluiceKafka
public import SluiceKafkaStreams
public import SluiceStreams

/// Routing messages whose entity id is not their key through a topic keyed by entity id (as Kafka Streams
/// does), so that each entity's messages land in one partition and the entity lives in exactly one shard.
public enum Repartition {
    /// The header carrying the original key on repartitioned records.
    public static let originalKeyHeader = "sluice.original-key"

    /// The conventional repartition topic name for a consumer group and entity type.
    public static func topicName(group: String, entityType: String) -> String {
        "\(group)-\(entityType)-repartition"
    }

    /// Creates the repartition topic with `partitions` partitions if it is missing.
    /// - Throws: ``RepartitionError/partitionCountMismatch(topic:expected:actual:)`` if it exists with another
    ///   partition count (entities would no longer match their input partitions).
    public static func ensureTopic(_ name: String, partitions: Int32, admin: KafkaAdminClient) async throws {
        do {
            try await admin.createTopic(KafkaTopicSpecification(name: name, partitions: partitions))
        } catch let error as KafkaError where error.code == .topicExists {
            let existing = try await admin.describeTopic(name)
            guard existing.partitions.count == Int(partitions) else {
                throw RepartitionError.partitionCountMismatch(topic: name, expected: partitions, actual: Int32(existing.partitions.count))
            }
        }
    }

    /// Re-produces each message to `topic` keyed by its entity id (value and headers kept, the original key in
    /// ``originalKeyHeader``) and emits the input's committable offset once the new record is durably produced:
    /// commit those offsets, and consume `topic` with ``ShardedEntities`` keyed by message key.
    public static func flow(
        producer: KafkaProducer, topic: String, entityID: EntityIDExtractor, parallelism: Int = 50_000
    ) -> Flow<CommittableMessage, CommittableOffset, Void> {
        Flow<CommittableMessage, CommittableMessage, Void>()
            .map { committable -> ProducerEnvelope<CommittableOffset> in
                let message = committable.message
                guard let id = try? entityID.entityID(of: message) else {
                    // No entity id: nothing to route; the offset is passed on (and committed) as is.
                    return .passThrough(committable.committableOffset)
                }
                var headers = message.headers
                if let key = message.key { headers.append(KafkaHeader(name: originalKeyHeader, value: key)) }
                return .single(
                    KafkaProducerMessage(
                        topic: topic, key: Array(id.utf8), value: message.value, headers: headers,
                        timestampMilliseconds: message.timestamp?.milliseconds),
                    committable.committableOffset)
            }
            .via(KafkaProducerStages.flow(producer: producer, parallelism: parallelism))
            .map { $0.passThrough }
    }
}

/// Errors of repartitioning.
public enum RepartitionError: Error, Sendable, CustomStringConvertible {
    case partitionCountMismatch(topic: String, expected: Int32, actual: Int32)

    public var description: String {
        switch self {
        case .partitionCountMismatch(let topic, let expected, let actual):
            "repartition topic '\(topic)' exists with \(actual) partitions, but the input has \(expected): delete it or "
                + "give it \(expected) partitions, so that entities stay in the shard of their input partition"
        }
    }
}
