import ArgumentParser
import Foundation
import Logging
import SluiceBenchBaseline
import SluiceKafka
import SluiceKafkaStreams
import SluiceStreams
import Synchronization

/// `sluice-bench streams`: the Kafka stream stages against baselines measured in the same run, on the same input
/// topic, each with a fresh consumer group:
/// - plain source → ignore, and committable source → committer, against raw librdkafka consume in C;
/// - the at-least-once bridge (consume → produce → commit after delivery) against the same bridge in C and against
///   the Python confluent-kafka consume → produce loop (which commits without waiting for deliveries). Sluice's
///   bridge is committable source → `KafkaProducerStages.committableSink`; the same bridge composed of the producer
///   flow and a committer stage is measured too, for comparison.
struct StreamBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "streams",
        abstract: "Kafka stream stages against raw librdkafka (C) and the Python client, in one run.")

    @Option(help: "Messages in the input topic (each workload reads all of them).")
    var messages = 1_000_000

    @Option(help: "Payload size in bytes.")
    var size = 100

    @Option(help: "Partitions of the topics.")
    var partitions = 4

    @Option(help: "Rounds; the report gives the medians.")
    var rounds = 3

    @Option(help: "Bootstrap servers (host:port,...). Default: $SLUICE_BOOTSTRAP.")
    var bootstrap: String?

    @Option(help: "Python interpreter for the Python baseline.")
    var python = "python3"

    @Option(help: "Only these workloads, comma-separated (for profiling one): c-consume, plain, committable, bridges (or c-bridge, sluice-bridge, sluice-flow-bridge, python-bridge). The report needs all of them.")
    var only: String?

    static let logger = warningsOnlyLogger()

    @Flag(help: "Measure only the stream core (no Kafka): elements per second through a few stages.")
    var coreOnly = false

    func core() async throws {
        let count = 3_000_000
        for stages in [0, 1, 3] {
            var source = Source(0..<count)
            for _ in 0..<stages { source = source.map { $0 &+ 1 } }
            let start = ContinuousClock.now
            try await source.runWith(Sink.ignore()).value()
            let seconds = (ContinuousClock.now - start).seconds
            print("core: \(stages) map stages: \(grouped(Double(count) / seconds)) elements/s")
        }
        let start = ContinuousClock.now
        try await Source(0..<count).mapAsync(parallelism: 16) { $0 }.runWith(Sink.ignore()).value()
        print("core: mapAsync(16): \(grouped(Double(count) / (ContinuousClock.now - start).seconds)) elements/s")
    }

    func run() async throws {
        if coreOnly { return try await core() }
        guard let servers = bootstrap ?? ProcessInfo.processInfo.environment["SLUICE_BOOTSTRAP"] else {
            throw ValidationError("no broker: pass --bootstrap or set SLUICE_BOOTSTRAP (scripts/bench starts one)")
        }
        let bootstrapServers = servers.split(separator: ",").map(String.init)
        let admin = try KafkaAdminClient(configuration: KafkaClientConfiguration(bootstrapServers: bootstrapServers), logger: Self.logger)
        var results: [String: [Double]] = [:]
        var cpuPerMessage: [String: [Double]] = [:]
        for round in 1...rounds {
            let runID = "\(round)-\(UInt32.random(in: 0...UInt32.max))"
            let input = "bench-streams-in-\(runID)"
            try await admin.createTopic(KafkaTopicSpecification(name: input, partitions: Int32(partitions)))
            try await produce(bootstrapServers, topic: input)
            progress("round \(round): produced \(grouped(Double(messages))) messages to \(input)")
            /// Runs a workload, recording its rate and the CPU its process (or, for the Python loop, its child
            /// process) spent per message over the whole workload, consumer set-up and group join included.
            func record(_ name: String, children: Bool = false, _ workload: () async throws -> Double) async throws {
                let cpuBefore = processCPUSeconds(children: children)
                let value = try await workload()
                let cpu = (processCPUSeconds(children: children) - cpuBefore) / Double(messages) * 1e6
                results[name, default: []].append(value)
                cpuPerMessage[name, default: []].append(cpu)
                progress("round \(round): \(name) \(grouped(value)) msgs/s, \(fixed(cpu, 2)) µs CPU per message")
            }
            let selected = only.map { Set($0.split(separator: ",").map(String.init)) }
            func wanted(_ workload: String) -> Bool { selected?.contains(workload) ?? true }
            if wanted("c-consume") { try await record("C consume") { try await cConsume(servers, input: input) } }
            if wanted("plain") {
                try await record("plain source → ignore") { try await plainSource(bootstrapServers, input: input) }
            }
            if wanted("committable") {
                try await record("committable source → committer") { try await committable(bootstrapServers, input: input) }
            }
            for name in ["C bridge", "Sluice bridge", "Sluice flow bridge", "Python bridge"]
            where wanted("bridges") || wanted(name.lowercased().replacingOccurrences(of: " ", with: "-")) {
                let output = "bench-streams-out-\(name.lowercased().replacingOccurrences(of: " ", with: "-"))-\(runID)"
                try await admin.createTopic(KafkaTopicSpecification(name: output, partitions: Int32(partitions)))
                switch name {
                case "C bridge": try await record(name) { try await cBridge(servers, input: input, output: output) }
                case "Sluice bridge":
                    try await record(name) { try await sluiceBridge(bootstrapServers, input: input, output: output) }
                case "Sluice flow bridge":
                    try await record(name) { try await sluiceFlowBridge(bootstrapServers, input: input, output: output) }
                default:
                    try await record(name, children: true) { try await pythonBridge(servers, input: input, output: output) }
                }
            }
        }
        let medians = results.mapValues(median)
        let cpu = cpuPerMessage.mapValues(median)
        guard only == nil else { return }
        func ratio(_ a: String, _ b: String) -> String { fixed(medians[a]! / medians[b]!, 2) }
        func row(_ label: String, _ name: String, against: String = "", target: String = "") -> [String] {
            [label, grouped(medians[name]!), against.isEmpty ? "" : ratio(name, against), against, target, fixed(cpu[name]!, 2)]
        }
        print(renderTable([
            ["workload (median of \(rounds))", "msgs/s", "ratio", "against", "target", "CPU µs/msg"],
            row("C consume (raw librdkafka)", "C consume"),
            row("plain source → ignore", "plain source → ignore", against: "C consume", target: ">= 0.8"),
            row("committable source → committer", "committable source → committer", against: "C consume"),
            row("C at-least-once bridge", "C bridge"),
            row("Python consume → produce loop", "Python bridge"),
            row("Sluice at-least-once bridge", "Sluice bridge", against: "C bridge", target: ">= 0.7"),
            ["", "", ratio("Sluice bridge", "Python bridge"), "Python loop", ">= 5", ""],
            row("  the same, producer flow → committer", "Sluice flow bridge", against: "C bridge"),
            ["", "", ratio("Sluice flow bridge", "Python bridge"), "Python loop", "", ""],
        ]))
        print("(\(grouped(Double(messages))) messages of \(size) bytes, \(partitions) partitions, local Tansu broker; "
            + "msgs/s from the first message to the last one done: received, committed, or delivered and committed; "
            + "CPU µs/msg: user+system CPU of the client process over the whole workload, set-up and group join "
            + "included, per message; the broker's CPU is not in it)")
    }

    func produce(_ servers: [String], topic: String) async throws {
        let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(bootstrapServers: servers), logger: Self.logger)
        let payload = (0..<size).map { UInt8(ascii: "a") + UInt8($0 % 26) }
        for index in 0..<messages {
            try await producer.send(KafkaProducerMessage(topic: topic, key: Array("k\(index % 1000)".utf8), value: payload)) { _ in }
        }
        try await producer.close()
    }

    func consumerSettings(_ servers: [String], input: String) -> KafkaSourceSettings {
        var consumer = KafkaConsumerConfiguration(bootstrapServers: servers, groupID: "bench-\(UInt32.random(in: 0...UInt32.max))")
        consumer.sessionTimeout = .seconds(6)
        var settings = KafkaSourceSettings(consumer: consumer, subscription: .topics([input]))
        settings.maxInFlightPerPartition = 20_000
        return settings
    }

    func cConsume(_ servers: String, input: String) async throws -> Double {
        let count = messages
        let result = await runOnDedicatedThread(name: "bench-c-consume") {
            Result {
                try callBaseline { errorBuffer, errorLength in
                    sluice_baseline_consume(servers, input, "bench-c-\(UInt32.random(in: 0...UInt32.max))", count, nil, 10, 30_000, errorBuffer, errorLength)
                }
            }
        }
        return Double(count) / (try result.get())
    }

    func cBridge(_ servers: String, input: String, output: String) async throws -> Double {
        let count = messages
        let result = await runOnDedicatedThread(name: "bench-c-bridge") {
            Result {
                try callBaseline { errorBuffer, errorLength in
                    sluice_baseline_bridge(servers, input, output, "bench-cb-\(UInt32.random(in: 0...UInt32.max))", count, 1000, errorBuffer, errorLength)
                }
            }
        }
        return Double(count) / (try result.get())
    }

    func pythonBridge(_ servers: String, input: String, output: String) async throws -> Double {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("benchmarks/python_bridge.py").path
        let count = messages
        let python = self.python
        let output: String = try await runOnDedicatedThread(name: "bench-python") {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = [python, script, servers, input, output, "bench-py-\(UInt32.random(in: 0...UInt32.max))", "\(count)"]
            let pipe = Pipe()
            process.standardOutput = pipe
            do { try process.run() } catch { return Result<String, any Error>.failure(error) }
            let data = pipe.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return .success(String(decoding: data, as: UTF8.self))
        }.get()
        guard let rate = Double(output.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw BenchError("the Python baseline printed no rate: \(output)")
        }
        return rate
    }

    /// Runs a stream until `done` fires, returning messages per second from `first` to then.
    func measure(
        count: Int, first: FirstInstant, done: OneShotSignal,
        stop: () async throws -> Void
    ) async throws -> Double {
        await done.wait()
        let end = ContinuousClock.now
        try await stop()
        return Double(count) / (end - first.instant!).seconds
    }

    func plainSource(_ servers: [String], input: String) async throws -> Double {
        let count = messages
        let seen = AtomicCounter()
        let first = FirstInstant()
        let done = OneShotSignal()
        let (control, completion) = try KafkaSource.plain(consumerSettings(servers, input: input), logger: Self.logger)
            .map { message -> Int in
                if seen.increment() == 1 { first.mark() }
                if seen.value == count { done.fire() }
                return message.value?.count ?? 0
            }
            .toMat(Sink.ignore(), Keep.both).run()
        return try await measure(count: count, first: first, done: done) {
            await control.shutdown()
            _ = try? await completion.value()
        }
    }

    func committable(_ servers: [String], input: String) async throws -> Double {
        let count = messages
        let seen = AtomicCounter()
        let first = FirstInstant()
        let done = OneShotSignal()
        let settings = consumerSettings(servers, input: input)
        let (control, completion) = try KafkaSource.committable(settings, logger: Self.logger)
            .map { message -> CommittableOffset in
                if seen.increment() == 1 { first.mark() }
                return message.committableOffset
            }
            .via(KafkaCommitter.flow())
            .map { batch -> Void in
                if seen.value == count && !done.isFired { done.fire() }
            }
            .toMat(Sink.ignore(), Keep.both).run()
        _ = control.kafkaConsumer
        return try await measure(count: count, first: first, done: done) {
            _ = try await control.drainAndShutdown(completion, timeout: .seconds(30))
        }
    }

    /// The bridge as Pekko Connectors Kafka writes it: committable source → envelope → committable producer sink.
    func sluiceBridge(_ servers: [String], input: String, output: String) async throws -> Double {
        try await bridge(servers, input: input, output: output) { producer in
            KafkaProducerStages.committableSink(producer: producer)
        }
    }

    /// The same bridge composed of the producer flow (results in envelope order) and a committer stage.
    func sluiceFlowBridge(_ servers: [String], input: String, output: String) async throws -> Double {
        try await bridge(servers, input: input, output: output) { producer in
            KafkaProducerStages.flow(producer: producer).map(\.passThrough).toMat(KafkaCommitter.sink(), Keep.right)
        }
    }

    /// Messages per second through committable source → envelope → `sink`, from the first message to the sink's
    /// completion: the source stops after the last message, and the sink completes once every message is delivered
    /// and the last commit landed (as the C bridge ends with a synchronous commit).
    func bridge(
        _ servers: [String], input: String, output: String,
        to sink: (KafkaProducer) -> Sink<ProducerEnvelope<CommittableOffset>, StreamCompletion<Void>>
    ) async throws -> Double {
        let count = messages
        let seen = AtomicCounter()
        let first = FirstInstant()
        let last = OneShotSignal()
        let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(bootstrapServers: servers), logger: Self.logger)
        let (control, completion) = try KafkaSource.committable(consumerSettings(servers, input: input), logger: Self.logger)
            .map { message -> ProducerEnvelope<CommittableOffset> in
                let number = seen.increment()
                if number == 1 { first.mark() }
                if number == count { last.fire() }
                return .single(
                    KafkaProducerMessage(topic: output, key: message.message.key, value: message.message.value),
                    message.committableOffset)
            }
            .toMat(sink(producer), Keep.both).run()
        await last.wait()
        control.stop()
        try await completion.value()
        let end = ContinuousClock.now
        await control.shutdown()
        try await producer.close()
        return Double(count) / (end - first.instant!).seconds
    }
}

/// When the first message was seen.
final class FirstInstant: Sendable {
    private let value = Mutex<ContinuousClock.Instant?>(nil)
    func mark() { value.withLock { if $0 == nil { $0 = .now } } }
    var instant: ContinuousClock.Instant? { value.withLock { $0 } }
}
