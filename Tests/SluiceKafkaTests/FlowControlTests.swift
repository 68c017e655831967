import SluiceKafka
import SluiceTesting
import Testing

@Suite("Pause, resume and backpressure against the real broker", .timeLimit(.minutes(2)))
struct FlowControlTests {
    @Test("pausing a partition stops its delivery while others flow; resuming restarts it")
    func pauseAndResume() async throws {
        try await withTestTopic(partitions: 2) { topic in
            let p0 = KafkaTopicPartition(topic: topic, partition: 0)
            let p1 = KafkaTopicPartition(topic: topic, partition: 1)
            func produce(_ partition: Int32, _ range: Range<Int>) async throws {
                let producer = try KafkaProducer(configuration: try await makeTestProducerConfiguration())
                for index in range {
                    _ = try await producer.send(KafkaProducerMessage(topic: topic, partition: partition, key: nil, value: "\(index)"))
                }
                try await producer.close()
            }
            try await produce(0, 0..<10)
            try await produce(1, 0..<10)
            let consumer = try KafkaConsumer(configuration: try await makeTestConsumerConfiguration())
            try consumer.assign([KafkaTopicPartitionOffset(p0, offset: KafkaOffset.beginning), KafkaTopicPartitionOffset(p1, offset: KafkaOffset.beginning)])
            var iterator = consumer.messages.makeAsyncIterator()
            var firstRound: [KafkaConsumerMessage] = []
            while firstRound.count < 20, let message = try await iterator.next() { firstRound.append(message) }
            #expect(firstRound.count == 20)

            try consumer.pause([p0])
            #expect(consumer.pausedPartitions == [p0])
            try await produce(0, 10..<20)
            try await produce(1, 10..<20)
            var secondRound: [KafkaConsumerMessage] = []
            while secondRound.count < 10, let message = try await iterator.next() { secondRound.append(message) }
            #expect(secondRound.allSatisfy { $0.partition == 1 }, "only the unpaused partition flows")
            // Partition 0 has 10 messages waiting; while paused none of them may arrive. Absence can only be
            // shown over a window: watch the hand-over buffer for one second (this is not synchronisation).
            let clock = ContinuousClock()
            let windowEnd = clock.now.advanced(by: .seconds(1))
            while clock.now < windowEnd {
                #expect(consumer.bufferedMessageCount == 0, "a paused partition delivered messages")
                try await Task.sleep(for: .milliseconds(50))
            }

            try consumer.resume([p0])
            #expect(consumer.pausedPartitions.isEmpty)
            var thirdRound: [KafkaConsumerMessage] = []
            while thirdRound.count < 10, let message = try await iterator.next() { thirdRound.append(message) }
            #expect(thirdRound.map(\.partition) == Array(repeating: 0, count: 10))
            #expect(thirdRound.map(\.offset) == Array(10..<20))
            await consumer.close()
        }
    }

    @Test("a slow reader makes the consumer pause its partitions; nothing is lost or repeated when it resumes")
    func backpressurePausesAndLosesNothing() async throws {
        try await withTestTopic(partitions: 2) { topic in
            let count = 6000
            let producer = try KafkaProducer(configuration: try await makeTestProducerConfiguration())
            for index in 0..<count {
                try await producer.send(KafkaProducerMessage(topic: topic, key: "k\(index % 10)", value: "\(index)")) { _ in }
            }
            try await producer.close()

            var configuration = try await makeTestConsumerConfiguration()
            configuration.maxBufferedMessages = 200
            configuration.pollBatchSize = 50
            configuration.maxPrefetchKilobytes = 64
            configuration.minPrefetchMessages = 100
            let consumer = try KafkaConsumer(configuration: configuration)
            try consumer.subscribe(topics: [topic])
            // Nobody reads yet: the buffer fills and the consumer pauses both partitions.
            try await Eventually.require("the consumer paused its partitions for backpressure") {
                consumer.pausedPartitions.count == 2
            }
            #expect(consumer.bufferedMessageCount <= configuration.maxBufferedMessages + configuration.pollBatchSize)

            var nextOffset: [Int32: Int64] = [:]
            var received = 0
            var maxBuffered = 0
            for try await message in consumer.messages {
                #expect(message.offset == nextOffset[message.partition, default: 0], "gap or repeat in \(message.topicPartition)")
                nextOffset[message.partition] = message.offset + 1
                received += 1
                maxBuffered = max(maxBuffered, consumer.bufferedMessageCount)
                if received == count { break }
            }
            #expect(received == count)
            #expect(maxBuffered <= configuration.maxBufferedMessages + configuration.pollBatchSize)
            try await Eventually.require("the consumer resumed its partitions") { consumer.pausedPartitions.isEmpty }
            await consumer.close()
        }
    }
}
