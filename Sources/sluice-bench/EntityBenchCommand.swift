import ArgumentParser
import Foundation
import Logging
import SluiceActors
import SluiceKafka
import SluiceKafkaStreams
import SluiceSharding
import SluiceStreams
import Synchronization

/// `sluice-bench entities`: the actor layer's figures. Each Kafka figure is compared with the plain committable
/// pipeline (source → committer) measured in the same run on the same topic.
struct EntityBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "entities",
        abstract: "Actors and sharded entities: throughput through N entities, idle-entity memory, tell/ask, key parallelism.")

    @Option(help: "Messages per entity-throughput run (at least the number of keys).")
    var messages = 200_000

    @Option(help: "Distinct keys (entities) per entity-throughput run, comma-separated.")
    var keys = "1,100,10000,1000000"

    @Option(help: "Idle entities to create for the memory figure.")
    var idleEntities = 1_000_000

    @Option(help: "Messages for the key-parallelism scenario (on one partition).")
    var parallelMessages = 10_000

    @Option(help: "Key counts for the key-parallelism scenario, comma-separated.")
    var parallelKeys = "1,10,100,10000"

    @Option(help: "Which parts to run, comma-separated: throughput, memory, tell, parallel.")
    var parts = "tell,memory,throughput,parallel"

    @Option(help: "Bootstrap servers (host:port,...). Default: $SLUICE_BOOTSTRAP.")
    var bootstrap: String?

    /// Warnings only: the figures are the output.
    static let logger = warningsOnlyLogger()

    func run() async throws {
        let selected = Set(parts.split(separator: ",").map(String.init))
        if selected.contains("tell") { try await tellAndAsk() }
        if selected.contains("memory") { try await idleMemory() }
        guard selected.contains("throughput") || selected.contains("parallel") else { return }
        guard let servers = bootstrap ?? ProcessInfo.processInfo.environment["SLUICE_BOOTSTRAP"] else {
            throw ValidationError("no broker: pass --bootstrap or set SLUICE_BOOTSTRAP (scripts/bench starts one)")
        }
        let bootstrapServers = servers.split(separator: ",").map(String.init)
        if selected.contains("throughput") { try await throughput(bootstrapServers) }
        if selected.contains("parallel") { try await keyParallelism(bootstrapServers) }
    }

    // MARK: tell and ask

    func tellAndAsk() async throws {
        let system = ActorSystem(name: "bench")
        let count = 2_000_000
        let received = AtomicCounter()
        let done = OneShotSignal()
        let sink = try system.spawn(
            Behaviors.receiveMessage { (_: Int) in
                if received.increment() == count { done.fire() }
                return .same
            }, name: "sink", mailboxCapacity: 10_000)
        let start = ContinuousClock.now
        for index in 0..<count { await sink.send(index) }
        await done.wait()
        let tellSeconds = (ContinuousClock.now - start).seconds

        enum Ping: Sendable { case ping(ActorRef<Int>) }
        let ponger = try system.spawn(
            Behaviors.receiveMessage { (message: Ping) in
                if case .ping(let replyTo) = message { replyTo.tell(1) }
                return .same
            }, name: "ponger")
        let asks = 200_000
        let askStart = ContinuousClock.now
        for _ in 0..<asks { _ = try await ponger.ask(timeout: .seconds(5)) { Ping.ping($0) } }
        let askSeconds = (ContinuousClock.now - askStart).seconds
        await system.shutdown()
        print(renderTable([
            ["actor messaging", "messages", "seconds", "msgs/s"],
            ["send (tell, waiting for room) to one actor", grouped(Double(count)), fixed(tellSeconds, 2), grouped(Double(count) / tellSeconds)],
            ["ask round trips, one at a time", grouped(Double(asks)), fixed(askSeconds, 2), grouped(Double(asks) / askSeconds)],
        ]))
        print()
    }

    // MARK: idle memory

    func idleMemory() async throws {
        let system = ActorSystem(name: "memory")
        var settings = ShardRegionSettings()
        settings.maxLiveEntities = idleEntities + 1
        settings.idleTimeout = nil
        let region = try ShardRegion(system: system, typeKey: EntityTypeKey<Int>("idle"), settings: settings) { _ in
            Behaviors.receiveMessage { _ in .same }
        }
        // Warm up allocator and runtime so the figure is the entities' own cost.
        for index in 0..<1000 { await region.deliver(index, to: "warm-\(index)", shard: 0) { _ in } }
        let before = residentBytes()
        let processed = AtomicCounter()
        for index in 0..<idleEntities {
            await region.deliver(index, to: "entity-\(index)", shard: Int32(index % 16)) { _ in
                _ = processed.increment()
            }
        }
        while processed.value < idleEntities { try await Task.sleep(for: .milliseconds(10)) }
        let after = residentBytes()
        let perEntity = Double(after - before) / Double(idleEntities)
        print(renderTable([
            ["idle entities", "resident before", "resident after", "bytes per idle entity"],
            [grouped(Double(idleEntities)), "\(before >> 20) MiB", "\(after >> 20) MiB", grouped(perEntity)],
        ]))
        print("(each idle entity: its actor cell with an empty bounded mailbox and its behaviour, no task; plus the "
            + "region's entry and least-recently-used node; target <= 2,048 bytes)\n")
        await region.shutdown()
        await system.shutdown()
    }

    // MARK: throughput through N entities

    func throughput(_ servers: [String]) async throws {
        let admin = try KafkaAdminClient(configuration: KafkaClientConfiguration(bootstrapServers: servers))
        var rows = [["distinct keys", "messages", "plain committable msgs/s", "through entities msgs/s", "ratio"]]
        for keyCount in keys.split(separator: ",").compactMap({ Int($0) }) {
            let count = max(messages, keyCount)
            let topic = "bench-entities-\(UInt32.random(in: 0...UInt32.max))"
            try await admin.createTopic(KafkaTopicSpecification(name: topic, partitions: 4))
            try await Self.produce(servers, topic: topic, count: count, keys: keyCount)
            let plain = try await runPipeline(servers, topic: topic, count: count, entities: nil)
            let system = ActorSystem(name: "throughput")
            let region = try makeSumRegion(system: system, keys: keyCount)
            let entities = try await runPipeline(servers, topic: topic, count: count, entities: region)
            await region.shutdown()
            await system.shutdown()
            rows.append([
                grouped(Double(keyCount)), grouped(Double(count)), grouped(plain), grouped(entities), fixed(entities / plain, 2),
            ])
            progress("  keys \(keyCount): plain \(grouped(plain)) msgs/s, entities \(grouped(entities)) msgs/s")
        }
        print(renderTable(rows))
        print("(committable source → [sharded entities] → committer, 4 partitions, 100-byte values; target: 10,000 "
            + "entities >= 0.5x the plain committable pipeline)\n")
    }

    static func produce(_ servers: [String], topic: String, count: Int, keys: Int) async throws {
        let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(bootstrapServers: servers), logger: Self.logger)
        let payload = [UInt8](repeating: 0x61, count: 100)
        for index in 0..<count {
            try await producer.send(
                KafkaProducerMessage(topic: topic, key: Array("k\(index % keys)".utf8), value: payload)) { _ in }
        }
        try await producer.close()
    }

    /// Messages per second from the first message to the last acknowledgement, through the region's entities or
    /// (without a region) straight to the committer.
    func runPipeline(_ servers: [String], topic: String, count: Int, entities region: ShardRegion<Int>?) async throws -> Double {
        guard let region else {
            return try await measureCommittablePipeline(
                servers, topic: topic, count: count, logger: Self.logger,
                stage: Flow<CommittableMessage, CommittableMessage, Void>().map(\.committableOffset))
        }
        return try await measureCommittablePipeline(
            servers, topic: topic, count: count, logger: Self.logger,
            settings: { ShardedEntities.handOff($0, region: region) },
            stage: ShardedEntities.flow(region: region, parallelism: 10_000) { _ in 1 }.map(\.message.committableOffset))
    }

    // MARK: key-level parallelism (Confluent Parallel Consumer's published scenario)

    func keyParallelism(_ servers: [String]) async throws {
        let admin = try KafkaAdminClient(configuration: KafkaClientConfiguration(bootstrapServers: servers))
        let published: [Int: Double] = [1: 26.7, 10: 3.3, 100: 2.18, 10_000: 2.13]
        var rows = [["keys", "Sluice seconds", "floor seconds", "Sluice / floor", "Parallel Consumer seconds"]]
        for keyCount in parallelKeys.split(separator: ",").compactMap({ Int($0) }) {
            let topic = "bench-parallel-\(UInt32.random(in: 0...UInt32.max))"
            try await admin.createTopic(KafkaTopicSpecification(name: topic, partitions: 1))
            try await Self.produce(servers, topic: topic, count: parallelMessages, keys: keyCount)
            // Seeded work durations, 0-5 ms, the same for every key count.
            var generator = SplitMix(seed: 42)
            let durations = (0..<parallelMessages).map { _ in Int(generator.next() % 5001) }  // microseconds
            let floor = Self.floor(durations: durations, keys: keyCount, parallelism: 100)
            let system = ActorSystem(name: "parallel")
            var settings = ShardRegionSettings()
            settings.maxLiveEntities = max(keyCount, 100)
            settings.idleTimeout = nil
            let region = try ShardRegion(system: system, typeKey: EntityTypeKey<Int>("work"), settings: settings) { _ in
                Behaviors.receiveMessage { micros in
                    try? await Task.sleep(for: .microseconds(micros))
                    return .same
                }
            }
            var consumer = KafkaConsumerConfiguration(bootstrapServers: servers, groupID: "bench-\(UInt32.random(in: 0...UInt32.max))")
            consumer.sessionTimeout = .seconds(6)
            let sourceSettings = ShardedEntities.handOff(KafkaSourceSettings(consumer: consumer, subscription: .topics([topic])), region: region)
            let acknowledged = AtomicCounter()
            let first = Mutex<ContinuousClock.Instant?>(nil)
            let done = OneShotSignal()
            let total = parallelMessages
            let (control, completion) = try KafkaSource.committable(sourceSettings, logger: Self.logger)
                .map { message -> CommittableMessage in
                    first.withLock { if $0 == nil { $0 = .now } }
                    return message
                }
                // At most 100 messages in progress, as in Parallel Consumer's scenario.
                .via(ShardedEntities.flow(region: region, parallelism: 100) { durations[Int($0.offset)] })
                .map { delivery -> CommittableOffset in
                    if acknowledged.increment() == total { done.fire() }
                    return delivery.message.committableOffset
                }
                .toMat(KafkaCommitter.sink(), Keep.both).run()
            await done.wait()
            let seconds = (ContinuousClock.now - first.withLock { $0! }).seconds
            _ = try await control.drainAndShutdown(completion, timeout: .seconds(30))
            await region.shutdown()
            await system.shutdown()
            rows.append([
                grouped(Double(keyCount)), fixed(seconds, 2), fixed(floor, 2), fixed(seconds / floor, 2),
                published[keyCount].map { fixed($0, 2) } ?? "-",
            ])
            progress("  \(keyCount) keys: \(fixed(seconds, 2)) s (floor \(fixed(floor, 2)) s)")
        }
        print(renderTable(rows))
        print("(\(grouped(Double(parallelMessages)))) messages on 1 partition, each handled by async work of a seeded random "
            + "0-5 ms, at most 100 in progress; floor = the work itself: per key in order, 100 at a time; target: "
            + "within 2x of the floor at every key count)\n")
    }

    /// The shortest possible time: keys run their messages in order, at most `parallelism` at once (simulated
    /// greedily in offset order).
    static func floor(durations: [Int], keys: Int, parallelism: Int) -> Double {
        var keyReady = [Double](repeating: 0, count: keys)
        var slots = [Double](repeating: 0, count: parallelism)
        var end = 0.0
        for (index, micros) in durations.enumerated() {
            let key = index % keys
            let slot = slots.indices.min { slots[$0] < slots[$1] }!
            let start = max(slots[slot], keyReady[key])
            let finish = start + Double(micros) / 1e6
            slots[slot] = finish
            keyReady[key] = finish
            end = max(end, finish)
        }
        return end
    }
}

/// A small seeded generator (SplitMix64), so the work durations are the same in every run.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// A counter shared by closures.
final class AtomicCounter: Sendable {
    private let count = Atomic<Int>(0)
    /// Adds one and returns the new value.
    func increment() -> Int { count.wrappingAdd(1, ordering: .relaxed).newValue }
    var value: Int { count.load(ordering: .relaxed) }
}

/// The process's resident set size in bytes.
func residentBytes() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
    return (Int(text.split(separator: " ").dropFirst().first ?? "0") ?? 0) * Int(sysconf(Int32(_SC_PAGESIZE)))
}

/// Writes a progress line to standard error (the report goes to standard output).
func progress(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}
