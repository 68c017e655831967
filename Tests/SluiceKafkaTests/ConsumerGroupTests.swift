import SluiceKafka
import SluiceTesting
import Synchronization
import Testing

/// Records the rebalance events one consumer saw.
final class RebalanceRecorder: Sendable {
    private let events = Mutex<[KafkaRebalanceEvent]>([])
    var all: [KafkaRebalanceEvent] { events.withLock { $0 } }
    var handler: KafkaConsumer.RebalanceHandler { { event in self.events.withLock { $0.append(event) } } }
}

@Suite("Consumer groups against the real broker", .timeLimit(.minutes(3)))
struct ConsumerGroupTests {
    @Test("two members split the partitions; the survivor takes over and starts at the leaver's commits")
    func twoMembersSplitAndHandOver() async throws {
        try await withTestTopic(partitions: 4) { topic in
            let perPartition = 40
            _ = try await produceAll(
                (0..<4).flatMap { partition in
                    (0..<perPartition).map { index in
                        KafkaProducerMessage(topic: topic, partition: Int32(partition), key: "p\(partition)", value: "\(index)")
                    }
                })
            let configuration = try await makeTestConsumerConfiguration()
            let recorderA = RebalanceRecorder()
            let recorderB = RebalanceRecorder()
            let consumerA = try KafkaConsumer(configuration: configuration, onRebalance: recorderA.handler)
            try consumerA.subscribe(topics: [topic])
            try await Eventually.require("A owns all 4 partitions") { consumerA.assignment.count == 4 }

            let consumerB = try KafkaConsumer(configuration: configuration, onRebalance: recorderB.handler)
            try consumerB.subscribe(topics: [topic])
            try await Eventually.require(timeout: .seconds(60), "A and B split the 4 partitions") {
                let a = consumerA.assignment
                let b = consumerB.assignment
                return !a.isEmpty && !b.isEmpty && a.isDisjoint(with: b) && a.union(b).count == 4
            }
            let partitionsOfA = consumerA.assignment
            // A gave partitions away: it must have been told before they changed hands.
            #expect(recorderA.all.contains { event in
                if case .revoked(let revoked) = event { return Set(revoked).isDisjoint(with: partitionsOfA) }
                return false
            })

            // A reads only its own partitions (buffered messages of revoked ones were dropped), commits half.
            let messagesOfA = try await consume(partitionsOfA.count * perPartition, from: consumerA)
            #expect(messagesOfA.allSatisfy { partitionsOfA.contains($0.topicPartition) })
            let half = Int64(perPartition / 2)
            try await consumerA.commit(partitionsOfA.map { KafkaTopicPartitionOffset($0, offset: half) })
            let committed = try await consumerA.committed(Array(partitionsOfA))
            #expect(committed.allSatisfy { $0.offset == half })

            // A leaves: B is handed A's partitions and starts where A committed.
            await consumerA.close()
            // (Under load the hand-over may take more than one rebalance: A's partitions may come in several events,
            // and the assignment can change a moment before B's handler has recorded the event that announced it.)
            func assignedToB() -> Set<KafkaTopicPartition> {
                Set(recorderB.all.flatMap { event -> [KafkaTopicPartition] in
                    if case .assigned(let assigned) = event { return assigned }
                    return []
                })
            }
            try await Eventually.require(timeout: .seconds(60), "B owns all 4 partitions and was told of A's") {
                consumerB.assignment.count == 4 && partitionsOfA.isSubset(of: assignedToB())
            }
            let partitionsOfB = Set((0..<4).map { KafkaTopicPartition(topic: topic, partition: Int32($0)) }).subtracting(partitionsOfA)
            let expected = partitionsOfB.count * perPartition + partitionsOfA.count * (perPartition - Int(half))
            let messagesOfB = try await consume(expected, from: consumerB)
            for partition in partitionsOfA {
                let offsets = messagesOfB.filter { $0.topicPartition == partition }.map(\.offset)
                #expect(offsets.min() == half, "\(partition) should resume at A's commit")
                #expect(offsets == Array(half..<Int64(perPartition)))
            }
            await consumerB.close()
        }
    }

    @Test("a regex subscription picks up matching topics")
    func patternSubscription() async throws {
        let prefix = uniqueTestName("pattern")
        let admin = try await makeTestAdmin()
        try await admin.createTopics([
            KafkaTopicSpecification(name: "\(prefix)-a"), KafkaTopicSpecification(name: "\(prefix)-b"),
        ])
        _ = try await produceAll([
            KafkaProducerMessage(topic: "\(prefix)-a", key: "1", value: "a"),
            KafkaProducerMessage(topic: "\(prefix)-b", key: "2", value: "b"),
        ])
        var configuration = try await makeTestConsumerConfiguration()
        configuration.client.properties["topic.metadata.refresh.interval.ms"] = "1000"
        let consumer = try KafkaConsumer(configuration: configuration)
        try consumer.subscribe(pattern: "^\(prefix)-.*")
        let messages = try await consume(2, from: consumer)
        await consumer.close()
        #expect(Set(messages.map(\.topic)) == ["\(prefix)-a", "\(prefix)-b"])
    }
}
