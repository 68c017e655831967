import ArgumentParser
import Foundation
import Logging
import SluiceActors
import SluiceKafka
import SluiceKafkaStreams
import SluicePersistence
import SluiceSharding
import SluiceStreams
import Synchronization

/// `sluice-bench persistence`: event-sourced entities. Throughput is compared with the non-persistent entity pipeline
/// measured in the same run on the same topic.
struct PersistenceBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "persistence",
        abstract: "Persistent entities: persisted events/s (SQLite, Kafka changelog) against non-persistent entities, recovery and restore times.")

    @Option(help: "Messages per throughput run (one event each).")
    var messages = 200_000

    @Option(help: "Distinct keys (entities).")
    var keys = 10_000

    @Option(help: "Events of the entity whose recovery is timed.")
    var recoveryEvents = 10_000

    @Option(help: "Which parts to run, comma-separated: throughput, recovery, journal (SQLite appends alone).")
    var parts = "throughput,recovery"

    @Option(help: "Journals for the throughput part, comma-separated: sqlite, kafka, null (stores nothing, returns at once: the persistence layer's own cost), waiting-null (stores nothing, but each append waits for another thread: the cost of waiting for durability).")
    var journals = "null,waiting-null,sqlite,kafka"

    @Option(help: "SQLite durability: full (fsync per commit, the default) or normal.")
    var sqliteDurability = "full"

    @Option(help: "The Kafka changelog producer's compression: none, lz4 (the journal's default), zstd, snappy or gzip.")
    var changelogCompression = "lz4"

    @Option(help: "The Kafka changelog producer's linger, in milliseconds.")
    var changelogLinger = 5

    @Option(help: "SQLite operations per transaction (group commit size limit). Default: the journal's default (SQLiteJournalConfiguration.maxOperationsPerTransaction).")
    var sqliteBatch: Int?

    @Option(help: "How events and snapshots are encoded: json (PersistenceCodec.json, the default for Codable types) or binary (a hand-written codec: one byte per event, eight per snapshot), to tell the encoding's cost from the rest.")
    var codec = "json"

    @Option(help: "Rounds of the throughput part; the report gives the median of each journal's ratios.")
    var rounds = 3

    @Option(help: "Bootstrap servers (host:port,...). Default: $SLUICE_BOOTSTRAP.")
    var bootstrap: String?

    static let logger = warningsOnlyLogger()

    func run() async throws {
        let selected = Set(parts.split(separator: ",").map(String.init))
        guard let servers = bootstrap ?? ProcessInfo.processInfo.environment["SLUICE_BOOTSTRAP"] else {
            throw ValidationError("no broker: pass --bootstrap or set SLUICE_BOOTSTRAP (scripts/bench starts one)")
        }
        let bootstrapServers = servers.split(separator: ",").map(String.init)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-bench-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        if selected.contains("throughput") { try await throughput(bootstrapServers, directory: directory) }
        if selected.contains("recovery") { try await recovery(bootstrapServers, directory: directory) }
        if selected.contains("journal") { try await journalCeiling(directory: directory) }
    }

    // MARK: journal ceiling

    /// Appends straight to a SQLite journal from `keys` concurrent writers (no Kafka, no actors): the journal's own
    /// ceiling.
    func journalCeiling(directory: URL) async throws {
        let journal = try await SQLiteJournal(path: directory.appendingPathComponent("ceiling.db").path)
        let perWriter = max(messages / keys, 1)
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for writer in 0..<keys {
                group.addTask {
                    let id = PersistenceID(entityType: "counter", entityID: "k\(writer)")
                    for sequenceNumber in 1...Int64(perWriter) {
                        try await journal.append(
                            JournalAppend(
                                persistenceID: id,
                                events: [JournalEvent(sequenceNumber: sequenceNumber, manifest: "Event", version: 1, payload: Array("\"incremented\"".utf8))],
                                inputOffset: InputOffset(topic: "bench", partition: Int32(writer % 4), offset: sequenceNumber)))
                    }
                }
            }
            try await group.waitForAll()
        }
        let seconds = (ContinuousClock.now - start).seconds
        let statistics = journal.statistics
        await journal.close()
        print(renderTable([
            ["SQLite journal alone", "appends", "transactions", "seconds", "appends/s"],
            ["\(grouped(Double(keys))) concurrent writers", grouped(Double(statistics.appends)), grouped(Double(statistics.writeTransactions)), fixed(seconds, 2), grouped(Double(statistics.appends) / seconds)],
        ]))
        print()
    }

    // MARK: throughput

    func throughput(_ servers: [String], directory: URL) async throws {
        let admin = try KafkaAdminClient(configuration: KafkaClientConfiguration(bootstrapServers: servers))
        let topic = "bench-persistence-\(UInt32.random(in: 0...UInt32.max))"
        try await admin.createTopic(KafkaTopicSpecification(name: topic, partitions: 4))
        try await EntityBenchCommand.produce(servers, topic: topic, count: messages, keys: keys)
        progress("  produced \(grouped(Double(messages))) messages over \(grouped(Double(keys))) keys")

        // Each persistent run is compared with the non-persistent pipeline (the same entity shape, a counter,
        // without a journal) measured just before and just after it, and the report gives the median of those
        // ratios over the rounds: this machine's speed drifts by up to 2x within minutes, so only neighbours compare.
        let selected = Set(journals.split(separator: ",").map(String.init))
        let kinds: [(key: String, name: String, target: String)] = [
            ("null", "persistent, journal that stores nothing at once", ""),
            ("waiting-null", "persistent, journal that waits but stores nothing", ""),
            ("sqlite", "persistent, SQLite journal", ">= 0.3"),
            ("kafka", "persistent, Kafka changelog", ">= 0.5"),
        ].filter { selected.contains($0.key) }
        var plainRates: [Double] = []
        var plainCPU: [Double] = []
        var cpu: [String: [Double]] = [:]
        var rates: [String: [Double]] = [:]
        var ratios: [String: [Double]] = [:]
        var changelogTopic = ""
        for round in 1...rounds {
            let first = try await nonPersistent(servers, topic: topic)
            var before = first.rate
            plainRates.append(before)
            plainCPU.append(first.cpuPerMessage)
            progress("  round \(round): non-persistent entities: \(grouped(before)) msgs/s, "
                + "\(fixed(first.cpuPerMessage, 1)) CPU µs/msg\(allocationNote(first))")
            for kind in kinds {
                let run: Measurement
                switch kind.key {
                case "null", "waiting-null":
                    let journal = NullJournal(waits: kind.key == "waiting-null")
                    run = try await persistent(servers, topic: topic, journal: journal)
                    await journal.close()
                case "sqlite":
                    var configuration = SQLiteJournalConfiguration(
                        path: directory.appendingPathComponent("throughput-\(round).db").path)
                    if let sqliteBatch { configuration.maxOperationsPerTransaction = sqliteBatch }
                    configuration.durability = sqliteDurability == "normal" ? .normal : .full
                    let sqlite = try await SQLiteJournal(configuration)
                    run = try await persistent(servers, topic: topic, journal: sqlite)
                    let statistics = sqlite.statistics
                    await sqlite.close()
                    progress("    \(statistics.appends) appends in \(statistics.writeTransactions) transactions")
                default:
                    changelogTopic = "\(topic)-changelog-\(round)"
                    var configuration = KafkaChangelogJournalConfiguration(
                        bootstrapServers: servers, topic: changelogTopic, inputTopic: topic)
                    configuration.linger = .milliseconds(changelogLinger)
                    configuration.compression = changelogCompression
                    let changelog = try await KafkaChangelogJournal(configuration, logger: Self.logger)
                    run = try await persistent(servers, topic: topic, journal: changelog)
                    await changelog.close()
                }
                let next = try await nonPersistent(servers, topic: topic)
                let (rate, after) = (run.rate, next.rate)
                plainRates.append(after)
                plainCPU.append(next.cpuPerMessage)
                let ratio = rate / ((before + after) / 2)
                progress("  round \(round): \(kind.name): \(grouped(rate)) msgs/s, \(fixed(ratio, 2))x, "
                    + "\(fixed(run.cpuPerMessage, 1)) CPU µs/msg\(allocationNote(run)) (non-persistent "
                    + "\(grouped(before)) before, \(grouped(after)) after, \(fixed(next.cpuPerMessage, 1)) CPU µs/msg)")
                rates[kind.key, default: []].append(rate)
                cpu[kind.key, default: []].append(run.cpuPerMessage)
                ratios[kind.key, default: []].append(ratio)
                before = after
            }
        }
        var rows = [
            ["pipeline (\(grouped(Double(keys))) entities), median of \(rounds)", "msgs/s = events/s", "ratio to non-persistent", "per round", "target", "CPU µs/msg"],
            ["non-persistent entities", grouped(median(plainRates)), "1.00", "", "", fixed(median(plainCPU), 1)],
        ]
        for kind in kinds {
            rows.append([
                kind.name, grouped(median(rates[kind.key]!)), fixed(median(ratios[kind.key]!), 2),
                ratios[kind.key]!.map { fixed($0, 2) }.joined(separator: " "), kind.target,
                fixed(median(cpu[kind.key]!), 1),
            ])
        }
        print(renderTable(rows))
        print("(committable source → sharded entities → committer, 4 partitions, \(grouped(Double(messages))) messages, "
            + "100-byte values; a persistent entity persists one event per message before its offset is committable "
            + "(\(codec) encoding); "
            + "each ratio is against the mean of the non-persistent runs just before and after it)\n")
        guard selected.contains("kafka") else { return }

        // Restore: the last changelog written, read back by a new journal, all partitions, then one.
        rows = [["changelog restore", "records", "entities", "events", "seconds", "records/s"]]
        for partitions in [Array(Int32(0)..<4), [Int32(0)]] {
            let journal = try await KafkaChangelogJournal(
                KafkaChangelogJournalConfiguration(bootstrapServers: servers, topic: changelogTopic, inputTopic: topic),
                logger: Self.logger)
            let restored = try await journal.restore(partitions: partitions)
            await journal.close()
            let seconds = restored.duration.seconds
            rows.append([
                partitions.count == 1 ? "one partition" : "all \(partitions.count) partitions",
                grouped(Double(restored.records)), grouped(Double(restored.entities)), grouped(Double(restored.events)),
                fixed(seconds, 2), grouped(Double(restored.records) / seconds),
            ])
        }
        print(renderTable(rows))
        print("(what a new owner reads before a partition's entities take their first message)\n")
    }

    /// The non-persistent pipeline: a counter entity per key, no journal.
    func nonPersistent(_ servers: [String], topic: String) async throws -> Measurement {
        let system = ActorSystem(name: "plain")
        let region = try makeSumRegion(system: system, keys: keys)
        let run = try await measure(servers, topic: topic, handOff: { ShardedEntities.handOff($0, region: region) }) {
            ShardedEntities.flow(region: region, parallelism: 10_000) { _ in 1 }
        }
        await region.shutdown()
        await system.shutdown()
        return run
    }

    /// The persistent pipeline: counter entities persisting one event per message to `journal`.
    func persistent(_ servers: [String], topic: String, journal: any Journal) async throws -> Measurement {
        let system = ActorSystem(name: "persistent")
        var settings = PersistentEntitiesSettings(entityType: "counter")
        settings.region.maxLiveEntities = max(keys, 1000)
        settings.region.idleTimeout = nil
        let entities = try PersistentShardedEntities(
            system: system, settings: settings, journal: journal, logger: Self.logger
        ) { [codec] id in
            Self.counter(id, binary: codec == "binary")
        }
        let result = try await measure(servers, topic: topic, handOff: entities.handOff) {
            entities.flow(parallelism: 10_000) { _ in .increment }
        }
        await entities.shutdown()
        await system.shutdown()
        return result
    }

    enum Command: Codable, Sendable { case increment }
    enum Event: Codable, Sendable { case incremented }

    static func counter(
        _ id: PersistenceID, snapshotEvery: Int? = 1000, binary: Bool = false
    ) -> EventSourcedBehavior<Command, Event, Int, Int> {
        EventSourcedBehavior(
            persistenceID: id, emptyState: 0, eventCodec: binary ? binaryEvents : .json(),
            snapshotCodec: binary ? binaryCounts : .json(), snapshotEvery: snapshotEvery,
            commandHandler: { _, _ in .persist(.incremented) }, eventHandler: { count, _ in count + 1 })
    }

    /// The event as one byte.
    static let binaryEvents = PersistenceCodec<Event>(
        manifest: "Event", version: 1, encode: { _ in [1] },
        decode: { _, payload in
            guard payload == [1] else { throw BenchError("not an encoded event: \(payload)") }
            return .incremented
        })

    /// The count as eight little-endian bytes.
    static let binaryCounts = PersistenceCodec<Int>(
        manifest: "Count", version: 1, encode: { count in withUnsafeBytes(of: Int64(count).littleEndian) { Array($0) } },
        decode: { _, payload in
            guard payload.count == 8 else { throw BenchError("not an encoded count: \(payload)") }
            return Int(Int64(littleEndian: payload.withUnsafeBytes { $0.loadUnaligned(as: Int64.self) }))
        })

    func allocationNote(_ measurement: Measurement) -> String {
        measurement.allocationsPerMessage.map { ", \(fixed($0, 1)) allocations/msg" } ?? ""
    }

    struct Measurement {
        var rate: Double
        /// The process's CPU time (all threads, user and system) per message, in microseconds, from the pipeline's
        /// start to its shutdown.
        var cpuPerMessage: Double
        /// Allocation requests per message over the same span (see ``allocationRequests()``): independent of the
        /// machine's speed, so two builds compare on a noisy machine.
        var allocationsPerMessage: Double?
    }

    /// Messages per second through `flow` (every message must be processed by its entity).
    func measure(
        _ servers: [String], topic: String, handOff: @escaping (KafkaSourceSettings) -> KafkaSourceSettings,
        flow: () -> Flow<CommittableMessage, EntityDelivery, Void>
    ) async throws -> Measurement {
        let failed = AtomicCounter()
        let cpuBefore = processCPUSeconds()
        let allocationsBefore = allocationRequests()
        let rate = try await measureCommittablePipeline(
            servers, topic: topic, count: messages, logger: Self.logger, settings: handOff,
            stage: flow().map { delivery in
                if !delivery.isProcessed { _ = failed.increment() }
                return delivery.message.committableOffset
            })
        let cpu = (processCPUSeconds() - cpuBefore) / Double(messages) * 1e6
        let allocations = allocationRequests().flatMap { after in
            allocationsBefore.map { Double(after - $0) / Double(messages) }
        }
        guard failed.value == 0 else { throw BenchError("\(failed.value) messages were not processed by their entity") }
        return Measurement(rate: rate, cpuPerMessage: cpu, allocationsPerMessage: allocations)
    }

    // MARK: recovery

    func recovery(_ servers: [String], directory: URL) async throws {
        var rows = [["recovery of one entity", "events", "snapshot at", "events replayed", "milliseconds"]]
        let sqlite = try await SQLiteJournal(path: directory.appendingPathComponent("recovery.db").path)
        for snapshotEvery in [nil, 10_000] as [Int?] {
            let id = PersistenceID(entityType: "counter", entityID: "recovery-\(snapshotEvery ?? 0)")
            let writer = PersistentEntity(Self.counter(id, snapshotEvery: snapshotEvery), journal: sqlite)
            for _ in 0..<recoveryEvents { _ = try await writer.handle(.increment) }
            var timings: [Double] = []
            var statistics: RecoveryStatistics?
            for _ in 0..<5 {
                let reader = PersistentEntity(Self.counter(id, snapshotEvery: snapshotEvery), journal: sqlite)
                let start = ContinuousClock.now
                statistics = try await reader.recover()
                timings.append((ContinuousClock.now - start).seconds * 1000)
                guard await reader.state == recoveryEvents else { throw BenchError("recovered the wrong state") }
            }
            rows.append([
                "SQLite", grouped(Double(recoveryEvents)), statistics?.snapshotSequenceNumber.map { grouped(Double($0)) } ?? "none",
                grouped(Double(statistics?.eventsReplayed ?? 0)), fixed(median(timings), 1),
            ])
        }
        await sqlite.close()
        print(renderTable(rows))
        print("(median of 5 recoveries: read the snapshot, then replay the events after it)\n")
    }
}

/// A journal that stores nothing. Returning at once (`waits: false`), the throughput through it is the persistence
/// layer's own cost (event encoding, offsets bookkeeping); making every append wait until another thread completes
/// it in batches, like group commit (`waits: true`), it is the cost of waiting for durability (a suspension and a
/// resumption from another thread per message), still without any storage.
///
/// `@unchecked Sendable`: `pending` and `isClosed` are only read and written while holding `condition`'s lock.
final class NullJournal: Journal, @unchecked Sendable {
    let name: String
    private let waits: Bool
    private let condition = NSCondition()
    private var pending: [CheckedContinuation<Void, Never>] = []
    private var isClosed = false

    init(waits: Bool) {
        self.waits = waits
        name = waits ? "waiting-null" : "null"
        guard waits else { return }
        Thread { [self] in
            while true {
                condition.lock()
                while pending.isEmpty && !isClosed { condition.wait() }
                let batch = pending
                pending = []
                let closed = isClosed
                condition.unlock()
                for continuation in batch { continuation.resume() }
                if closed { return }
            }
        }.start()
    }

    func append(_ append: JournalAppend) async throws(PersistenceError) {
        guard waits else { return }
        await withCheckedContinuation { continuation in
            condition.lock()
            pending.append(continuation)
            condition.signal()
            condition.unlock()
        }
    }

    func readEvents(of id: PersistenceID, from sequenceNumber: Int64, limit: Int) async throws(PersistenceError) -> [JournalEvent] { [] }
    func highestSequenceNumber(of id: PersistenceID) async throws(PersistenceError) -> Int64 { 0 }
    func saveSnapshot(_ snapshot: JournalSnapshot, for id: PersistenceID) async throws(PersistenceError) {}
    func loadSnapshot(of id: PersistenceID) async throws(PersistenceError) -> JournalSnapshot? { nil }
    func inputOffsets(of id: PersistenceID) async throws(PersistenceError) -> [InputOffset] { [] }

    func close() async { markClosed() }

    private func markClosed() {
        condition.lock()
        isClosed = true
        condition.signal()
        condition.unlock()
    }
}
