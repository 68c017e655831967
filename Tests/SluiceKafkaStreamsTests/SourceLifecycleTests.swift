import SluiceKafka
@testable import SluiceKafkaStreams
import SluiceStreams
import SluiceTesting
import Synchronization
import Testing

/// A weak reference to a run's commit coordinator, to check that a finished run lets go of it.
private final class WeakCoordinator: Sendable {
    private struct Reference { weak var coordinator: KafkaCommitCoordinator? }
    private let reference = Mutex(Reference())
    var coordinator: KafkaCommitCoordinator? {
        get { reference.withLock { $0.coordinator } }
        set { reference.withLock { $0.coordinator = newValue } }
    }
}

@Suite("Kafka source lifecycle")
struct SourceLifecycleTests {
    @Test("a committable source's commit coordinator is released once the run is shut down and complete")
    func coordinatorIsReleased() async throws {
        try await withTestTopic(partitions: 2) { topic in
            _ = try await produceSequenced(topic: topic, keys: 4, perKey: 5)
            let seen = WeakCoordinator()
            do {
                let settings = try await testSourceSettings(topic: topic)
                let processed = Mutex(0)
                let (control, completion) = try KafkaSource.committable(settings)
                    .map { message -> CommittableOffset in
                        processed.withLock { $0 += 1 }
                        return message.committableOffset
                    }
                    .toMat(KafkaCommitter.sink(), Keep.both).run()
                seen.coordinator = control.coordinator
                try await Eventually.require(timeout: .seconds(60), "the run processed every message") {
                    processed.withLock { $0 } == 20
                }
                _ = try await control.drainAndShutdown(completion, timeout: .seconds(30))
            }
            // The consumer's rebalance handler holds the coordinator, which held the consumer: a cycle, until the
            // shutdown lets the coordinator go of the consumer.
            try await Eventually.require(timeout: .seconds(10), "the coordinator is released") {
                seen.coordinator == nil
            }
        }
    }

    /// `KafkaConsumer.close()` marked the consumer closed before leaving the group, so the revoke it runs refused
    /// its own commit ("the client is closed"): a shutdown without a drain committed nothing it had finished.
    @Test("a shutdown without a drain commits, on revoke, what was acknowledged")
    func shutdownCommitsAcknowledgedOnRevoke() async throws {
        try await withTestTopic(partitions: 2) { topic in
            let ends = try await produceSequenced(topic: topic, keys: 4, perKey: 5)
            let settings = try await testSourceSettings(topic: topic)
            let acknowledged = Mutex(0)
            // No committer: offsets are only acknowledged, so the revoke's commit is the only one.
            let (control, _) = try KafkaSource.committable(settings)
                .map { message -> Void in
                    message.committableOffset.acknowledge()
                    acknowledged.withLock { $0 += 1 }
                }
                .toMat(Sink.ignore(), Keep.both).run()
            try await Eventually.require(timeout: .seconds(60), "every message is acknowledged") {
                acknowledged.withLock { $0 } == 20
            }
            await control.shutdown()

            let reader = try KafkaConsumer(configuration: settings.consumer)
            let partitions = ends.keys.map { KafkaTopicPartition(topic: topic, partition: $0) }
            let committed = try await reader.committed(partitions)
            #expect(Dictionary(uniqueKeysWithValues: committed.map { ($0.topicPartition.partition, $0.offset) }) == ends)
            await reader.close()
        }
    }
}
