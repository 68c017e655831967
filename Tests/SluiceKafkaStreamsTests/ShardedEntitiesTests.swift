import Foundation
import SluiceActors
import SluiceKafka
import SluiceKafkaStreams
import SluiceSharding
import SluiceStreams
import SluiceTesting
import Synchronization
import Testing

/// What entities saw, across instances: per entity the sequence numbers in order, and any overlap.
final class EntityLedger: Sendable {
    private let state = Mutex<(seen: [String: [Int]], active: Set<String>, overlap: Bool, busy: Int, peak: Int)>(([:], [], false, 0, 0))
    func begin(_ id: String) {
        state.withLock { state in
            if state.active.contains(id) { state.overlap = true }
            state.active.insert(id)
            state.busy += 1
            state.peak = max(state.peak, state.busy)
        }
    }
    func end(_ id: String, _ sequence: Int) {
        state.withLock { state in
            state.active.remove(id)
            state.busy -= 1
            state.seen[id, default: []].append(sequence)
        }
    }
    var seen: [String: [Int]] { state.withLock { $0.seen } }
    var overlap: Bool { state.withLock { $0.overlap } }
    var peak: Int { state.withLock { $0.peak } }
    var total: Int { state.withLock { $0.seen.values.map(\.count).reduce(0, +) } }
}

/// An entity recording each message's sequence number; keys ending in 0 are slow.
func ledgerEntity(_ id: String, _ ledger: EntityLedger) -> Behavior<Int> {
    Behaviors.receiveMessage { sequence in
        ledger.begin(id)
        if id.hasSuffix("0") { try? await Task.sleep(for: .milliseconds(2)) } else { await Task.yield() }
        ledger.end(id, sequence)
        return .same
    }
}

func sequenceOf(_ message: KafkaConsumerMessage) throws -> Int {
    Int(message.valueString!.split(separator: ":")[1].prefix { $0.isNumber })!
}

/// One instance: an actor system, a region, and a committable source → sharded entities → committer pipeline.
struct ShardedInstance {
    let system: ActorSystem
    let region: ShardRegion<Int>
    let control: KafkaConsumerControl
    let completion: StreamCompletion<Void>

    static func start(
        topic: String, groupID: String, ledger: EntityLedger, name: String, maxLiveEntities: Int = 2000
    ) async throws -> ShardedInstance {
        let system = ActorSystem(name: name)
        var regionSettings = ShardRegionSettings()
        regionSettings.maxLiveEntities = maxLiveEntities
        let region = try ShardRegion(system: system, typeKey: EntityTypeKey<Int>("counter"), settings: regionSettings) { id in
            ledgerEntity(id, ledger)
        }
        let settings = ShardedEntities.handOff(try await testSourceSettings(topic: topic, groupID: groupID), region: region)
        let (control, completion) = try KafkaSource.committable(settings)
            .via(ShardedEntities.flow(region: region, parallelism: 500, decode: sequenceOf))
            .map { delivery -> CommittableOffset in
                precondition(delivery.isProcessed, "entity failed: \(delivery.outcome)")
                return delivery.message.committableOffset
            }
            .toMat(KafkaCommitter.sink(KafkaCommitterSettings(maxBatch: 200, maxInterval: .milliseconds(100))), Keep.both)
            .run()
        return ShardedInstance(system: system, region: region, control: control, completion: completion)
    }

    func drain() async throws {
        _ = try await control.drainAndShutdown(completion, timeout: .seconds(30))
        await region.shutdown()
        await system.shutdown()
    }
}

@Suite("Sharded entities over the real broker", .serialized, .timeLimit(.minutes(4)))
struct ShardedEntitiesTests {
    // The full size (10,000 keys, 200,000 messages) runs in `sluice-bench entities`; the test keeps the same
    // shape at a size a debug build on two cores handles in seconds.
    @Test("2,000 keys, 20,000 messages: in offset order per entity, slow entities do not serialize the rest, passivation under load")
    func orderPerKeyAndParallelism() async throws {
        try await withTestTopic(partitions: 4) { topic in
            let keys = 2000
            let perKey = 10
            _ = try await produceSequenced(topic: topic, keys: keys, perKey: perKey)
            let ledger = EntityLedger()
            // At most 500 live entities for 2,000 keys: entities are passivated and started again all along.
            let instance = try await ShardedInstance.start(
                topic: topic, groupID: uniqueTestName("group"), ledger: ledger, name: "one", maxLiveEntities: 500)
            var peakLive = 0
            try await Eventually.require(timeout: .seconds(120), "every message reaches its entity") {
                peakLive = max(peakLive, instance.region.liveEntityCount)
                return ledger.total == keys * perKey
            }
            let passivations = instance.region.passivationCount
            try await instance.drain()
            #expect(!ledger.overlap, "an entity handled two messages at once")
            for key in 0..<keys {
                #expect(ledger.seen["key-\(key)"] == Array(0..<perKey), "key-\(key) out of order or incomplete")
            }
            #expect(peakLive <= 500, "live entities exceeded the maximum")
            #expect(passivations > 0, "no entity was passivated")
            // Slow entities (2 ms per message) ran side by side with the others.
            #expect(ledger.peak >= 20, "peak concurrency was only \(ledger.peak)")
            print("sharded: peak \(ledger.peak) entities busy at once, peak \(peakLive) live, \(passivations) passivations")
        }
    }

    @Test("two instances, a rebalance mid-stream: entities move with partitions, never run twice at once, nothing lost or repeated")
    func entitiesMoveWithPartitions() async throws {
        try await withTestTopic(partitions: 4) { topic in
            let keys = 200
            let perKey = 60
            _ = try await produceSequenced(topic: topic, keys: keys, perKey: perKey)
            let ledger = EntityLedger()
            let groupID = uniqueTestName("group")
            let first = try await ShardedInstance.start(topic: topic, groupID: groupID, ledger: ledger, name: "first")
            try await Eventually.require(timeout: .seconds(60), "the first instance is under way") { ledger.total > 1000 }
            let second = try await ShardedInstance.start(topic: topic, groupID: groupID, ledger: ledger, name: "second")
            try await Eventually.require(timeout: .seconds(60), "both instances own partitions") {
                !first.control.metrics.assignment.isEmpty && !second.control.metrics.assignment.isEmpty
            }
            try await Eventually.require(timeout: .seconds(120), "every message is processed") { ledger.total >= keys * perKey }
            try await first.drain()
            try await second.drain()
            #expect(!ledger.overlap, "an entity ran on two instances at once")
            #expect(ledger.total == keys * perKey, "messages were processed twice")
            for key in 0..<keys {
                #expect(ledger.seen["key-\(key)"] == Array(0..<perKey), "key-\(key) lost, repeated or out of order")
            }
        }
    }

    @Test("ids from a JSON field that disagree with keys are repartitioned: each entity lives in exactly one shard")
    func repartitionByJSONField() async throws {
        let input = uniqueTestName("orders")
        let admin = try await makeTestAdmin()
        try await admin.createTopic(KafkaTopicSpecification(name: input, partitions: 3))
        let repartitionTopic = Repartition.topicName(group: uniqueTestName("group"), entityType: "customer")
        try await Repartition.ensureTopic(repartitionTopic, partitions: 3, admin: admin)
        try await Repartition.ensureTopic(repartitionTopic, partitions: 3, admin: admin)
        await #expect(throws: RepartitionError.self) {
            try await Repartition.ensureTopic(repartitionTopic, partitions: 5, admin: admin)
        }

        // Keys are order ids (random), entity ids are customers inside the JSON: they disagree.
        let producer = try KafkaProducer(configuration: try await makeTestProducerConfiguration())
        let customers = 20
        let perCustomer = 30
        for sequence in 0..<perCustomer {
            for customer in 0..<customers {
                _ = try await producer.send(
                    KafkaProducerMessage(
                        topic: input, key: "order-\(UInt32.random(in: 0...UInt32.max))",
                        value: "{\"customer\": {\"id\": \"c\(customer)\"}, \"sequence\": \(sequence)}"))
            }
        }

        // Stage one: input → repartition topic keyed by customer id → commit the input.
        let (routeControl, routed) = try KafkaSource.committable(try await testSourceSettings(topic: input))
            .via(Repartition.flow(producer: producer, topic: repartitionTopic, entityID: .jsonField("customer.id")))
            .toMat(KafkaCommitter.sink(), Keep.both).run()

        // Stage two: the repartition topic → entities by key; record each entity's partitions and sequences.
        let shardsByEntity = Mutex<[String: Set<Int32>]>([:])
        let sequences = Mutex<[String: [Int]]>([:])
        let system = ActorSystem(name: "repartition")
        let region = try ShardRegion(system: system, typeKey: EntityTypeKey<KafkaConsumerMessage>("customer")) { id in
            Behaviors.receiveMessage { message in
                let json = try JSONSerialization.jsonObject(with: Data(message.value!)) as! [String: Any]
                sequences.withLock { $0[id, default: []].append(json["sequence"] as! Int) }
                shardsByEntity.withLock { _ = $0[id, default: []].insert(message.partition) }
                return .same
            }
        }
        let entitySettings = ShardedEntities.handOff(try await testSourceSettings(topic: repartitionTopic), region: region)
        let (entityControl, entitiesDone) = try KafkaSource.committable(entitySettings)
            .via(ShardedEntities.flow(region: region) { $0 })
            .map { $0.message.committableOffset }
            .toMat(KafkaCommitter.sink(), Keep.both).run()

        try await Eventually.require(timeout: .seconds(90), "every order reaches its customer entity") {
            sequences.withLock { $0.values.map(\.count).reduce(0, +) } == customers * perCustomer
        }
        _ = try await routeControl.drainAndShutdown(routed, timeout: .seconds(30))
        _ = try await entityControl.drainAndShutdown(entitiesDone, timeout: .seconds(30))
        await region.shutdown()
        await system.shutdown()
        try await producer.close()

        #expect(shardsByEntity.withLock { $0.values.allSatisfy { $0.count == 1 } }, "an entity was served by two shards")
        // Every order reached its customer exactly once. (Their order is not the produce order: the input was keyed
        // by order id, so one customer's orders were spread over input partitions, which have no common order.)
        for customer in 0..<customers {
            #expect(sequences.withLock { $0["c\(customer)"] }?.sorted() == Array(0..<perCustomer))
        }
        // The entity's shard is the partition its id hashes to, with the producer's partitioner.
        for (entity, shards) in shardsByEntity.withLock({ $0 }) {
            #expect(shards.first == KafkaPartitioner.consistentRandom.partition(forKey: Array(entity.utf8), partitionCount: 3))
        }
    }

    @Test("a poison message goes to the dead-letter path and is acknowledged; its partition keeps flowing")
    func poisonMessage() async throws {
        try await withTestTopic(partitions: 1) { topic in
            let deadLetters = uniqueTestName("dlq")
            let admin = try await makeTestAdmin()
            try await admin.createTopic(KafkaTopicSpecification(name: deadLetters))
            let producer = try KafkaProducer(configuration: try await makeTestProducerConfiguration())
            for index in 0..<50 {
                _ = try await producer.send(KafkaProducerMessage(topic: topic, key: "k\(index % 5)", value: index == 17 ? "poison" : "ok:\(index)"))
            }
            let system = ActorSystem(name: "poison")
            var regionSettings = ShardRegionSettings()
            regionSettings.supervision = .restartImmediately(maxRestarts: 100)
            let handled = Mutex(0)
            let region = try ShardRegion(system: system, typeKey: EntityTypeKey<String>("k"), settings: regionSettings) { _ in
                Behaviors.receiveMessage { value in
                    if value == "poison" { throw TestFailure(value: 17) }
                    handled.withLock { $0 += 1 }
                    return .same
                }
            }
            let settings = ShardedEntities.handOff(try await testSourceSettings(topic: topic), region: region)
            let (control, completion) = try KafkaSource.committable(settings)
                .via(ShardedEntities.flow(region: region) { $0.valueString ?? "" })
                .map { delivery -> ProducerEnvelope<CommittableOffset> in
                    guard case .failed(let error) = delivery.outcome else { return .passThrough(delivery.message.committableOffset) }
                    let message = delivery.message.message
                    return .single(
                        KafkaProducerMessage(
                            topic: deadLetters, key: message.key, value: message.value,
                            headers: message.headers + [
                                KafkaHeader(name: "sluice.error", string: "\(error)"),
                                KafkaHeader(name: "sluice.source.offset", string: "\(message.offset)"),
                            ]),
                        delivery.message.committableOffset)
                }
                .via(KafkaProducerStages.flow(producer: producer))
                .map { $0.passThrough }
                .toMat(KafkaCommitter.sink(KafkaCommitterSettings(maxBatch: 10, maxInterval: .milliseconds(50))), Keep.both).run()
            try await Eventually.require(timeout: .seconds(60), "the partition is committed past the poison message") {
                try await control.kafkaConsumer.committed([KafkaTopicPartition(topic: topic, partition: 0)]).first?.offset == 50
            }
            #expect(handled.withLock { $0 } == 49)
            _ = try await control.drainAndShutdown(completion, timeout: .seconds(30))
            await region.shutdown()
            await system.shutdown()
            try await producer.close()

            let reader = try KafkaConsumer(configuration: try await makeTestConsumerConfiguration())
            try reader.subscribe(topics: [deadLetters])
            var iterator = reader.messages.makeAsyncIterator()
            let dead = try #require(try await iterator.next())
            await reader.close()
            #expect(dead.valueString == "poison")
            #expect(dead.headers.first { $0.name == "sluice.source.offset" }?.stringValue == "17")
        }
    }
}

struct TestFailure: Error { let value: Int }
