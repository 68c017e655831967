import SluiceKafka
import SluiceTesting
import Testing

@Suite("Admin, offsets and watermarks against the real broker", .timeLimit(.minutes(2)))
struct AdminAndOffsetsTests {
    @Test("topics are created with their partitions, described, refused twice, and deleted")
    func createDescribeDelete() async throws {
        let admin = try await makeTestAdmin()
        let name = uniqueTestName("admin")
        try await admin.createTopic(KafkaTopicSpecification(name: name, partitions: 3))
        let topic = try await admin.describeTopic(name)
        #expect(topic.partitions.map(\.id) == [0, 1, 2])
        let cluster = try await admin.describeCluster()
        #expect(!cluster.brokers.isEmpty)
        #expect(cluster.topic(name)?.partitions.count == 3)

        await #expect(throws: KafkaError.self) { try await admin.createTopic(KafkaTopicSpecification(name: name)) }
        do {
            try await admin.createTopic(KafkaTopicSpecification(name: name))
        } catch let error as KafkaError {
            #expect(error.code == .topicExists)
            #expect(error.message.contains(name))
        }

        try await admin.deleteTopics([name])
        try await Eventually.require("the deleted topic is gone from the cluster's metadata") {
            (try await admin.describeCluster()).topic(name) == nil
        }
    }

    /// The broker under test creates a topic a metadata request names when the client allows it (as producers do
    /// by default): describing must not.
    @Test("describing a missing topic says so and does not create it")
    func describingAMissingTopicDoesNotCreateIt() async throws {
        let admin = try await makeTestAdmin()
        let name = uniqueTestName("missing")
        let error = await #expect(throws: KafkaError.self) { _ = try await admin.describeTopic(name) }
        #expect(error?.code == .unknownTopic)
        #expect((try await admin.describeCluster()).topic(name) == nil)
        await #expect(throws: KafkaError.self) { _ = try await admin.describeTopic(name) }
    }

    @Test("watermarks, committed offsets and seek")
    func watermarksCommittedAndSeek() async throws {
        try await withTestTopic(partitions: 1) { topic in
            let producer = try KafkaProducer(configuration: try await makeTestProducerConfiguration())
            for index in 0..<10 {
                // One message per request: Tansu reports a batch's base offset + 1 as the high watermark.
                _ = try await producer.send(KafkaProducerMessage(topic: topic, key: nil, value: "\(index)"))
            }
            try await producer.close()
            let partition = KafkaTopicPartition(topic: topic, partition: 0)
            let consumer = try KafkaConsumer(configuration: try await makeTestConsumerConfiguration())
            let watermarks = try await consumer.watermarks(topic: topic, partition: 0)
            #expect(watermarks == KafkaWatermarks(low: 0, high: 10))

            #expect(try await consumer.committed([partition]) == [KafkaTopicPartitionOffset(partition, offset: KafkaOffset.invalid)])
            try consumer.assign([KafkaTopicPartitionOffset(partition, offset: KafkaOffset.beginning)])
            let firstFour = try await consume(4, from: consumer)
            #expect(firstFour.map(\.offset) == [0, 1, 2, 3])
            try await consumer.commit([firstFour[3].nextOffset])
            #expect(try await consumer.committed([partition]) == [KafkaTopicPartitionOffset(partition, offset: 4)])

            // Stored offsets are committed by commitStored.
            try consumer.storeOffsets([KafkaTopicPartitionOffset(partition, offset: 6)])
            try await consumer.commitStored()
            #expect(try await consumer.committed([partition]) == [KafkaTopicPartitionOffset(partition, offset: 6)])

            // Asynchronous commit reports its outcome.
            let outcome = AsyncCommitOutcome()
            try consumer.commitAsync([KafkaTopicPartitionOffset(partition, offset: 7)]) { outcome.set($0) }
            try await Eventually.require("the asynchronous commit completed") { outcome.isSuccess != nil }
            #expect(outcome.isSuccess == true)
            #expect(try await consumer.committed([partition]) == [KafkaTopicPartitionOffset(partition, offset: 7)])

            try await consumer.seek(KafkaTopicPartitionOffset(partition, offset: 8))
            let afterSeek = try #require(try await consume(1, from: consumer).first)
            #expect(afterSeek.offset == 8)
            await consumer.close()
        }
    }
}

import Synchronization

final class AsyncCommitOutcome: Sendable {
    private let state = Mutex<Bool?>(nil)
    func set(_ result: Result<Void, KafkaError>) {
        state.withLock {
            if case .success = result { $0 = true } else { $0 = false }
        }
    }
    var isSuccess: Bool? { state.withLock { $0 } }
}
