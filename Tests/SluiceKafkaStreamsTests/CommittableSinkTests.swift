@_spi(Testing) import SluiceKafka
import SluiceKafkaStreams
import SluiceStreams
import SluiceTesting
import Synchronization
import Testing

@Suite("The committable producer sink: produce, then commit once delivered", .serialized, .timeLimit(.minutes(3)))
struct CommittableSinkTests {
    @Test("single, multi and pass-through envelopes are produced, and every offset is committed by the interval")
    func bridgeCommitsEverything() async throws {
        let input = uniqueTestName("sink-in")
        let output = uniqueTestName("sink-out")
        let admin = try await makeTestAdmin()
        try await admin.createTopics([
            KafkaTopicSpecification(name: input, partitions: 3), KafkaTopicSpecification(name: output, partitions: 2),
        ])
        let ends = try await produceSequenced(topic: input, keys: 9, perKey: 40)
        let producer = try KafkaProducer(configuration: try await makeTestProducerConfiguration())
        // A batch never fills (360 messages, batches of 1,000): every commit but the last is due by time.
        let committer = KafkaCommitterSettings(maxBatch: 1000, maxInterval: .milliseconds(200))
        // Sequence % 3: 0 → one message, 1 → two messages, 2 → nothing (offset passed through and committed).
        let (control, completion) = try KafkaSource.committable(try await testSourceSettings(topic: input))
            .map { sequenceEnvelope($0, output: output) }
            .toMat(KafkaProducerStages.committableSink(producer: producer, committerSettings: committer, parallelism: 64), Keep.both)
            .run()

        let partitions = ends.keys.map { KafkaTopicPartition(topic: input, partition: $0) }
        try await Eventually.require(timeout: .seconds(60), "every input offset is committed while the stream runs") {
            try await control.kafkaConsumer.committed(partitions).allSatisfy { $0.offset == ends[$0.partition] }
        }
        _ = try await control.drainAndShutdown(completion, timeout: .seconds(30))
        #expect(producer.registeredDeliveryReceiverCount == 0)
        try await producer.close()

        let expected = sequenceEnvelopeValues(keys: 9, perKey: 40)
        let received = try await readValues(of: output, count: expected.count)
        #expect(received.sorted() == expected.sorted())
    }

    @Test("a drain in mid-stream commits only what was delivered: every message below a committed offset is in the output")
    func drainMidStream() async throws {
        let input = uniqueTestName("sink-drain-in")
        let output = uniqueTestName("sink-drain-out")
        let admin = try await makeTestAdmin()
        try await admin.createTopics([
            KafkaTopicSpecification(name: input, partitions: 2), KafkaTopicSpecification(name: output, partitions: 2),
        ])
        let ends = try await produceSequenced(topic: input, keys: 10, perKey: 300)
        let producer = try KafkaProducer(configuration: try await makeTestProducerConfiguration())
        let groupID = uniqueTestName("group")
        let seen = Mutex<[KafkaTopicPartition: [Int64: String]]>([:])
        let halfway = OneShotSignal()
        let (control, completion) = try KafkaSource.committable(try await testSourceSettings(topic: input, groupID: groupID))
            .map { message -> ProducerEnvelope<CommittableOffset> in
                let count = seen.withLock { seen in
                    seen[message.message.topicPartition, default: [:]][message.message.offset] = message.message.valueString!
                    return seen.values.reduce(0) { $0 + $1.count }
                }
                if count == 1500 { halfway.fire() }
                return .single(
                    KafkaProducerMessage(topic: output, key: message.message.key, value: message.message.value),
                    message.committableOffset)
            }
            .toMat(KafkaProducerStages.committableSink(producer: producer, committerSettings: .init(maxBatch: 100)), Keep.both)
            .run()
        await halfway.wait()
        _ = try await control.drainAndShutdown(completion, timeout: .seconds(30))
        #expect(producer.registeredDeliveryReceiverCount == 0)
        try await producer.close()

        // Read the committed positions with a fresh consumer of the same group (the source's consumer is closed).
        let partitions = ends.keys.map { KafkaTopicPartition(topic: input, partition: $0) }
        let checker = try KafkaConsumer(configuration: try await makeTestConsumerConfiguration(groupID: groupID))
        let committed = try await checker.committed(partitions)
        await checker.close()
        let handedOut = seen.withLock { $0 }
        var required = Set<String>()
        for position in committed where position.offset > 0 {
            let partition = KafkaTopicPartition(topic: input, partition: position.partition)
            for offset in 0..<position.offset {
                required.insert(try #require(handedOut[partition]?[offset], "offset \(offset) of \(partition) was committed but never handed out"))
            }
        }
        #expect(required.count >= 1500, "the drain commits at least what was handed out before it")
        let received = Set(try await readValues(of: output, count: required.count, until: { required.isSubset(of: $0) }))
        #expect(required.isSubset(of: received))
    }

    @Test("a delivery failure fails the sink, its offset is never committed, and the receiver lets go")
    func deliveryFailure() async throws {
        let input = uniqueTestName("sink-fail-in")
        let output = uniqueTestName("sink-fail-out")
        let missing = uniqueTestName("missing")
        let admin = try await makeTestAdmin()
        try await admin.createTopics([
            KafkaTopicSpecification(name: input, partitions: 1), KafkaTopicSpecification(name: output, partitions: 1),
        ])
        _ = try await produceSequenced(topic: input, keys: 1, perKey: 20)
        var configuration = try await makeTestProducerConfiguration()
        configuration.unknownTopicTimeout = .milliseconds(500)
        configuration.messageTimeout = .seconds(5)
        let producer = try KafkaProducer(configuration: configuration)
        // Offset 5 goes to a topic that does not exist: its delivery fails; the others are delivered.
        let (control, completion) = try KafkaSource.committable(try await testSourceSettings(topic: input))
            .map { message -> ProducerEnvelope<CommittableOffset> in
                let topic = message.message.offset == 5 ? missing : output
                return .single(KafkaProducerMessage(topic: topic, key: message.message.key, value: message.message.value), message.committableOffset)
            }
            .toMat(
                KafkaProducerStages.committableSink(producer: producer, committerSettings: .init(maxBatch: 1, maxInterval: .milliseconds(50))),
                Keep.both
            )
            .run()
        await #expect(throws: KafkaError.self) { try await completion.value() }
        let partition = KafkaTopicPartition(topic: input, partition: 0)
        let committed = try await control.kafkaConsumer.committed([partition]).first?.offset ?? -1
        #expect(committed <= 5, "committed \(committed): past the message whose delivery failed")
        await control.abandon()
        try await Eventually.require("the failed run's delivery receiver is unregistered") {
            producer.registeredDeliveryReceiverCount == 0
        }
        try await producer.close()
    }
}
