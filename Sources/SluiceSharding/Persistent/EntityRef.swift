import Foundation
import SluiceActors
public import SluiceKafka
public import SluiceKafkaStreams
import SluicePersistence
public import SluiceStreams

/// A handle on one entity wherever it lives (location transparency).
///
/// When this instance owns the entity's partition, a message is delivered to the entity here; otherwise it is
/// produced to the entity's input topic, keyed by the entity id and in the partition the input's partitioner gives
/// it, so Kafka routes it to the owner, whose entity flow decodes it (``PersistentShardedEntities/flow(messenger:entityID:parallelism:decode:)``).
///
/// Guarantees:
/// - ``tell(_:)`` returns once the message is durable: the broker acknowledged it (it is then at-least-once: the
///   owner commits it only after handling it and skips it if it comes again), or, delivered here, the entity
///   persisted its events.
/// - Messages from one sender to one entity arrive in the order sent while the partition's owner does not change
///   (each tell waits for the previous one's acknowledgement; one partition is read in order). A tell that races a
///   rebalance may overtake an earlier one that went through Kafka.
/// - ``ask(_:timeout:)`` is a tell with a reply; see ``EntityMessenger`` for what happens to replies on a crash.
public struct EntityRef<Command: Codable & Sendable, Reply: Codable & Sendable>: Sendable {
    /// The entity type.
    public let entityType: String
    /// The entity's id (its key in the input topic).
    public let entityID: String
    /// The entities' input topic.
    public let inputTopic: String
    /// How the input topic's producers partition entity ids.
    public let partitioner: KafkaPartitioner
    private let messenger: EntityMessenger
    private let local: LocalDelivery?

    /// Delivers to an entity on this instance if it owns `partition`; `nil`: not owned here (or no longer).
    typealias LocalDelivery = @Sendable (EntityEnvelope<Command, Reply>, String, Int32) async -> MessageOutcome?

    /// A reference from an instance that runs none of these entities: every message goes through Kafka.
    public init(
        entityType: String, entityID: String, inputTopic: String, partitioner: KafkaPartitioner = .consistentRandom,
        messenger: EntityMessenger
    ) {
        self.init(
            entityType: entityType, entityID: entityID, inputTopic: inputTopic, partitioner: partitioner,
            messenger: messenger, local: nil)
    }

    init(
        entityType: String, entityID: String, inputTopic: String, partitioner: KafkaPartitioner,
        messenger: EntityMessenger, local: LocalDelivery?
    ) {
        self.entityType = entityType
        self.entityID = entityID
        self.inputTopic = inputTopic
        self.partitioner = partitioner
        self.messenger = messenger
        self.local = local
    }

    /// The entity's partition of the input topic.
    public func partition() async throws(EntityMessagingError) -> Int32 {
        let count = try await messenger.partitionCount(of: inputTopic)
        return partitioner.partition(forUTF8Key: entityID, partitionCount: count) ?? 0
    }

    /// Sends `command` to the entity; returns once it is durable (see the type's guarantees).
    /// - Throws: ``EntityMessagingError`` with `.entityFailed` (handled here, and the entity failed on it), `.codec`
    ///   or `.kafka`.
    public func tell(_ command: Command) async throws(EntityMessagingError) {
        let partition = try await partition()
        if let local, let outcome = await local(EntityEnvelope(command), entityID, partition) {
            if case .failed(let error) = outcome {
                throw EntityMessagingError(.entityFailed, "entity \(entityType)|\(entityID) failed on the message: \(error)")
            }
            return
        }
        try await messenger.produce(try message(command, partition: partition, correlationID: nil))
    }

    /// Sends `command` and waits for the entity's reply, at most `timeout`.
    /// - Throws: ``EntityMessagingError`` with `.askTimedOut` (the command may still be applied), `.entityFailed`,
    ///   `.codec`, `.kafka` or `.closed`.
    public func ask(_ command: Command, timeout: Duration) async throws(EntityMessagingError) -> Reply {
        let partition = try await partition()
        let correlationID = UUID().uuidString
        let pending = PendingReply()
        if let local {
            let replyTo = ActorRef<Reply>.adapter(path: "/entities/\(entityType)/\(entityID)/$ask") { reply in
                do throws(EntityMessagingError) {
                    pending.complete(.success(try EntityWireFormat.encode(reply)))
                } catch {
                    pending.complete(.failure(error))
                }
            }
            if let outcome = await local(EntityEnvelope(command, replyTo: replyTo), entityID, partition) {
                if case .failed(let error) = outcome {
                    throw EntityMessagingError(
                        .entityFailed, "entity \(entityType)|\(entityID) failed on the message: \(error)")
                }
                return try await reply(from: pending, timeout: timeout)
            }
        }
        messenger.expectReply(correlationID, pending)
        do {
            try await messenger.produce(try message(command, partition: partition, correlationID: correlationID))
        } catch {
            messenger.forget(correlationID)
            throw error
        }
        defer { messenger.forget(correlationID) }
        return try await reply(from: pending, timeout: timeout)
    }

    private func reply(from pending: PendingReply, timeout: Duration) async throws(EntityMessagingError) -> Reply {
        switch await pending.value(
            timeout: timeout, onTimeout: .failure(EntityMessagingError(.askTimedOut, "no reply within \(timeout)")))
        {
        case .success(let payload): return try EntityWireFormat.decode(Reply.self, from: payload)
        case .failure(var error):
            if error.code == .askTimedOut {
                error.message = "no reply from entity \(entityType)|\(entityID) within \(timeout)"
            }
            throw error
        }
    }

    private func message(_ command: Command, partition: Int32, correlationID: String?) throws(EntityMessagingError)
        -> KafkaProducerMessage
    {
        var headers = [
            KafkaHeader(name: EntityMessageHeaders.entityType, value: Array(entityType.utf8)),
            KafkaHeader(name: EntityMessageHeaders.messageType, value: Array(EntityWireFormat.tag(of: Command.self).utf8)),
        ]
        if let correlationID {
            headers.append(KafkaHeader(name: EntityMessageHeaders.replyTo, value: Array(messenger.replyTopic.utf8)))
            headers.append(KafkaHeader(name: EntityMessageHeaders.correlationID, value: Array(correlationID.utf8)))
        }
        return KafkaProducerMessage(
            topic: inputTopic, partition: partition, key: Array(entityID.utf8),
            value: try EntityWireFormat.encode(command), headers: headers)
    }
}

/// How commands and replies travel through Kafka: JSON, tagged with the Swift type name.
enum EntityWireFormat {
    static func tag<T>(of type: T.Type) -> String { String(describing: type) }

    static func encode<T: Encodable>(_ value: T) throws(EntityMessagingError) -> [UInt8] {
        do {
            return Array(try JSONEncoder().encode(value))
        } catch {
            throw EntityMessagingError(.codec, "\(tag(of: T.self)) could not be encoded as JSON: \(error)")
        }
    }

    static func decode<T: Decodable>(_ type: T.Type, from payload: [UInt8]) throws(EntityMessagingError) -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(payload))
        } catch {
            throw EntityMessagingError(.codec, "a \(tag(of: T.self)) could not be decoded from JSON: \(error)")
        }
    }
}

extension PersistentShardedEntities where Command: Codable, Reply: Codable {
    /// A handle on the entity `entityID`: delivered here while this instance owns its partition of `inputTopic`,
    /// through Kafka otherwise.
    public func entityRef(
        _ entityID: String, inputTopic: String, partitioner: KafkaPartitioner = .consistentRandom,
        messenger: EntityMessenger
    ) -> EntityRef<Command, Reply> {
        EntityRef(
            entityType: entityType, entityID: entityID, inputTopic: inputTopic, partitioner: partitioner,
            messenger: messenger
        ) { [self] envelope, id, partition in
            guard ownedPartitions.contains(partition) else { return nil }
            let outcome = Promise<MessageOutcome>()
            await region.deliver(envelope, to: id, shard: partition) { outcome.complete($0) }
            let result = await outcome.value
            if case .dropped = result { return nil }  // the shard stopped meanwhile: go through Kafka
            return result
        }
    }

    /// The entity stage for an input topic that carries messages sent by ``EntityRef`` as well as the
    /// application's own: a message with a ``EntityMessageHeaders/messageType`` header is decoded as JSON (and
    /// refused if its ``EntityMessageHeaders/entityType`` is another one); others go through `decode`. An ask's
    /// reply goes to the asker's reply topic through `messenger`; if the entity fails on an ask, the asker gets a
    /// failed reply at once.
    public func flow(
        messenger: EntityMessenger, entityID: EntityIDExtractor = .messageKey, parallelism: Int = 1000,
        decode: @escaping @Sendable (KafkaConsumerMessage) throws -> Command = { message in
            throw EntityMessagingError(
                .codec, "\(message.topic)[\(message.partition)]@\(message.offset) is not a message sent to an entity")
        }
    ) -> Flow<CommittableMessage, EntityDelivery, Void> {
        let entityType = self.entityType
        return flow(entityID: entityID, parallelism: parallelism) { message in
            guard let tag = message.header(EntityMessageHeaders.messageType) else {
                return EntityEnvelope(try decode(message), inputOffset: message.inputOffset)
            }
            let target = message.header(EntityMessageHeaders.entityType)
            guard target == nil || target == entityType else {
                throw EntityMessagingError(
                    .codec, "the message is for entity type '\(target ?? "")', not '\(entityType)'")
            }
            guard tag == EntityWireFormat.tag(of: Command.self) else {
                throw EntityMessagingError(
                    .codec, "the message is a '\(tag)'; entities of type '\(entityType)' take '\(EntityWireFormat.tag(of: Command.self))'")
            }
            let command = try EntityWireFormat.decode(Command.self, from: message.value ?? [])
            var envelope = EntityEnvelope<Command, Reply>(command, inputOffset: message.inputOffset)
            if let replyTopic = message.header(EntityMessageHeaders.replyTo),
                let correlationID = message.header(EntityMessageHeaders.correlationID)
            {
                envelope.replyTo = ActorRef<Reply>.adapter(path: "/kafka/\(replyTopic)/\(correlationID)") { reply in
                    Task { await Self.sendReply(.success(reply), to: replyTopic, correlationID, via: messenger) }
                }
            }
            return envelope
        }
        .map { delivery in
            if case .failed(let error) = delivery.outcome,
                let replyTopic = delivery.message.message.header(EntityMessageHeaders.replyTo),
                let correlationID = delivery.message.message.header(EntityMessageHeaders.correlationID)
            {
                await Self.sendReply(.failure(error), to: replyTopic, correlationID, via: messenger)
            }
            return delivery
        }
    }

    private static func sendReply(
        _ reply: Result<Reply, any Error>, to replyTopic: String, _ correlationID: String, via messenger: EntityMessenger
    ) async {
        let payload: [UInt8]
        var status = "ok"
        switch reply {
        case .success(let value):
            do {
                payload = try EntityWireFormat.encode(value)
            } catch {
                payload = Array("\(error)".utf8)
                status = "failed"
            }
        case .failure(let error):
            payload = Array("the entity failed on the message: \(error)".utf8)
            status = "failed"
        }
        // Best effort: a lost reply is what the asker's timeout is for.
        try? await messenger.produce(
            KafkaProducerMessage(
                topic: replyTopic, key: Array(correlationID.utf8), value: payload,
                headers: [
                    KafkaHeader(name: EntityMessageHeaders.correlationID, value: Array(correlationID.utf8)),
                    KafkaHeader(name: EntityMessageHeaders.replyStatus, value: Array(status.utf8)),
                ]))
    }
}
