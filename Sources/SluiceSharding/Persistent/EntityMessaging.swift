import Foundation
public import Logging
public import SluiceKafka
import Synchronization

/// The headers of a message sent to an entity through Kafka (``EntityRef``) and of its reply.
public enum EntityMessageHeaders {
    /// The entity type the message is for; an entity flow refuses a message for another type.
    public static let entityType = "sluice-entity-type"
    /// The message's type tag (the Swift type name of the command), so a reader knows how to decode it.
    public static let messageType = "sluice-message-type"
    /// Where an ask's reply goes: the asking instance's reply topic.
    public static let replyTo = "sluice-reply-to"
    /// Matches a reply to its ask.
    public static let correlationID = "sluice-correlation-id"
    /// On a reply: `ok` (the value is the reply) or `failed` (the value is the error's description).
    public static let replyStatus = "sluice-reply-status"
}

/// Why a message to an entity could not be sent or answered.
public struct EntityMessagingError: Error, Sendable, CustomStringConvertible {
    public enum Code: Sendable, Hashable {
        /// No reply within the ask's timeout: the owner may have crashed, the reply may be lost, or the entity is
        /// slow. The command may still have been (or still be) applied.
        case askTimedOut
        /// The entity failed on the command, or could not take it.
        case entityFailed
        /// The command or reply could not be encoded or decoded.
        case codec
        /// The message could not be produced, or the input topic could not be described.
        case kafka
        /// The messenger was closed.
        case closed
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }
}

/// Settings of an ``EntityMessenger``.
public struct EntityMessengerConfiguration: Sendable {
    /// How to reach the cluster.
    public var client: KafkaClientConfiguration
    /// This instance's name: its reply topic is `sluice-replies-<instanceID>` unless ``replyTopic`` is set.
    public var instanceID: String
    /// The topic replies to this instance's asks arrive on (created with one partition if missing).
    public var replyTopic: String
    /// The producer's linger (batching of tells and replies). Default: 2 ms.
    public var linger: Duration = .milliseconds(2)

    public init(client: KafkaClientConfiguration, instanceID: String) {
        self.client = client
        self.instanceID = instanceID
        self.replyTopic = "sluice-replies-\(instanceID)"
    }
}

/// One instance's connection for messages to entities wherever they live: a producer for tells, asks and replies,
/// and a reader of the instance's reply topic that completes pending asks.
///
/// Guarantees: a tell is at-least-once once ``EntityRef/tell(_:)`` returned (the broker acknowledged it; the owner
/// commits its input offset only after handling it, and skips it if redelivered). An ask's reply is produced after
/// the owner persisted the command's events; it is lost if the owner or this instance crashes in between or before
/// reading it, and the timeout is how the asker learns it — the command may then have been applied, so an ask that
/// is retried must be idempotent in the entity.
public final class EntityMessenger: Sendable {
    /// This instance's reply topic.
    public let replyTopic: String
    let producer: KafkaProducer
    private let consumer: KafkaConsumer
    private let admin: KafkaAdminClient
    private let pending = Mutex<[String: PendingReply]>([:])
    private let partitionCounts = Mutex<[String: Int32]>([:])
    private let reader: Mutex<Task<Void, Never>?>
    private let logger: Logger

    /// Connects: creates the reply topic if missing, starts the producer and the reply reader (from the reply
    /// topic's current end, so replies to this incarnation's asks only).
    public init(
        _ configuration: EntityMessengerConfiguration, logger: Logger = Logger(label: "sluice.sharding.messenger")
    ) async throws {
        self.replyTopic = configuration.replyTopic
        self.logger = logger
        admin = try KafkaAdminClient(configuration: configuration.client, logger: logger)
        do {
            try await admin.createTopic(KafkaTopicSpecification(name: configuration.replyTopic, partitions: 1))
        } catch let error as KafkaError where error.code == .topicExists {}
        var producerConfiguration = KafkaProducerConfiguration(client: configuration.client)
        producerConfiguration.linger = configuration.linger
        producer = try KafkaProducer(configuration: producerConfiguration, logger: logger)
        var consumerConfiguration = KafkaConsumerConfiguration(
            client: configuration.client, groupID: "sluice-replies-\(configuration.instanceID)-\(UUID().uuidString)")
        consumerConfiguration.isAutoCommitEnabled = false
        consumerConfiguration.isAutoOffsetStoreEnabled = false
        consumer = try KafkaConsumer(configuration: consumerConfiguration, logger: logger)
        // An explicit start offset: "end" resolves lazily, and a reply arriving before it resolved would be skipped.
        let end = try await consumer.watermarks(topic: configuration.replyTopic, partition: 0, timeout: .seconds(30)).high
        try consumer.assign([KafkaTopicPartitionOffset(topic: configuration.replyTopic, partition: 0, offset: end)])
        reader = Mutex(nil)
        let consumer = self.consumer
        let task = Task { [weak self] in
            do {
                for try await message in consumer.messages {
                    guard let self else { return }
                    self.complete(with: message)
                }
            } catch {
                self?.logger.error("the reply reader stopped", metadata: ["error": "\(error)"])
            }
        }
        reader.withLock { $0 = task }
    }

    /// The partition count of `topic` (described once, then cached).
    func partitionCount(of topic: String) async throws(EntityMessagingError) -> Int32 {
        if let known = partitionCounts.withLock({ $0[topic] }) { return known }
        let count: Int32
        do {
            count = Int32(try await admin.describeTopic(topic).partitions.count)
        } catch {
            throw EntityMessagingError(.kafka, "cannot describe the entities' input topic '\(topic)': \(error)")
        }
        guard count > 0 else { throw EntityMessagingError(.kafka, "input topic '\(topic)' has no partitions") }
        partitionCounts.withLock { $0[topic] = count }
        return count
    }

    /// Produces `message` and waits for the broker's acknowledgement.
    func produce(_ message: KafkaProducerMessage) async throws(EntityMessagingError) {
        do {
            _ = try await producer.send(message)
        } catch {
            throw EntityMessagingError(.kafka, "producing to '\(message.topic)' failed: \(error)")
        }
    }

    /// Registers an ask waiting for the reply with `correlationID`.
    func expectReply(_ correlationID: String, _ reply: PendingReply) {
        pending.withLock { $0[correlationID] = reply }
    }

    /// Forgets an ask (answered elsewhere, timed out or failed to send).
    func forget(_ correlationID: String) {
        _ = pending.withLock { $0.removeValue(forKey: correlationID) }
    }

    private func complete(with message: KafkaConsumerMessage) {
        guard let correlationID = message.header(EntityMessageHeaders.correlationID) else { return }
        guard let waiting = pending.withLock({ $0.removeValue(forKey: correlationID) }) else { return }
        let payload = message.value ?? []
        if message.header(EntityMessageHeaders.replyStatus) == "failed" {
            waiting.complete(.failure(EntityMessagingError(.entityFailed, String(decoding: payload, as: UTF8.self))))
        } else {
            waiting.complete(.success(payload))
        }
    }

    /// Stops the reply reader (pending asks fail with ``EntityMessagingError/Code/closed``) and flushes the producer.
    public func close() async {
        let task = reader.withLock { $0.take() }
        task?.cancel()
        await consumer.close()
        await task?.value
        let waiting = pending.withLock { pending in
            defer { pending.removeAll() }
            return Array(pending.values)
        }
        for reply in waiting { reply.complete(.failure(EntityMessagingError(.closed, "the entity messenger closed"))) }
        try? await producer.close(timeout: .seconds(10))
    }
}

extension KafkaConsumerMessage {
    /// The value of the last header named `name`, as UTF-8 text.
    func header(_ name: String) -> String? {
        headers.last { $0.name == name }.flatMap { $0.value }.map { String(decoding: $0, as: UTF8.self) }
    }
}

/// A value that arrives once (an ask's encoded reply, or an entity's outcome), awaited by one waiter.
final class Promise<Value: Sendable>: Sendable {
    private let state = Mutex<(value: Value?, waiter: CheckedContinuation<Value, Never>?)>((nil, nil))

    /// Sets the value; later calls are ignored.
    func complete(_ value: Value) {
        let waiter: CheckedContinuation<Value, Never>? = state.withLock { state in
            guard case .none = state.value else { return nil }
            state.value = value
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: value)
    }

    /// Waits for the value.
    var value: Value {
        get async {
            await withCheckedContinuation { continuation in
                let ready: Value? = state.withLock { state in
                    if let value = state.value { return value }
                    state.waiter = continuation
                    return nil
                }
                if let ready { continuation.resume(returning: ready) }
            }
        }
    }

    /// Waits for the value, at most `timeout`; then it is `onTimeout`.
    func value(timeout: Duration, onTimeout: @autoclosure @escaping @Sendable () -> Value) async -> Value {
        let timer = Task { [self] in
            guard (try? await Task.sleep(for: timeout)) != nil else { return }
            complete(onTimeout())
        }
        defer { timer.cancel() }
        return await value
    }
}

/// An ask's wait for its encoded reply (or why there is none).
typealias PendingReply = Promise<Result<[UInt8], EntityMessagingError>>
