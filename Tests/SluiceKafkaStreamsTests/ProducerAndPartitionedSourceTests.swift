@_spi(Testing) import SluiceKafka
import SluiceKafkaStreams
import SluiceStreams
import SluiceTesting
import Synchronization
import Testing

@Suite("Consume, transform, produce, commit as one pipeline", .serialized, .timeLimit(.minutes(3)))
struct ProducerAndPartitionedSourceTests {
    @Test("per-partition sub-streams bridge a topic into another with single, multi and pass-through envelopes")
    func partitionedBridge() async throws {
        let input = uniqueTestName("bridge-in")
        let output = uniqueTestName("bridge-out")
        let admin = try await makeTestAdmin()
        try await admin.createTopics([
            KafkaTopicSpecification(name: input, partitions: 3), KafkaTopicSpecification(name: output, partitions: 2),
        ])
        let ends = try await produceSequenced(topic: input, keys: 9, perKey: 40)
        let total = Int(ends.values.reduce(0, +))

        let producer = try KafkaProducer(configuration: try await makeTestProducerConfiguration())
        let committer = KafkaCommitterSettings(maxBatch: 20, maxInterval: .milliseconds(100))
        let subStreams = Mutex(0)
        let settings = try await testSourceSettings(topic: input)
        // Sequence % 3: 0 → one message, 1 → two messages, 2 → nothing (offset passed through and committed).
        let bridge = Flow<CommittableMessage, CommittableMessage, Void>()
            .map { sequenceEnvelope($0, output: output) }
            .via(KafkaProducerStages.flow(producer: producer, parallelism: 64))
            .map { $0.passThrough }
        let (control, completion) = try KafkaSource.committablePartitioned(settings)
            .mapAsyncUnordered(parallelism: 16) { (_, subSource) -> Void in
                subStreams.withLock { $0 += 1 }
                try await subSource.via(bridge).runWith(KafkaCommitter.sink(committer)).value()
            }
            .toMat(Sink.ignore(), Keep.both).run()

        let partitions = ends.keys.map { KafkaTopicPartition(topic: input, partition: $0) }
        try await Eventually.require(timeout: .seconds(60), "every input offset is committed") {
            try await control.kafkaConsumer.committed(partitions).allSatisfy { $0.offset == ends[$0.partition] }
        }
        #expect(subStreams.withLock { $0 } == 3)
        // Shutting down revokes the partitions: each sub-source completes, and so does the outer stream.
        await control.shutdown()
        try await completion.value()
        try await producer.close()

        // The output topic holds exactly what the envelopes asked for.
        let expected = sequenceEnvelopeValues(keys: 9, perKey: 40)
        let received = try await readValues(of: output, count: expected.count)
        #expect(received.sorted() == expected.sorted())
        #expect(total == 360)
    }

    @Test("a producer sink delivers every message, completes when the stream does, and lets go of the producer")
    func producerSink() async throws {
        try await withTestTopic(partitions: 2) { topic in
            let producer = try KafkaProducer(configuration: try await makeTestProducerConfiguration())
            for run in 0..<2 {
                let done = try Source(0..<250)
                    .map { KafkaProducerMessage(topic: topic, key: "k\($0 % 7)", value: "\(run * 250 + $0)") }
                    .runWith(KafkaProducerStages.sink(producer: producer, parallelism: 50))
                try await done.value()
                // The run's delivery receiver unregistered itself once its last report was in.
                #expect(producer.registeredDeliveryReceiverCount == 0)
            }
            try await producer.close()
            let consumer = try KafkaConsumer(configuration: try await makeTestConsumerConfiguration())
            try consumer.subscribe(topics: [topic])
            var values = Set<Int>()
            for try await message in consumer.messages {
                values.insert(Int(message.valueString!)!)
                if values.count == 500 { break }
            }
            await consumer.close()
            #expect(values == Set(0..<500))
        }
    }

    @Test("a message refused midway through a chunk fails the stream, and the run's receiver still lets go")
    func sendFailureMidChunk() async throws {
        try await withTestTopic(partitions: 1) { topic in
            var configuration = try await makeTestProducerConfiguration()
            configuration.client.properties["message.max.bytes"] = "2000"
            let producer = try KafkaProducer(configuration: configuration)
            // One chunk: two messages, one over the size limit (refused when sent), two more, and a pass-through.
            let envelopes: [ProducerEnvelope<Int>] =
                [0, 1, 2, 3, 4].map { index in
                    let value = String(repeating: "x", count: index == 2 ? 5000 : 10)
                    return .single(KafkaProducerMessage(topic: topic, key: "k", value: value), index)
                } + [.passThrough(5)]
            let results = try Source(envelopes)
                .via(KafkaProducerStages.flow(producer: producer))
                .runWith(Sink.ignore())
            // Every message the flow meant to send was either reported (the two before the refused one) or forgotten
            // (the refused one and those after it, expected but never sent): its receiver is gone.
            try await expectFailureReleasingReceiver(of: producer) { _ = try await results.value() }
        }
    }

    @Test("a delivery failure fails the stream and its offset is not committed")
    func deliveryFailureFailsStream() async throws {
        var configuration = try await makeTestProducerConfiguration()
        configuration.unknownTopicTimeout = .milliseconds(500)
        configuration.messageTimeout = .seconds(5)
        let producer = try KafkaProducer(configuration: configuration)
        let missing = uniqueTestName("missing")
        let results = try Source([1])
            .map { ProducerEnvelope<Int>.single(KafkaProducerMessage(topic: missing, key: "k", value: "\($0)"), $0) }
            .via(KafkaProducerStages.flow(producer: producer))
            .runWith(Sink.collect())
        try await expectFailureReleasingReceiver(of: producer) { _ = try await results.value() }
    }

    /// The run fails with a Kafka error, its delivery receiver is unregistered afterwards, and the producer closes.
    private func expectFailureReleasingReceiver(
        of producer: KafkaProducer, sourceLocation: SourceLocation = #_sourceLocation,
        _ run: () async throws -> Void
    ) async throws {
        await #expect(throws: KafkaError.self, sourceLocation: sourceLocation) { try await run() }
        try await Eventually.require("the failed run's delivery receiver is unregistered") {
            producer.registeredDeliveryReceiverCount == 0
        }
        try await producer.close()
    }
}
