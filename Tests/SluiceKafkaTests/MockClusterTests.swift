@_spi(Testing) import SluiceKafka
import SluiceTesting
import Testing

/// Faults a real broker cannot easily be made to produce, injected with librdkafka's mock cluster.
@Suite("Faults injected with librdkafka's mock cluster", .timeLimit(.minutes(2)))
struct MockClusterTests {
    /// A one-broker mock cluster with a one-partition topic, and a consumer of `groupID` assigned that partition.
    func assignedConsumer(topic: String, groupID: String) throws
        -> (cluster: KafkaMockCluster, consumer: KafkaConsumer, partition: KafkaTopicPartition)
    {
        let cluster = try KafkaMockCluster(brokers: 1)
        try cluster.createTopic(topic, partitions: 1)
        var configuration = KafkaConsumerConfiguration(bootstrapServers: cluster.bootstrapServers, groupID: groupID)
        configuration.sessionTimeout = .seconds(6)
        let consumer = try KafkaConsumer(configuration: configuration)
        let partition = KafkaTopicPartition(topic: topic, partition: 0)
        try consumer.assign([KafkaTopicPartitionOffset(partition, offset: KafkaOffset.beginning)])
        return (cluster, consumer, partition)
    }

    @Test("a commit that fails with a retriable error surfaces as a typed retriable error; the retry lands")
    func retriableCommitFailure() async throws {
        let (cluster, consumer, partition) = try assignedConsumer(topic: "orders", groupID: "mock-group")

        // The coordinator answers the next OffsetCommit with a retriable error.
        cluster.pushRequestErrors(apiKey: KafkaMockCluster.APIKey.offsetCommit, [.rebalanceInProgress])
        let error = try await #require(throws: KafkaError.self) {
            try await consumer.commit([KafkaTopicPartitionOffset(partition, offset: 5)])
        }
        #expect(error.code == .commit)
        #expect(error.librdkafkaCode == .rebalanceInProgress)
        #expect(error.isRetriable)
        // Nothing was committed by the failed attempt...
        #expect(try await consumer.committed([partition]) == [KafkaTopicPartitionOffset(partition, offset: KafkaOffset.invalid)])
        // ...and retrying the same commit lands.
        try await consumer.commit([KafkaTopicPartitionOffset(partition, offset: 5)])
        #expect(try await consumer.committed([partition]) == [KafkaTopicPartitionOffset(partition, offset: 5)])
        await consumer.close()
    }

    /// librdkafka's synchronous commit waits for ever when no coordinator can be reached; a drain that commits
    /// during a broker outage hung there. Without the bound this test hangs until the suite's time limit.
    @Test("a commit while no broker is reachable fails after its timeout, retriable, instead of waiting for ever")
    func commitWithoutABrokerTimesOut() async throws {
        let (cluster, consumer, partition) = try assignedConsumer(topic: "ledger", groupID: "mock-commit")
        try await consumer.commit([KafkaTopicPartitionOffset(partition, offset: 1)])

        try cluster.setBroker(1, isUp: false)
        let error = try await #require(throws: KafkaError.self) {
            try await consumer.commit([KafkaTopicPartitionOffset(partition, offset: 2)], timeout: .seconds(2))
        }
        #expect(error.code == .timedOut)
        #expect(error.isRetriable)
        #expect(error.message.contains("may or may not be committed"))

        // Once the broker is back, the same commit lands.
        try cluster.setBroker(1, isUp: true)
        try await Eventually.require(timeout: .seconds(60), "the commit lands once the broker is back") {
            (try? await consumer.commit([KafkaTopicPartitionOffset(partition, offset: 2)])) != nil
        }
        #expect(try await consumer.committed([partition]) == [KafkaTopicPartitionOffset(partition, offset: 2)])
        await consumer.close()
    }

    /// librdkafka's consumer close waits for outstanding commits and for the group coordinator: a drain during a
    /// broker outage hung in `rd_kafka_consumer_close`. Without the bound this test hangs until the suite's time
    /// limit.
    @Test("closing a group member while no broker is reachable gives up after closeTimeout instead of waiting for ever")
    func closeWithoutABrokerIsBounded() async throws {
        let cluster = try KafkaMockCluster(brokers: 1)
        try cluster.createTopic("shipments", partitions: 2)
        var configuration = KafkaConsumerConfiguration(bootstrapServers: cluster.bootstrapServers, groupID: "mock-close")
        configuration.sessionTimeout = .seconds(6)
        configuration.closeTimeout = .seconds(3)
        // A long request timeout: librdkafka's own close then waits more than 100 s (measured with a 100 s
        // closeTimeout), past the suite's time limit.
        configuration.client.requestTimeout = .seconds(40)
        let consumer = try KafkaConsumer(configuration: configuration)
        try consumer.subscribe(topics: ["shipments"])
        try await Eventually.require(timeout: .seconds(60), "the consumer is assigned both partitions") {
            consumer.assignment.count == 2
        }

        try cluster.setBroker(1, isUp: false)
        // A commit that cannot reach the coordinator: librdkafka holds it until one answers.
        try consumer.commitAsync([KafkaTopicPartitionOffset(KafkaTopicPartition(topic: "shipments", partition: 0), offset: 1)])
        await consumer.close()

        // Closed: the API refuses further work, and the message stream has ended.
        #expect(throws: KafkaError.self) { try consumer.subscribe(topics: ["shipments"]) }
        var messages = consumer.messages.makeAsyncIterator()
        #expect(try await messages.next() == nil)
    }

    @Test("a broker that goes down mid-produce: every message is delivered once it is back, none twice")
    func brokerDownMidProduce() async throws {
        let cluster = try KafkaMockCluster(brokers: 1)
        let topic = "payments"
        try cluster.createTopic(topic, partitions: 2)
        var producerConfiguration = KafkaProducerConfiguration(bootstrapServers: cluster.bootstrapServers)
        producerConfiguration.messageTimeout = .seconds(60)
        let producer = try KafkaProducer(configuration: producerConfiguration)
        let delivered = DeliveryTally()

        for index in 0..<100 {
            try await producer.send(KafkaProducerMessage(topic: topic, key: "k\(index % 5)", value: "\(index)"), onDelivery: delivered.record)
        }
        try await Eventually.require("the first 100 messages are delivered") { delivered.successes == 100 }

        try cluster.setBroker(1, isUp: false)
        for index in 100..<200 {
            try await producer.send(KafkaProducerMessage(topic: topic, key: "k\(index % 5)", value: "\(index)"), onDelivery: delivered.record)
        }
        // While the broker is down nothing more is delivered and nothing fails: messages wait in the queue.
        #expect(producer.outstandingCount >= 100)
        #expect(delivered.failures == 0)

        try cluster.setBroker(1, isUp: true)
        try await Eventually.require(timeout: .seconds(60), "all 200 messages are delivered") { delivered.successes == 200 }
        #expect(delivered.failures == 0)
        try await producer.close()

        // Read everything back: each value exactly once (idempotence prevented duplicates from retries).
        var consumerConfiguration = KafkaConsumerConfiguration(bootstrapServers: cluster.bootstrapServers, groupID: "readback")
        consumerConfiguration.sessionTimeout = .seconds(6)
        let consumer = try KafkaConsumer(configuration: consumerConfiguration)
        try consumer.assign((0..<2).map { KafkaTopicPartitionOffset(topic: topic, partition: $0, offset: KafkaOffset.beginning) })
        let messages = try await consume(200, from: consumer)
        await consumer.close()
        #expect(messages.map { Int($0.valueString!)! }.sorted() == Array(0..<200))
        // Per key, the order produced is the order stored.
        for key in 0..<5 {
            let values = messages.filter { $0.keyString == "k\(key)" }.map { Int($0.valueString!)! }
            #expect(values == values.sorted())
        }
    }
}

import Synchronization

final class DeliveryTally: Sendable {
    private let counts = Mutex((successes: 0, failures: 0))
    var record: KafkaProducer.DeliveryHandler {
        { result in
            self.counts.withLock {
                if case .success = result { $0.successes += 1 } else { $0.failures += 1 }
            }
        }
    }
    var successes: Int { counts.withLock { $0.successes } }
    var failures: Int { counts.withLock { $0.failures } }
}
