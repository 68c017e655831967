@testable import SluiceKafka
import Synchronization
import Testing

/// The consumer's bounded hand-over buffer, tested directly (no broker).
@Suite("Consumer hand-over buffer")
struct MessageBufferTests {
    private func messages(_ partition: Int32, _ offsets: Range<Int64>) -> [KafkaConsumerMessage] {
        offsets.map { KafkaConsumerMessage(topic: "t", partition: partition, offset: $0, key: nil, value: [UInt8($0 % 256)]) }
    }

    @Test("append reports full at capacity; the poll thread is woken when room returns and when a stall drains")
    func capacityAndWakeUps() async throws {
        let drained = DrainCounter()
        let buffer = KafkaConsumerMessageBuffer(capacity: 12) { drained.increment() }
        #expect(buffer.append(messages(0, 0..<6)) == false)
        #expect(buffer.append(messages(0, 6..<14)) == true)
        buffer.setBackpressurePaused(true)
        #expect(buffer.count == 14)
        // Down to 9 (three quarters of 12): room for a refill, one wake-up.
        for expected in 0..<5 {
            #expect(try await buffer.nextMessage()?.offset == Int64(expected))
        }
        #expect(buffer.count == 9)
        #expect(drained.value == 1)
        // Down to 6 (half), while paused for a stall: time to resume, a second wake-up.
        for _ in 0..<3 { _ = try await buffer.nextMessage() }
        #expect(buffer.count == 6)
        #expect(drained.value == 2)
        _ = try await buffer.nextMessage()
        #expect(drained.value == 2)
        #expect(buffer.takenCount == 9)
    }

    @Test("messages stay until taken: a new reader continues where the last stopped")
    func noLossBetweenReaders() async throws {
        let buffer = KafkaConsumerMessageBuffer(capacity: 100) {}
        _ = buffer.append(messages(0, 0..<5))
        _ = try await buffer.nextMessage()
        _ = try await buffer.nextMessage()
        let rest = try #require(try await buffer.nextBatch())
        #expect(rest.map(\.offset) == [2, 3, 4])
    }

    @Test("revoked partitions' messages are removed, others keep their order")
    func removeRevoked() async throws {
        let buffer = KafkaConsumerMessageBuffer(capacity: 100) {}
        _ = buffer.append(messages(0, 0..<3) + messages(1, 0..<3))
        _ = try await buffer.nextMessage()  // takes p0@0
        let removed = buffer.removeMessages(of: [KafkaTopicPartition(topic: "t", partition: 0)])
        #expect(removed == 2)
        #expect(buffer.count == 3)
        let rest = try #require(try await buffer.nextBatch())
        #expect(rest.map(\.partition) == [1, 1, 1])
        #expect(rest.map(\.offset) == [0, 1, 2])
    }

    @Test("a waiting reader is handed the next append; finish ends it after buffered messages")
    func waitingReaderAndFinish() async throws {
        let buffer = KafkaConsumerMessageBuffer(capacity: 100) {}
        async let waiting = buffer.nextMessage()
        // Appending before the reader waits is fine too: either way it gets offset 0 first.
        _ = buffer.append(messages(0, 0..<2))
        #expect(try await waiting?.offset == 0)
        buffer.finish(.finished)
        #expect(try await buffer.nextMessage()?.offset == 1)
        #expect(try await buffer.nextMessage() == nil)
    }

    @Test("a waiting batch reader gets the next batch whole when it fits, else its limit with the rest kept")
    func waitingBatchReader() async throws {
        let buffer = KafkaConsumerMessageBuffer(capacity: 100) {}
        func offsets(_ read: KafkaConsumerMessageBuffer.BatchRead?) -> [Int64]? {
            guard case .messages(let batch)? = read else { return nil }
            return batch.map(\.offset)
        }
        // Whether the append comes before or after the reader waits, the outcome is the same.
        async let whole = buffer.readBatch(wakeable: false, limit: 4)
        _ = buffer.append(messages(0, 0..<3))
        #expect(try await offsets(whole) == [0, 1, 2])
        #expect(buffer.count == 0)
        #expect(buffer.takenCount == 3)

        async let limited = buffer.readBatch(wakeable: false, limit: 2)
        _ = buffer.append(messages(0, 3..<8))
        #expect(try await offsets(limited) == [3, 4])
        #expect(buffer.count == 3)
        #expect(try await offsets(buffer.readBatch(wakeable: false, limit: 10)) == [5, 6, 7])
        #expect(buffer.takenCount == 8)
    }

    @Test("a wake-up ends a wakeable batch read, but not one that is not wakeable")
    func batchReaderWakeUps() async throws {
        let buffer = KafkaConsumerMessageBuffer(capacity: 100) {}
        let wakeable = Task { try await buffer.readBatch(wakeable: true, limit: 10) }
        buffer.wakeUpReader()  // wakes the waiting read, or is pending for it if it is not waiting yet
        guard case .wokenUp? = try await wakeable.value else {
            Issue.record("a wakeable batch read was not woken up")
            return
        }
        // Not wakeable: the wake-up stays pending (for the next wakeable read); the read waits for messages.
        async let plain = buffer.readBatch(wakeable: false, limit: 10)
        buffer.wakeUpReader()
        _ = buffer.append(messages(0, 0..<2))
        guard case .messages(let batch)? = try await plain else {
            Issue.record("a batch read that is not wakeable ended without messages")
            return
        }
        #expect(batch.map(\.offset) == [0, 1])
        guard case .wokenUp? = try await buffer.readBatch(wakeable: true, limit: 10) else {
            Issue.record("the pending wake-up was lost")
            return
        }
    }

    @Test("a failure is thrown to the reader after the buffered messages")
    func failure() async throws {
        let buffer = KafkaConsumerMessageBuffer(capacity: 100) {}
        _ = buffer.append(messages(0, 0..<1))
        buffer.finish(.failed(KafkaError(code: .fatal, message: "boom")))
        #expect(try await buffer.nextMessage()?.offset == 0)
        await #expect(throws: KafkaError.self) { try await buffer.nextMessage() }
    }

    @Test("cancelling the reading task ends its wait with nil")
    func cancellation() async throws {
        let buffer = KafkaConsumerMessageBuffer(capacity: 100) {}
        let task = Task { try await buffer.nextMessage() }
        task.cancel()
        #expect(try await task.value == nil)
    }
}

final class DrainCounter: Sendable {
    private let count = Mutex(0)
    func increment() { count.withLock { $0 += 1 } }
    var value: Int { count.withLock { $0 } }
}

@Suite("Configuration to librdkafka properties")
struct ConfigurationTests {
    @Test("typed settings become librdkafka properties; raw ones override them, except the commit-safety ones")
    func rawPropertiesOverrideTypedSettings() {
        var configuration = KafkaConsumerConfiguration(bootstrapServers: ["a:1", "b:2"], groupID: "g")
        configuration.client.properties["session.timeout.ms"] = "99999"
        configuration.client.properties["fetch.wait.max.ms"] = "50"
        configuration.client.properties["enable.auto.commit"] = "true"
        configuration.client.properties["group.id"] = "other"
        configuration.sessionTimeout = .seconds(7)
        let properties = configuration.librdkafkaProperties()
        let last = Dictionary(properties, uniquingKeysWith: { _, new in new })
        #expect(last["bootstrap.servers"] == "a:1,b:2")
        #expect(last["session.timeout.ms"] == "99999")
        #expect(last["fetch.wait.max.ms"] == "50")
        #expect(last["group.id"] == "g")
        #expect(last["enable.auto.commit"] == "false")
        #expect(last["enable.auto.offset.store"] == "false")
        #expect(last["partition.assignment.strategy"] == "cooperative-sticky")
    }

    @Test("the producer is idempotent and batches by default")
    func producerDefaults() {
        let properties = Dictionary(
            KafkaProducerConfiguration(bootstrapServers: ["a:1"]).librdkafkaProperties(), uniquingKeysWith: { _, new in new })
        #expect(properties["enable.idempotence"] == "true")
        #expect(properties["linger.ms"] == "5")
        #expect(properties["acks"] == "all")
    }

    @Test("secret property names are recognised")
    func secretNames() {
        for name in ["sasl.password", "sasl.username", "ssl.key.password", "ssl.key.pem", "sasl.oauthbearer.client.secret"] {
            #expect(KafkaSecretProperties.isSecret(name), "\(name)")
        }
        for name in ["sasl.mechanism", "bootstrap.servers", "linger.ms"] {
            #expect(!KafkaSecretProperties.isSecret(name), "\(name)")
        }
    }

    @Test("error codes carry librdkafka's names and retriable flags")
    func errorCodes() {
        #expect(KafkaErrorCode.messageTimedOut.name == "_MSG_TIMED_OUT")
        #expect(KafkaErrorCode.unknownTopicOrPartition.name == "UNKNOWN_TOPIC_OR_PART")
        #expect(KafkaErrorCode.rebalanceInProgress.isRetriableByDefault)
        #expect(!KafkaErrorCode.topicAlreadyExists.isRetriableByDefault)
        let error = KafkaError(code: .commit, message: "x")
        #expect(error.file.hasSuffix("MessageBufferTests.swift"))
    }
}
