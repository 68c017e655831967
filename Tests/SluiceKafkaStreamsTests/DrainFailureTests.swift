@_spi(Testing) import SluiceKafka
import SluiceKafkaStreams
import SluiceStreams
import SluiceTesting
import Synchronization
import Testing

/// Drains that cannot finish their work, on librdkafka's mock cluster (a broker that can be taken down).
@Suite("Drain and shutdown when the last commit cannot land", .timeLimit(.minutes(2)))
struct DrainFailureTests {
    /// The committer used to log a failed commit and complete, so a drain during a broker outage reported every
    /// in-flight message as committed when nothing was.
    @Test("a drain whose final commit fails throws that failure instead of reporting success")
    func drainReportsAFailedFinalCommit() async throws {
        let cluster = try KafkaMockCluster(brokers: 1)
        try cluster.createTopic("audit", partitions: 1)
        let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(bootstrapServers: cluster.bootstrapServers))
        for index in 0..<5 {
            _ = try await producer.send(KafkaProducerMessage(topic: "audit", key: "k", value: "event \(index)"))
        }
        try await producer.close()

        var consumer = KafkaConsumerConfiguration(bootstrapServers: cluster.bootstrapServers, groupID: "mock-drain")
        consumer.sessionTimeout = .seconds(6)
        consumer.client.requestTimeout = .seconds(2)
        consumer.closeTimeout = .seconds(3)
        let gate = TestGate()
        let received = Mutex(0)
        // Every message waits at the gate before it is acknowledged: nothing is committed before the outage.
        let (control, completion) = try KafkaSource.committable(
            KafkaSourceSettings(consumer: consumer, subscription: .topics(["audit"]))
        )
        .mapAsync(parallelism: 8) { message -> CommittableOffset in
            received.withLock { $0 += 1 }
            await gate.wait()
            return message.committableOffset
        }
        .toMat(KafkaCommitter.sink(), Keep.both).run()
        try await Eventually.require(timeout: .seconds(60), "the pipeline holds all five messages") {
            received.withLock { $0 } == 5
        }

        try cluster.setBroker(1, isUp: false)
        gate.open()
        let error = try await #require(throws: KafkaError.self) {
            try await control.drainAndShutdown(completion, timeout: .seconds(30))
        }
        #expect(error.code == .timedOut || error.code == .commit)
    }
}
