import ArgumentParser
import AsyncHTTPClient
import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import SluiceConnectorConfig
import SluiceKafka
import SluiceSidecar
import Synchronization

/// `sluice-bench sidecar`: the sidecar path, against baselines measured in the same run, on the same topic and the
/// same receiving application (each run with a fresh consumer group):
/// - HTTP delivery: a Sidecar (built from YAML, in this process) with an `http` sink, single (one envelope per
///   POST, `concurrency` requests in flight) and batched (`{"messages":[...]}` of `batch_size`), against a naive
///   Python sidecar (`scripts/bench-baseline-http-bridge.py`: a confluent-kafka consumer loop POSTing over one
///   keep-alive connection), with kcat's raw consume rate of the topic as a ceiling;
/// - the publish API: concurrent publishers POSTing to `/v1/publish/{topic}` (single messages, then batches),
///   against the Python confluent-kafka producer writing the same count directly.
struct SidecarBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sidecar",
        abstract:
            "The sidecar's HTTP delivery and publish API against a naive Python sidecar, kcat and the Python producer.")

    @Option(help: "Messages in the topic the delivery runs read (each run delivers all of them).")
    var messages = 200_000

    @Option(help: "Approximate size in bytes of each JSON value.")
    var size = 100

    @Option(help: "Partitions of the topics.")
    var partitions = 4

    @Option(help: "Distinct message keys (the sidecar delivers one message per key at a time).")
    var keys = 1000

    @Option(help: "Requests in flight for single delivery (the http sink's concurrency).")
    var concurrency = 64

    @Option(help: "Messages per request for batched delivery (the http sink's batch_size; the Python loop's too).")
    var batchSize = 500

    @Option(help: "The http sink's linger for batched delivery, in milliseconds.")
    var lingerMs = 5

    @Option(help: "Concurrent publishers of single messages (each waits for its answer before the next).")
    var publishers = 64

    @Option(help: "Messages published in total by the publish runs (single, batched, and the Python producer).")
    var publishMessages = 50_000

    @Option(help: "Messages per request of the batch-publish run.")
    var publishBatch = 100

    @Option(help: "Concurrent publishers of batches.")
    var batchPublishers = 8

    @Flag(
        inversion: .prefixedNo,
        help: ArgumentHelp(
            "Measure the sidecar's publish API (--no-publish-api skips it: in release builds as of commit 51da548 the "
                + "publish handler traps with 'Index out of range' at PublishAPI.swift:51, killing the process)."))
    var publishAPI = true

    @Option(help: "Bootstrap servers (host:port,...). Default: $SLUICE_BOOTSTRAP.")
    var bootstrap: String?

    @Option(help: "Python interpreter for the Python baselines.")
    var python = "python3"

    @Option(
        help: ArgumentHelp(
            "Comma-separated workloads to run (for profiling): kcat, python-single, sluice-single, python-batched, "
                + "sluice-batched, python-produce, python-produce-window, publish-single, publish-batch.",
            visibility: .hidden))
    var only: String?

    static let logger = warningsOnlyLogger()

    func selected(_ name: String) -> Bool {
        guard let only else { return true }
        return only.split(separator: ",").contains { $0.trimmingCharacters(in: .whitespaces) == name }
    }

    func run() async throws {
        guard let servers = bootstrap ?? ProcessInfo.processInfo.environment["SLUICE_BOOTSTRAP"] else {
            throw ValidationError("no broker: pass --bootstrap or set SLUICE_BOOTSTRAP (scripts/bench starts one)")
        }
        let bootstrapServers = servers.split(separator: ",").map(String.init)
        let admin = try KafkaAdminClient(
            configuration: KafkaClientConfiguration(bootstrapServers: bootstrapServers), logger: Self.logger)
        let runID = "\(UInt32.random(in: 0...UInt32.max))"
        let app = ReceivingApp()
        let appURL = try await app.start()
        do {
            try await measure(admin: admin, servers: servers, runID: runID, app: app, appURL: appURL)
        } catch {
            await app.stop()
            throw error
        }
        await app.stop()
    }

    func measure(admin: KafkaAdminClient, servers: String, runID: String, app: ReceivingApp, appURL: String)
        async throws
    {
        let bootstrapServers = servers.split(separator: ",").map(String.init)
        var rates: [String: Double] = [:]
        var cpu: [String: Double] = [:]

        // Delivery to the application.
        let topic = "bench-sidecar-\(runID)"
        try await admin.createTopic(KafkaTopicSpecification(name: topic, partitions: Int32(partitions)))
        let preloadStart = ContinuousClock.now
        try await produce(bootstrapServers, topic: topic, count: messages)
        progress(
            "preloaded \(grouped(Double(messages))) messages into \(topic) in \(fixed((ContinuousClock.now - preloadStart).seconds, 1)) s"
        )

        func record(_ name: String, rate: Double, cpuSeconds: Double, note: String = "") {
            rates[name] = rate
            cpu[name] = cpuSeconds
            progress("\(name): \(grouped(rate)) msgs/s, \(fixed(cpuSeconds, 2)) CPU s \(note)")
        }
        if selected("kcat") {
            let before = CPUUsage.now()
            let whole = try await kcatConsume(servers, topic: topic, count: nil)
            let cpuSeconds = CPUUsage.now().total - before.total
            // kcat's start-up (librdkafka client, connection, metadata, first fetch) is not part of a consume rate:
            // subtract the time it takes to read a single message.
            let startup = try await kcatConsume(servers, topic: topic, count: 1)
            progress("kcat: the whole topic in \(fixed(whole, 2)) s, one message in \(fixed(startup, 2)) s")
            record("kcat", rate: Double(messages) / max(whole - startup, 0.001), cpuSeconds: cpuSeconds)
        }
        let delivery: [(name: String, batch: Int, sluice: Bool)] = [
            ("python-single", 1, false), ("sluice-single", 1, true),
            ("python-batched", batchSize, false), ("sluice-batched", batchSize, true),
        ]
        for workload in delivery where selected(workload.name) {
            app.reset(target: messages)
            let group = "bench-sidecar-\(workload.name)-\(runID)"
            let before = CPUUsage.now()
            if workload.sluice {
                try await sidecarDelivery(
                    servers, topic: topic, group: group, batch: workload.batch, appURL: appURL, app: app)
            } else {
                try await pythonDelivery(
                    servers, topic: topic, group: group, batch: workload.batch, appURL: appURL, app: app)
            }
            let measured = app.snapshot
            guard measured.messages >= messages, let seconds = measured.seconds else {
                throw BenchError(
                    "\(workload.name): the application counted \(measured.messages) of \(messages) messages")
            }
            record(
                workload.name, rate: Double(messages) / seconds, cpuSeconds: CPUUsage.now().total - before.total,
                note:
                    "(\(grouped(Double(measured.requests))) requests, \(measured.messages - messages) extra deliveries)"
            )
        }

        // The publish API.
        let publishTopic = "bench-sidecar-publish-\(runID)"
        let pythonTopic = "bench-sidecar-publish-python-\(runID)"
        try await admin.createTopics([
            KafkaTopicSpecification(name: publishTopic, partitions: Int32(partitions)),
            KafkaTopicSpecification(name: pythonTopic, partitions: Int32(partitions)),
            KafkaTopicSpecification(name: "bench-sidecar-idle-\(runID)", partitions: 1),
        ])
        if selected("python-produce") {
            let before = CPUUsage.now()
            let rate = try await runPython(["produce", servers, pythonTopic, "\(publishMessages)", "\(size)", "0"])
            record("python-produce", rate: rate, cpuSeconds: CPUUsage.now().total - before.total)
        }
        if selected("python-produce-window") {
            let before = CPUUsage.now()
            let rate = try await runPython([
                "produce", servers, pythonTopic, "\(publishMessages)", "\(size)", "\(publishers)",
            ])
            record("python-produce-window", rate: rate, cpuSeconds: CPUUsage.now().total - before.total)
        }
        var latencies: [String: [Double]] = [:]
        if publishAPI && (selected("publish-single") || selected("publish-batch")) {
            let sidecar = try SidecarProcess.start(yaml: idleSidecarYAML(servers, runID: runID))
            do {
                let client = PublishClient(
                    baseURL: "http://127.0.0.1:\(try await sidecar.port())",
                    connections: max(publishers, batchPublishers))
                do {
                    // Warm-up (not measured): opens the connections, creates the sidecar's producer, fetches metadata.
                    _ = try await client.publish(
                        topic: publishTopic, publishers: publishers, batch: 1, total: publishers, size: size)
                    for (name, batch, concurrent) in [
                        ("publish-single", 1, publishers), ("publish-batch", publishBatch, batchPublishers),
                    ]
                    where selected(name) {
                        let before = CPUUsage.now()
                        let result = try await client.publish(
                            topic: publishTopic, publishers: concurrent, batch: batch, total: publishMessages,
                            size: size)
                        latencies[name] = result.latencies
                        record(
                            name, rate: Double(result.messages) / result.seconds,
                            cpuSeconds: CPUUsage.now().total - before.total,
                            note:
                                "(p50 \(fixed(percentile(result.latencies, 0.5) * 1000, 2)) ms, p99 \(fixed(percentile(result.latencies, 0.99) * 1000, 2)) ms per request)"
                        )
                    }
                } catch {
                    try? await client.shutdown()
                    throw error
                }
                try await client.shutdown()
            } catch {
                try? await sidecar.stop()
                throw error
            }
            try await sidecar.stop()
        }

        // Report.
        func rate(_ name: String) -> String { rates[name].map(grouped) ?? "-" }
        func cpuOf(_ name: String) -> String { cpu[name].map { fixed($0, 2) } ?? "-" }
        func ratio(_ a: String, _ b: String) -> String {
            guard let x = rates[a], let y = rates[b], y > 0 else { return "-" }
            return fixed(x / y, 2) + "x"
        }
        let rows = [
            ["delivery to the app (\(grouped(Double(messages))) msgs)", "msgs/s", "CPU s", "vs Python", "vs kcat"],
            ["kcat consume (ceiling, start-up subtracted)", rate("kcat"), cpuOf("kcat"), "", ""],
            ["Python loop, single", rate("python-single"), cpuOf("python-single"), "", ratio("python-single", "kcat")],
            [
                "Sluice sidecar, single (concurrency \(concurrency))", rate("sluice-single"), cpuOf("sluice-single"),
                ratio("sluice-single", "python-single"), ratio("sluice-single", "kcat"),
            ],
            [
                "Python loop, batches of \(batchSize)", rate("python-batched"), cpuOf("python-batched"), "",
                ratio("python-batched", "kcat"),
            ],
            [
                "Sluice sidecar, batches of \(batchSize) (linger \(lingerMs) ms)", rate("sluice-batched"),
                cpuOf("sluice-batched"), ratio("sluice-batched", "python-batched"), ratio("sluice-batched", "kcat"),
            ],
        ]
        print(renderTable(rows))
        print()
        func latency(_ name: String, _ q: Double) -> String {
            guard let values = latencies[name], !values.isEmpty else { return "-" }
            return fixed(percentile(values, q) * 1000, 2)
        }
        print(
            renderTable([
                [
                    "publish (\(grouped(Double(publishMessages))) msgs)", "msgs/s", "CPU s", "p50 ms", "p99 ms",
                    "max ms", "vs Python producer",
                ],
                [
                    "Python producer (async, flush at end)", rate("python-produce"), cpuOf("python-produce"), "", "",
                    "", "",
                ],
                [
                    "Python producer (<= \(publishers) awaiting ack)", rate("python-produce-window"),
                    cpuOf("python-produce-window"), "", "", "", "",
                ],
                [
                    "publish API, \(publishers) publishers x 1 msg", rate("publish-single"), cpuOf("publish-single"),
                    latency("publish-single", 0.5), latency("publish-single", 0.99), latency("publish-single", 1),
                    ratio("publish-single", "python-produce") + " / "
                        + ratio("publish-single", "python-produce-window"),
                ],
                [
                    "publish API, \(batchPublishers) publishers x \(publishBatch) msgs", rate("publish-batch"),
                    cpuOf("publish-batch"),
                    latency("publish-batch", 0.5), latency("publish-batch", 0.99), latency("publish-batch", 1),
                    ratio("publish-batch", "python-produce") + " / " + ratio("publish-batch", "python-produce-window"),
                ],
            ]))
        print(
            """
            (local Tansu broker, \(partitions) partitions, JSON values of ~\(size) bytes, \(keys) keys; delivery msgs/s from \
            the first message the app received to the last; CPU s = this process (the app, the sidecar) plus the child \
            (Python, kcat) over the whole run; latencies per request; "vs Python producer": against the async producer / \
            the one with at most \(publishers) messages awaiting their ack)
            """)
    }

    // MARK: Workloads

    func value(_ index: Int) -> [UInt8] {
        Array(Self.value(index, size: size).utf8)
    }

    /// `{"id":N,"pad":"xx…"}` of exactly `size` bytes (when size allows), as the Python producer writes it.
    static func value(_ index: Int, size: Int) -> String {
        "{\"id\":\(index),\"pad\":\"\(String(repeating: "x", count: max(0, size - 17 - String(index).count)))\"}"
    }

    func produce(_ servers: [String], topic: String, count: Int) async throws {
        let producer = try KafkaProducer(
            configuration: KafkaProducerConfiguration(bootstrapServers: servers), logger: Self.logger)
        let failures = AtomicCounter()
        for index in 0..<count {
            try await producer.send(
                KafkaProducerMessage(topic: topic, key: Array("k\(index % keys)".utf8), value: value(index))
            ) { result in
                if case .failure = result { _ = failures.increment() }
            }
        }
        try await producer.close()
        if failures.value > 0 { throw BenchError("preloading \(topic): \(failures.value) messages were not delivered") }
    }

    /// Seconds kcat takes to read the whole topic, or `count` messages (process start to exit: connection and
    /// metadata included).
    func kcatConsume(_ servers: String, topic: String, count: Int?) async throws -> Double {
        let environment = ProcessInfo.processInfo.environment
        let prefix =
            environment["SLUICE_RDKAFKA_PREFIX"]
            ?? "\(environment["SLUICE_CACHE"] ?? "\(environment["HOME"] ?? "/root")/.cache/sluice")/librdkafka-2.8.0"
        let start = ContinuousClock.now
        let output = try await runChild(
            "/usr/bin/kcat",
            ["-C", "-b", servers, "-t", topic, "-e", "-q", "-o", "beginning", "-f", ""]
                + (count.map { ["-c", "\($0)"] } ?? []),
            environment: ["LD_LIBRARY_PATH": "\(prefix)/lib"])
        let seconds = (ContinuousClock.now - start).seconds
        guard output.status == 0 else { throw BenchError("kcat failed (\(output.status)): \(output.standardError)") }
        return seconds
    }

    func pythonDelivery(_ servers: String, topic: String, group: String, batch: Int, appURL: String, app: ReceivingApp)
        async throws
    {
        let rate = try await runPython(["http", servers, topic, group, "\(messages)", appURL, "\(batch)"])
        progress("  (the Python loop's own figure: \(grouped(rate)) msgs/s)")
    }

    func sidecarDelivery(_ servers: String, topic: String, group: String, batch: Int, appURL: String, app: ReceivingApp)
        async throws
    {
        let sink =
            batch == 1
            ? "batch_size: 1\n        concurrency: \(concurrency)"
            : "batch_size: \(batch)\n        linger: \(lingerMs)ms"
        let yaml = """
            kafka:
              default:
                bootstrap: \(servers)
                client_id: sluice-bench-sidecar
            server:
              listen: 127.0.0.1:0
              drain_grace: 30s
            connectors:
              - name: bench-delivery
                source:
                  topics: [\(topic)]
                  group: \(group)
                  start: earliest
                sink:
                  http:
                    url: \(appURL)
                    timeout: 30s
                    \(sink)
            """
        let sidecar = try SidecarProcess.start(yaml: yaml)
        do {
            try await app.waitForTarget(stallTimeout: .seconds(120))
        } catch {
            try? await sidecar.stop()
            throw error
        }
        try await sidecar.stop()
    }

    /// A sidecar for the publish API: its one connector reads a topic nothing writes to.
    func idleSidecarYAML(_ servers: String, runID: String) -> String {
        """
        kafka:
          default:
            bootstrap: \(servers)
            client_id: sluice-bench-sidecar
        server:
          listen: 127.0.0.1:0
        connectors:
          - name: bench-idle
            source:
              topics: [bench-sidecar-idle-\(runID)]
              group: bench-sidecar-idle-\(runID)
            sink:
              file:
                path: /dev/null
        """
    }

    func runPython(_ arguments: [String]) async throws -> Double {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("scripts/bench-baseline-http-bridge.py").path
        let output = try await runChild("/usr/bin/env", [python, script] + arguments)
        guard output.status == 0,
            let rate = Double(output.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines))
        else {
            throw BenchError(
                "the Python baseline (\(arguments[0])) failed (\(output.status)): \(output.standardOutput) \(output.standardError)"
            )
        }
        return rate
    }
}

// MARK: - The receiving application

/// The application beside the sidecar: answers 200 to every POST and counts the messages it received (one per
/// `"offset"` member: one for an envelope, one per element of a `{"messages":[...]}` batch), without parsing.
final class ReceivingApp: Sendable {
    struct Snapshot: Sendable {
        var messages = 0
        var requests = 0
        var first: ContinuousClock.Instant?
        var reachedTarget: ContinuousClock.Instant?
        var target = Int.max
        /// From the first request to the one that reached the target.
        var seconds: Double? { first.flatMap { first in reachedTarget.map { ($0 - first).seconds } } }
    }

    private let state = Mutex(Snapshot())
    private let running = Mutex<(group: ServiceGroup, task: Task<Void, any Error>)?>(nil)

    var snapshot: Snapshot { state.withLock { $0 } }

    /// Forgets what was received; the next `target` messages are measured.
    func reset(target: Int) { state.withLock { $0 = Snapshot(target: target) } }

    /// Counts a request's messages (called by the handler).
    func received(_ count: Int) {
        let now = ContinuousClock.now
        state.withLock { state in
            if state.first == nil { state.first = now }
            state.requests += 1
            state.messages += count
            if state.messages >= state.target && state.reachedTarget == nil { state.reachedTarget = now }
        }
    }

    /// Waits until the target number of messages arrived; throws when none arrive for `stallTimeout`.
    func waitForTarget(stallTimeout: Duration) async throws {
        var lastCount = -1
        var lastProgress = ContinuousClock.now
        while true {
            let current = snapshot
            if current.reachedTarget != nil { return }
            if current.messages != lastCount {
                lastCount = current.messages
                lastProgress = .now
            } else if ContinuousClock.now - lastProgress > stallTimeout {
                throw BenchError(
                    "the application received \(current.messages) of \(current.target) messages, then nothing for \(stallTimeout)"
                )
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Listens on a free loopback port; returns the URL to deliver to.
    func start() async throws -> String {
        let router = Router()
        router.post("deliver") { request, _ -> Response in
            let body = try await request.body.collect(upTo: 256 << 20)
            self.received(Self.countOffsets(body))
            return Response(status: .ok)
        }
        let port = Mutex<Int?>(nil)
        let application = Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0), serverName: "bench-app"),
            onServerRunning: { channel in port.withLock { $0 = channel.localAddress?.port } },
            logger: SidecarBenchCommand.logger)
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: application)], gracefulShutdownSignals: [], cancellationSignals: [],
                logger: SidecarBenchCommand.logger))
        running.withLock { $0 = (group, Task { try await group.run() }) }
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline {
            if let bound = port.withLock({ $0 }) { return "http://127.0.0.1:\(bound)/deliver" }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw BenchError("the receiving application did not start listening within 20 s")
    }

    /// Stops the server gracefully (the listener, then the idle connections).
    func stop() async {
        guard
            let (group, task) = running.withLock({ running in
                defer { running = nil }
                return running
            })
        else { return }
        await group.triggerGracefulShutdown()
        do { try await task.value } catch { progress("the receiving application stopped with \(error)") }
    }

    /// Occurrences of `"offset"` in `buffer`.
    static func countOffsets(_ buffer: ByteBuffer) -> Int {
        let pattern: [UInt8] = Array("\"offset\"".utf8)
        return buffer.withUnsafeReadableBytes { bytes in
            var count = 0
            var index = 0
            let end = bytes.count - pattern.count
            while index <= end {
                if bytes[index] == pattern[0] {
                    var matched = true
                    for offset in 1..<pattern.count where bytes[index + offset] != pattern[offset] {
                        matched = false
                        break
                    }
                    if matched {
                        count += 1
                        index += pattern.count
                        continue
                    }
                }
                index += 1
            }
            return count
        }
    }
}

// MARK: - A sidecar in this process

/// A `Sidecar` built from YAML text and run in this process.
struct SidecarProcess: Sendable {
    let sidecar: Sidecar
    let task: Task<Void, any Error>

    static func start(yaml: String) throws -> SidecarProcess {
        let configuration = try ConfigurationLoader.load(text: yaml, file: "sluice-bench-sidecar.yaml").get()
        let sidecar = Sidecar(configuration: configuration, logger: SidecarBenchCommand.logger)
        return SidecarProcess(sidecar: sidecar, task: Task { try await sidecar.run(handleSignals: false) })
    }

    /// The port of its HTTP interface, once it listens.
    func port() async throws -> Int {
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline {
            if let port = sidecar.port { return port }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw BenchError("the sidecar did not start listening within 20 s")
    }

    /// Drains the connectors, flushes and closes the producers and the HTTP client, stops the server.
    func stop() async throws {
        sidecar.shutdown()
        try await task.value
    }
}

// MARK: - Publishers

/// Concurrent publishers POSTing to the sidecar's publish API, each waiting for its answer before the next request.
struct PublishClient: Sendable {
    struct Result: Sendable {
        var messages: Int
        var seconds: Double
        /// Seconds per request.
        var latencies: [Double]
    }

    let baseURL: String
    let client: HTTPClient

    init(baseURL: String, connections: Int) {
        self.baseURL = baseURL
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool = .init(
            idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: connections)
        client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    func shutdown() async throws { try await client.shutdown() }

    /// Publishes `total` messages in requests of `batch` messages from `publishers` concurrent publishers.
    func publish(topic: String, publishers: Int, batch: Int, total: Int, size: Int) async throws -> Result {
        let requests = (total + batch - 1) / batch
        let url = "\(baseURL)/v1/publish/\(topic)"
        let client = self.client
        let start = ContinuousClock.now
        let latencies = try await withThrowingTaskGroup(of: [Double].self) { group in
            for publisher in 0..<publishers {
                group.addTask {
                    var latencies: [Double] = []
                    var request = stride(from: publisher, to: requests, by: publishers).makeIterator()
                    while let number = request.next() {
                        let first = number * batch
                        let items = (first..<min(first + batch, total)).map {
                            "{\"key\":\"k\($0 % 1000)\",\"value\":\(SidecarBenchCommand.value($0, size: size))}"
                        }
                        let body = batch == 1 ? items[0] : "{\"messages\":[\(items.joined(separator: ","))]}"
                        var httpRequest = HTTPClientRequest(url: url)
                        httpRequest.method = .POST
                        httpRequest.headers.add(name: "Content-Type", value: "application/json")
                        httpRequest.body = .bytes(ByteBuffer(string: body))
                        let sent = ContinuousClock.now
                        let response = try await client.execute(httpRequest, timeout: .seconds(30))
                        let answer = try await response.body.collect(upTo: 16 << 20)
                        latencies.append((ContinuousClock.now - sent).seconds)
                        guard response.status.code == 200 else {
                            throw BenchError("publish answered \(response.status.code): \(String(buffer: answer))")
                        }
                    }
                    return latencies
                }
            }
            var all: [Double] = []
            for try await part in group { all += part }
            return all
        }
        return Result(messages: total, seconds: (ContinuousClock.now - start).seconds, latencies: latencies)
    }
}

// MARK: - Helpers

/// The `q` quantile (0...1) of `values` by the nearest rank; 0 for no values.
func percentile(_ values: [Double], _ q: Double) -> Double {
    guard !values.isEmpty else { return 0 }
    let sorted = values.sorted()
    let rank = Int((q * Double(sorted.count)).rounded(.up)) - 1
    return sorted[min(max(rank, 0), sorted.count - 1)]
}

/// CPU seconds of this process and of its waited-for children.
struct CPUUsage {
    var own: Double
    var children: Double
    var total: Double { own + children }

    static func now() -> CPUUsage {
        var usage = rusage()
        getrusage(RUSAGE_CHILDREN.rawValue, &usage)
        func seconds(_ time: timeval) -> Double { Double(time.tv_sec) + Double(time.tv_usec) / 1e6 }
        return CPUUsage(own: processCPUSeconds(), children: seconds(usage.ru_utime) + seconds(usage.ru_stime))
    }
}

/// What a child process printed and how it ended.
struct ChildOutput: Sendable {
    var status: Int32
    var standardOutput: String
    var standardError: String
}

/// Runs a program to completion on a thread of its own (never blocking the cooperative pool); kills it after
/// `timeout`.
func runChild(
    _ executable: String, _ arguments: [String], environment: [String: String] = [:], timeout: Duration = .seconds(900)
)
    async throws -> ChildOutput
{
    let result: Result<ChildOutput, any Error> = await runOnDedicatedThread(name: "bench-child") {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let stdout = Pipe()
        let stderr = Pipe()
        process.standardOutput = stdout
        process.standardError = stderr
        do { try process.run() } catch { return .failure(error) }
        let killer = DispatchWorkItem { process.terminate() }
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(timeout.milliseconds), execute: killer)
        let errorData = DataBox()
        let errorReader = DispatchWorkItem {
            let data = stderr.fileHandleForReading.readDataToEndOfFile()
            errorData.value.withLock { $0 = data }
        }
        DispatchQueue.global().async(execute: errorReader)
        let output = stdout.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        errorReader.wait()
        killer.cancel()
        return .success(
            ChildOutput(
                status: process.terminationStatus, standardOutput: String(decoding: output, as: UTF8.self),
                standardError: String(decoding: errorData.value.withLock { $0 }, as: UTF8.self)))
    }
    return try result.get()
}

/// Bytes written by one thread and read by another.
final class DataBox: Sendable {
    let value = Mutex(Data())
}
