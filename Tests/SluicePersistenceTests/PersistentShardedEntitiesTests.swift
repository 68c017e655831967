import Foundation
import SluiceActors
import SluiceKafka
import SluiceKafkaStreams
import SluicePersistence
import SluiceSharding
import SluiceStreams
import SluiceTesting
import Testing

/// An input message's command: its value is the amount to add.
@Sendable func addCommand(_ message: KafkaConsumerMessage) throws -> CounterCommand {
    guard let amount = Int(message.valueString ?? "") else { throw CounterInputError.notAnAmount(message.valueString) }
    return .add(amount)
}

enum CounterInputError: Error { case notAnAmount(String?), notProcessed(String) }

/// One instance: its own actor system, changelog journal and messenger, in a consumer group with the others.
struct CounterInstance {
    let name: String
    let system: ActorSystem
    let journal: KafkaChangelogJournal
    let entities: PersistentShardedEntities<CounterCommand, CounterEvent, CounterState, Int>
    let messenger: EntityMessenger
    let control: KafkaConsumerControl
    let completion: StreamCompletion<Void>

    static func start(name: String, topic: String, changelog: String, group: String) async throws -> CounterInstance {
        let bootstrap = try await TestBroker.bootstrapServers()
        let system = ActorSystem(name: name)
        let journal = try await KafkaChangelogJournal(
            KafkaChangelogJournalConfiguration(bootstrapServers: bootstrap, topic: changelog, inputTopic: topic))
        let entities = try PersistentShardedEntities(
            system: system, settings: PersistentEntitiesSettings(entityType: "counter"), journal: journal
        ) { id in counter(id.entityID) }
        let messenger = try await EntityMessenger(
            EntityMessengerConfiguration(
                client: KafkaClientConfiguration(bootstrapServers: bootstrap), instanceID: uniqueTestName(name)))
        var settings = KafkaSourceSettings(
            consumer: try await makeTestConsumerConfiguration(groupID: group), subscription: .topics([topic]))
        settings.revokeWait = .seconds(20)
        let (control, completion) = try KafkaSource.committable(entities.handOff(settings))
            .via(entities.flow(messenger: messenger, parallelism: 200, decode: addCommand))
            .map { delivery -> CommittableOffset in
                guard delivery.isProcessed else { throw CounterInputError.notProcessed("\(delivery.outcome)") }
                return delivery.message.committableOffset
            }
            .toMat(KafkaCommitter.sink(KafkaCommitterSettings(maxBatch: 500, maxInterval: .milliseconds(100))), Keep.both)
            .run()
        return CounterInstance(
            name: name, system: system, journal: journal, entities: entities, messenger: messenger, control: control,
            completion: completion)
    }

    func ref(_ key: String, topic: String) -> EntityRef<CounterCommand, Int> {
        entities.entityRef(key, inputTopic: topic, messenger: messenger)
    }

    func stop() async throws {
        _ = try await control.drainAndShutdown(completion, timeout: .seconds(30))
        await entities.shutdown()
        await messenger.close()
        await journal.close()
        await system.shutdown()
    }
}

/// Produces `amounts` (key, amount; 2,000 in flight at most) and returns each partition's end offset.
func produceAmounts(_ amounts: [(key: String, amount: Int)], topic: String) async throws -> [Int32: Int64] {
    let producer = try KafkaProducer(configuration: try await makeTestProducerConfiguration())
    var ends: [Int32: Int64] = [:]
    for start in stride(from: 0, to: amounts.count, by: 2000) {
        try await withThrowingTaskGroup(of: KafkaDeliveryReport.self) { group in
            for (key, amount) in amounts[start..<min(start + 2000, amounts.count)] {
                group.addTask { try await producer.send(KafkaProducerMessage(topic: topic, key: key, value: "\(amount)")) }
            }
            while let report = try await group.next() {
                ends[report.partition] = max(ends[report.partition] ?? 0, report.offset + 1)
            }
        }
    }
    try await producer.close()
    return ends
}

/// Waits until `group` committed every partition of `topic` up to `ends`, or `givesUp` says the wait is pointless.
func waitForCommits(
    group: String, topic: String, ends: [Int32: Int64], partitions: Int32, timeout: Duration = .seconds(120),
    givesUp: @escaping @Sendable () -> Bool = { false }
) async throws {
    let probe = try KafkaConsumer(configuration: try await makeTestConsumerConfiguration(groupID: group))
    defer { Task { await probe.close() } }
    let all = (0..<partitions).map { KafkaTopicPartition(topic: topic, partition: $0) }
    try await Eventually.require(timeout: timeout, "group \(group) commits every message") {
        guard !givesUp() else { return true }
        let committed = try await probe.committed(all, timeout: .seconds(10))
        return committed.allSatisfy { $0.offset >= (ends[$0.partition] ?? 0) }
    }
}

/// Every key's count, read back from the changelog by a journal of its own (what is durable, not what is in memory).
func countsInChangelog(topic: String, changelog: String, keys: [String]) async throws -> [String: Int] {
    let journal = try await KafkaChangelogJournal(
        KafkaChangelogJournalConfiguration(
            bootstrapServers: try await TestBroker.bootstrapServers(), topic: changelog, inputTopic: topic))
    try await journal.restore(partitions: Array(0..<journal.partitionCount))
    var counts: [String: Int] = [:]
    for key in keys {
        let entity = PersistentEntity(counter(key), journal: journal)
        try await entity.recover()
        counts[key] = await entity.state.value
    }
    await journal.close()
    return counts
}

@Suite("Persistent sharded entities over the real broker", .serialized, .timeLimit(.minutes(4)))
struct PersistentShardedEntitiesTests {
    @Test("two instances with the Kafka changelog: one stops mid-stream, its entities resume on the other with the right counts")
    func stateMovesWithPartitions() async throws {
        try await withTestTopic(partitions: 4) { topic in
            let changelog = uniqueTestName("counter-changelog")
            let group = uniqueTestName("counters")
            let keys = (0..<100).map { "counter-\($0)" }
            var generator = SeededGenerator(seed: 61)
            var tally: [String: Int] = [:]
            func amounts(_ count: Int) -> [(key: String, amount: Int)] {
                (0..<count).map { _ in
                    let key = keys.randomElement(using: &generator)!
                    let amount = Int.random(in: 1...9, using: &generator)
                    tally[key, default: 0] += amount
                    return (key, amount)
                }
            }

            // Instance A counts the first half alone.
            let firstEnds = try await produceAmounts(amounts(2000), topic: topic)
            let a = try await CounterInstance.start(name: "a", topic: topic, changelog: changelog, group: group)
            try await waitForCommits(group: group, topic: topic, ends: firstEnds, partitions: 4)

            // B joins: partitions move from A to B, restored from the changelog.
            let b = try await CounterInstance.start(name: "b", topic: topic, changelog: changelog, group: group)
            try await Eventually.require(timeout: .seconds(60), "A and B split the partitions") {
                let (ownedByA, ownedByB) = (a.entities.ownedPartitions, b.entities.ownedPartitions)
                return !ownedByA.isEmpty && !ownedByB.isEmpty && ownedByA.union(ownedByB).count == 4
                    && ownedByA.isDisjoint(with: ownedByB)
            }
            // A stops mid-stream; B takes everything, and the second half.
            try await a.stop()
            try await Eventually.require(timeout: .seconds(60), "B owns every partition") {
                b.entities.ownedPartitions.count == 4
            }
            let secondEnds = try await produceAmounts(amounts(2000), topic: topic)
            try await waitForCommits(group: group, topic: topic, ends: secondEnds, partitions: 4)
            let statistics = b.entities.statistics
            try await b.stop()

            // B's entities started from A's history: they replayed events they did not write.
            #expect(statistics.partitionRestores >= 4)
            #expect(statistics.partitionRestoreFailures == 0)
            #expect(statistics.eventsReplayed > 0, "B's entities did not resume from A's events")
            let counts = try await countsInChangelog(topic: topic, changelog: changelog, keys: Array(tally.keys))
            for (key, expected) in tally {
                #expect(counts[key] == expected, "\(key): \(counts[key] ?? -1) in the changelog, \(expected) produced")
            }
            print("hand-over: B restored \(statistics.partitionRestores) partitions, replayed \(statistics.eventsReplayed) events of A's, handled \(statistics.commandsHandled) commands; \(tally.count) counts exact")
        }
    }

    @Test("remote tell and ask: A tells an entity B owns; it arrives at B, in order; asks are answered; local ones stay local")
    func tellWhereverTheEntityLives() async throws {
        try await withTestTopic(partitions: 4) { topic in
            let changelog = uniqueTestName("counter-changelog")
            let group = uniqueTestName("counters")
            let a = try await CounterInstance.start(name: "a", topic: topic, changelog: changelog, group: group)
            let b = try await CounterInstance.start(name: "b", topic: topic, changelog: changelog, group: group)
            try await Eventually.require(timeout: .seconds(60), "A and B split the partitions") {
                let (ownedByA, ownedByB) = (a.entities.ownedPartitions, b.entities.ownedPartitions)
                return !ownedByA.isEmpty && !ownedByB.isEmpty && ownedByA.union(ownedByB).count == 4
            }
            // An entity B owns and one A owns.
            var remoteKey: String?
            var localKey: String?
            for index in 0..<200 where remoteKey == nil || localKey == nil {
                let key = "entity-\(index)"
                let partition = try await a.ref(key, topic: topic).partition()
                if remoteKey == nil, b.entities.ownedPartitions.contains(partition) { remoteKey = key }
                if localKey == nil, a.entities.ownedPartitions.contains(partition) { localKey = key }
            }
            let remote = try #require(remoteKey)
            let local = try #require(localKey)

            // Tells from A to B's entity, one after another: they go through Kafka to B, in order.
            let toRemote = a.ref(remote, topic: topic)
            for amount in 1...30 { try await toRemote.tell(.add(amount)) }
            let total = try await toRemote.ask(.get, timeout: .seconds(30))
            #expect(total == (1...30).reduce(0, +))
            #expect(a.entities.statistics.commandsHandled == 0, "A handled a message for an entity B owns")
            #expect(b.entities.statistics.commandsHandled == 31)
            let events = try await b.journal.readEvents(
                of: PersistenceID(entityType: "counter", entityID: remote), from: 1, limit: 100)
            let decoded = try events.map { try JSONDecoder().decode(CounterEvent.self, from: Data($0.payload)) }
            #expect(decoded == (1...30).map { CounterEvent.added($0) }, "B's entity did not get A's tells in order")

            // A reference from code that runs no entity (no local region) reaches the same entity.
            let detached = EntityRef<CounterCommand, Int>(
                entityType: "counter", entityID: remote, inputTopic: topic, messenger: a.messenger)
            #expect(try await detached.ask(.add(100), timeout: .seconds(30)) == total + 100)

            // A's own entity: delivered here, no Kafka round trip; the tell returns once the event is durable.
            let toLocal = a.ref(local, topic: topic)
            try await toLocal.tell(.add(5))
            #expect(a.entities.statistics.commandsHandled == 1)
            #expect(try await toLocal.ask(.get, timeout: .seconds(10)) == 5)
            #expect(b.entities.statistics.commandsHandled == 32)

            // Nobody consumes this topic: the ask times out with an error that says so.
            try await withTestTopic(partitions: 1) { unconsumed in
                let nowhere = EntityRef<CounterCommand, Int>(
                    entityType: "counter", entityID: "x", inputTopic: unconsumed, messenger: a.messenger)
                do {
                    _ = try await nowhere.ask(.get, timeout: .milliseconds(500))
                    Issue.record("an ask nobody answers returned")
                } catch let error as EntityMessagingError {
                    #expect(error.code == .askTimedOut)
                    #expect(error.message.contains("counter|x"))
                }
            }
            try await a.stop()
            try await b.stop()
        }
    }
}
