import ArgumentParser
import Foundation
import Logging
import SluiceKafka

/// `sluice-bench kafka`: produce and consume throughput of SluiceKafka against raw librdkafka in C, in one run,
/// against one broker.
///
/// Each round creates two fresh topics, A and B. Raw C produces `--messages` messages into A and SluiceKafka the
/// same into B (which goes first alternates between rounds); then each consumes its own topic back with a fresh
/// consumer group (same alternation). The C baselines run on threads of their own, never on Swift's cooperative
/// pool. The report gives every round and the medians, with the ratio Sluice/C.
struct KafkaBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kafka",
        abstract: "Produce and consume throughput: SluiceKafka against raw librdkafka in C.",
        discussion: """
            Needs a running broker: scripts/bench does the set-up and starts a private one for the run. \
            Topics are created per round (and kept: see --delete-topics); C and Sluice use the same settings, \
            SluiceKafka's configuration defaults with session.timeout.ms=6000. See docs/benchmarks.md.
            """)

    @Option(help: "Messages per phase (each of the four phases of a round moves this many).")
    var messages = 1_000_000

    @Option(help: "Payload size in bytes (no key, no headers).")
    var size = 100

    @Option(help: "Partitions of each topic.")
    var partitions = 4

    @Option(help: "Rounds; the report gives every round and the medians.")
    var rounds = 3

    @Option(help: "Bootstrap servers (host:port,...). Default: $SLUICE_BOOTSTRAP.")
    var bootstrap: String?

    @Option(
        help: "How Sluice consumes: 'batches' (KafkaConsumer.messageBatches) or 'messages' (KafkaConsumer.messages).")
    var consumerAPI: String = KafkaWorkloads.ConsumerAPI.batches.rawValue

    @Option(
        help: ArgumentHelp(
            "How Sluice produces: 'receiver' (KafkaProducer.send(_:route:tag:), reports in batches to one "
                + "KafkaDeliveryReceiver) or 'closure' (KafkaProducer.send(_:onDelivery:), a closure per message)."))
    var producerAPI: String = KafkaWorkloads.ProducerAPI.receiver.rawValue

    @Option(
        help: ArgumentHelp(
            "fetch.queue.backoff.ms of both consumers. Default: KafkaConsumerConfiguration's fetchQueueBackoff.",
            discussion:
                "With Sluice's low pre-fetch limits (queued.min.messages=10000, queued.max.messages.kbytes=4096) "
                + "this back-off decides how long librdkafka idles a partition whose queue is full, so the consume "
                + "figures depend on it (librdkafka's own 1000 ms gives ~30,000 msgs/s on both sides)."))
    var fetchQueueBackoffMs: Int?

    @Option(help: "Seconds a consumer may wait for a message (the group join included) before the run fails.")
    var stallTimeout = 30

    @Flag(
        help: ArgumentHelp(
            "Delete each round's topics after it.",
            discussion:
                "Off by default: after a DeleteTopics, Tansu 0.6.0 answers metadata requests with a topic whose "
                + "name is null, and librdkafka 2.8.0 then crashes (strcmp on NULL in rd_kafka_metadata_update_op) in "
                + "any client still caching that topic. scripts/bench runs on a private broker that it stops afterwards."
        ))
    var deleteTopics = false

    @Option(
        help: ArgumentHelp(
            "Run only one side ('c', 'sluice') or only its produce phase ('c-produce', 'sluice-produce'), for profiling; "
                + "prints no comparison.", visibility: .hidden))
    var only: String?

    @Option(help: "Log level of Sluice's and librdkafka's logs: trace, debug, info, notice, warning, error, critical.")
    var logLevel = "warning"

    func validate() throws {
        guard messages > 0 else { throw ValidationError("--messages must be positive") }
        guard size >= 0 else { throw ValidationError("--size must not be negative") }
        guard partitions > 0 else { throw ValidationError("--partitions must be positive") }
        guard rounds > 0 else { throw ValidationError("--rounds must be positive") }
        guard stallTimeout > 0 else { throw ValidationError("--stall-timeout must be positive") }
        guard KafkaWorkloads.ConsumerAPI(rawValue: consumerAPI) != nil else {
            throw ValidationError("--consumer-api must be 'batches' or 'messages'")
        }
        guard KafkaWorkloads.ProducerAPI(rawValue: producerAPI) != nil else {
            throw ValidationError("--producer-api must be 'receiver' or 'closure'")
        }
        guard (fetchQueueBackoffMs ?? 0) >= 0 else {
            throw ValidationError("--fetch-queue-backoff-ms must not be negative")
        }
        guard only == nil || ["c", "sluice", "c-produce", "sluice-produce"].contains(only) else {
            throw ValidationError("--only must be 'c', 'sluice', 'c-produce' or 'sluice-produce'")
        }
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("unknown --log-level '\(logLevel)'")
        }
    }

    func run() async throws {
        try KafkaLibrary.requireSupportedVersion()
        guard let servers = bootstrap ?? ProcessInfo.processInfo.environment["SLUICE_BOOTSTRAP"], !servers.isEmpty
        else {
            throw ValidationError("no broker: pass --bootstrap host:port or set SLUICE_BOOTSTRAP (scripts/bench does)")
        }
        var logger = Logger(label: "sluice.bench")
        logger.logLevel = Logger.Level(rawValue: logLevel) ?? .warning
        let bootstrapServers = servers.split(separator: ",").map(String.init)
        let workloads = KafkaWorkloads(
            bootstrapServers: bootstrapServers, messageSize: size, stallTimeout: .seconds(stallTimeout),
            consumerAPI: KafkaWorkloads.ConsumerAPI(rawValue: consumerAPI) ?? .batches,
            producerAPI: KafkaWorkloads.ProducerAPI(rawValue: producerAPI) ?? .receiver,
            fetchQueueBackoff: fetchQueueBackoffMs.map { .milliseconds($0) } ?? KafkaWorkloads.defaultFetchQueueBackoff,
            logger: logger)
        let admin = try KafkaAdminClient(
            configuration: KafkaClientConfiguration(bootstrapServers: bootstrapServers), logger: logger)
        let runID = String(UInt32.random(in: 0...UInt32.max), radix: 16)

        let header =
            "sluice-bench kafka: \(grouped(Double(messages))) messages of \(size) B per phase, \(partitions) partitions, "
            + "\(rounds) rounds, producer API '\(producerAPI)', consumer API '\(consumerAPI)', "
            + "fetch.queue.backoff.ms \(workloads.fetchQueueBackoff.milliseconds), broker \(servers), "
            + "librdkafka \(KafkaLibrary.loadedVersion), \(ProcessInfo.processInfo.activeProcessorCount) cores"
        progress(header)
        let started = ContinuousClock.now
        var results: [RoundResult] = []
        for round in 1...rounds {
            results.append(try await runRound(round, runID: runID, workloads: workloads, admin: admin))
        }
        let total = ContinuousClock.now - started
        if only != nil { return }

        print(header)
        print("")
        print(Self.report(results))
        print("")
        print("Throughput counts payload bytes only (MB = 10^6 bytes). Produce: first send to last delivery report;")
        print("consume: first message received to last (group join excluded). Median row: median of each column;")
        print("its ratio is the median of the per-round ratios. CPU s: user+system CPU of the whole process (every")
        print("thread, librdkafka's included) over the whole phase, client set-up and group join included.")
        print("Whole run: \(fixed(total.seconds, 1)) s.")
    }

    private func progress(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }

    private func runRound(_ round: Int, runID: String, workloads: KafkaWorkloads, admin: KafkaAdminClient) async throws
        -> RoundResult
    {
        let topicC = "sluice-bench-\(runID)-\(round)-c"
        let topicSluice = "sluice-bench-\(runID)-\(round)-sluice"
        try await admin.createTopics([
            KafkaTopicSpecification(name: topicC, partitions: Int32(partitions)),
            KafkaTopicSpecification(name: topicSluice, partitions: Int32(partitions)),
        ])
        let cFirst = round % 2 == 1
        let label = "round \(round)/\(rounds)"

        func measure(_ name: String, _ body: () async throws -> Throughput) async throws -> Throughput {
            if let only, !name.lowercased().replacingOccurrences(of: " ", with: "-").hasPrefix(only) {
                return Throughput(seconds: 0, messages: 0, payloadBytes: 0)
            }
            let cpuBefore = processCPUSeconds()
            let measured = try await body()
            var result = measured
            result.cpuSeconds = processCPUSeconds() - cpuBefore
            let cpu = result.cpuSeconds
            progress(
                "\(label): \(name): \(grouped(result.messagesPerSecond)) msgs/s, \(fixed(result.megabytesPerSecond, 1)) MB/s "
                    + "(\(fixed(result.seconds, 2)) s; process CPU for the whole phase, set-up included: \(fixed(cpu, 2)) s)"
            )
            // Let the previous client's teardown and the broker settle before the next measurement.
            try await Task.sleep(for: .milliseconds(300))
            return result
        }
        let produceC: @Sendable () async throws -> Throughput = {
            try await workloads.baselineProduce(topic: topicC, count: messages)
        }
        let produceSluice: @Sendable () async throws -> Throughput = {
            try await workloads.sluiceProduce(topic: topicSluice, count: messages)
        }
        let consumeC: @Sendable () async throws -> Throughput = {
            try await workloads.baselineConsume(topic: topicC, group: topicC + "-group", count: messages)
        }
        let consumeSluice: @Sendable () async throws -> Throughput = {
            try await workloads.sluiceConsume(topic: topicSluice, group: topicSluice + "-group", count: messages)
        }

        var result = RoundResult(round: round, cFirst: cFirst)
        if cFirst {
            result.produceC = try await measure("C produce", produceC)
            result.produceSluice = try await measure("Sluice produce", produceSluice)
            result.consumeC = try await measure("C consume", consumeC)
            result.consumeSluice = try await measure("Sluice consume", consumeSluice)
        } else {
            result.produceSluice = try await measure("Sluice produce", produceSluice)
            result.produceC = try await measure("C produce", produceC)
            result.consumeSluice = try await measure("Sluice consume", consumeSluice)
            result.consumeC = try await measure("C consume", consumeC)
        }
        if deleteTopics {
            do {
                try await admin.deleteTopics([topicC, topicSluice])
            } catch {
                progress("\(label): could not delete the round's topics (\(error)); continuing")
            }
        }
        return result
    }

    struct RoundResult {
        var round: Int
        var cFirst: Bool
        var produceC = Throughput(seconds: 0, messages: 0, payloadBytes: 0)
        var produceSluice = Throughput(seconds: 0, messages: 0, payloadBytes: 0)
        var consumeC = Throughput(seconds: 0, messages: 0, payloadBytes: 0)
        var consumeSluice = Throughput(seconds: 0, messages: 0, payloadBytes: 0)
    }

    static let target = 0.9

    /// The results table: every round, then the medians and the verdict against the 0.9x target.
    static func report(_ results: [RoundResult]) -> String {
        var rows: [[String]] = [
            [
                "Round", "Phase", "First", "C msgs/s", "C MB/s", "C CPU s", "Sluice msgs/s", "Sluice MB/s",
                "Sluice CPU s", "Sluice/C",
            ]
        ]
        func row(_ round: String, _ phase: String, _ first: String, _ c: [Throughput], _ sluice: [Throughput])
            -> [String]
        {
            let ratios = zip(sluice, c).map { $0.messagesPerSecond / $1.messagesPerSecond }
            return [
                round, phase, first,
                grouped(median(c.map(\.messagesPerSecond))), fixed(median(c.map(\.megabytesPerSecond)), 1),
                fixed(median(c.map(\.cpuSeconds)), 2),
                grouped(median(sluice.map(\.messagesPerSecond))), fixed(median(sluice.map(\.megabytesPerSecond)), 1),
                fixed(median(sluice.map(\.cpuSeconds)), 2),
                fixed(median(ratios), 2) + "x",
            ]
        }
        for phase in ["produce", "consume"] {
            for result in results {
                let (c, sluice) =
                    phase == "produce"
                    ? (result.produceC, result.produceSluice) : (result.consumeC, result.consumeSluice)
                rows.append(row(String(result.round), phase, result.cFirst ? "C" : "Sluice", [c], [sluice]))
            }
            let c = results.map { phase == "produce" ? $0.produceC : $0.consumeC }
            let sluice = results.map { phase == "produce" ? $0.produceSluice : $0.consumeSluice }
            rows.append(row("median", phase, "", c, sluice))
        }
        var lines = [renderTable(rows, leftAligned: 3)]
        lines.append("")
        for phase in ["produce", "consume"] {
            let ratios = results.map { result in
                phase == "produce"
                    ? result.produceSluice.messagesPerSecond / result.produceC.messagesPerSecond
                    : result.consumeSluice.messagesPerSecond / result.consumeC.messagesPerSecond
            }
            let ratio = median(ratios)
            lines.append(
                "\(phase): Sluice/C = \(fixed(ratio, 2))x (target >= \(fixed(target, 1))x): \(ratio >= target ? "met" : "NOT met")"
            )
        }
        return lines.joined(separator: "\n")
    }
}
