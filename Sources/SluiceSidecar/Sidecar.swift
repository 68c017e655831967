import AsyncHTTPClient
import Dispatch
import Foundation
import Hummingbird
public import Logging
import NIOCore
import ServiceLifecycle
public import SluiceConnectorConfig
public import SluiceConnectors
import Synchronization

/// Everything `sluice run` runs: the connectors, the shared Kafka producers and HTTP client, the metrics, and the
/// HTTP interface, with a graceful drain on SIGTERM/SIGINT (a second signal exits at once).
public final class Sidecar: Sendable {
    public let configuration: SluiceConfiguration
    public let connectors: [ConnectorRuntime]
    public let clients: KafkaClients
    public let metrics: MetricsRegistry
    let httpClient: HTTPClient
    let logger: Logger
    private let draining = Atomic<Bool>(false)
    private let httpClientClosed = Atomic<Bool>(false)
    private let drainTaskStore = Mutex<Task<Void, Never>?>(nil)
    private let boundPort = Mutex<Int?>(nil)
    private let shutdownTrigger = Mutex<(@Sendable () -> Void)?>(nil)

    public init(configuration: SluiceConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        let metrics = MetricsRegistry()
        metrics.describe("sluice_published_total", kind: "counter", help: "Messages published through the publish API and acknowledged by the broker")
        metrics.describe("sluice_publish_failures_total", kind: "counter", help: "Publish API messages the broker did not acknowledge")
        self.metrics = metrics
        var clientConfiguration = HTTPClient.Configuration()
        clientConfiguration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 64)
        let httpClient = HTTPClient(eventLoopGroupProvider: .singleton, configuration: clientConfiguration)
        self.httpClient = httpClient
        let clients = KafkaClients(clusters: configuration.clusters, logger: logger)
        self.clients = clients
        connectors = configuration.connectors.map {
            ConnectorRuntime($0, clients: clients, httpClient: httpClient, metrics: metrics, logger: logger)
        }
    }

    /// Whether a drain has begun (readiness turns false at once).
    public var isDraining: Bool { draining.load(ordering: .acquiring) }

    /// The port the HTTP interface listens on, once it does (useful with port 0).
    public var port: Int? { boundPort.withLock { $0 } }

    /// The cluster the publish API uses when the request names none.
    var defaultCluster: String {
        configuration.clusters["default"] != nil ? "default" : (configuration.clusters.keys.sorted().first ?? "default")
    }

    public func connector(named name: String) -> ConnectorRuntime? { connectors.first { $0.configuration.name == name } }

    /// Runs until a graceful shutdown (``shutdown()`` or a signal when `handleSignals`) has drained everything.
    public func run(handleSignals: Bool = true) async throws {
        let router = SidecarRoutes.router(for: self)
        let server = configuration.server
        let application = Application(
            router: router,
            configuration: .init(address: .hostname(server.host, port: server.port), serverName: "sluice"),
            onServerRunning: { [weak self] channel in
                let port = channel.localAddress?.port
                self?.boundPort.withLock { $0 = port }
                self?.logger.info("HTTP interface listening on \(server.host):\(port ?? server.port)")
            },
            logger: logger)
        let connectorsService = ConnectorsService(sidecar: self)
        let group = ServiceGroup(
            configuration: .init(
                services: [
                    .init(service: application),
                    .init(service: connectorsService, successTerminationBehavior: .gracefullyShutdownGroup),
                ],
                gracefulShutdownSignals: [], cancellationSignals: [], logger: logger))
        shutdownTrigger.withLock { trigger in
            trigger = { Task { await group.triggerGracefulShutdown() } }
        }
        // A shutdown requested before the group existed (a signal during start-up) takes effect now.
        if isDraining { shutdown() }
        let signals = handleSignals ? SignalWatcher(logger: logger) { [weak self] in self?.shutdown() } : nil
        defer { signals?.cancel() }
        try await group.run()
    }

    /// Begins the graceful shutdown: readiness turns false, every connector drains, then the server stops.
    public func shutdown() {
        draining.store(true, ordering: .releasing)
        shutdownTrigger.withLock { $0 }?()
    }

    /// Starts draining every connector (once).
    func startDrain() {
        drainTaskStore.withLock { task in
            if task == nil { task = Task { await self.drainConnectors() } }
        }
    }

    var drainTask: Task<Void, Never>? { drainTaskStore.withLock { $0 } }

    /// Drains every connector at once, within the configured grace.
    func drainConnectors() async {
        draining.store(true, ordering: .releasing)
        logger.info("draining \(connectors.count) connector(s), grace \(configuration.server.drainGrace)")
        await withTaskGroup(of: Void.self) { group in
            for connector in connectors {
                group.addTask { await connector.drain(grace: self.configuration.server.drainGrace) }
            }
        }
    }

    func closeClients() async {
        await clients.close()
        if !httpClientClosed.exchange(true, ordering: .acquiringAndReleasing) { try? await httpClient.shutdown() }
    }

    deinit {
        // A sidecar that never ran (or failed before its drain) still owns a running HTTP client.
        if !httpClientClosed.exchange(true, ordering: .acquiringAndReleasing) { try? httpClient.syncShutdown() }
    }
}

/// Runs every connector; on graceful shutdown drains them, then closes the producers and the HTTP client.
struct ConnectorsService: Service {
    let sidecar: Sidecar

    func run() async throws {
        await withGracefulShutdownHandler {
            await withTaskGroup(of: Void.self) { group in
                for connector in sidecar.connectors {
                    group.addTask { await connector.run() }
                }
            }
        } onGracefulShutdown: {
            sidecar.startDrain()
        }
        // The connectors' streams are done; wait for the drain to finish leaving the groups (final commits).
        await sidecar.drainTask?.value
        await sidecar.closeClients()
        sidecar.logger.info("every connector stopped; producers flushed and closed")
    }
}

/// First SIGTERM/SIGINT: graceful shutdown. Second: exit at once (status 130). Install it as early as possible,
/// so that a signal during start-up is not fatal.
public final class SignalWatcher {
    private final class Count: Sendable {
        let value = Atomic<Int>(0)
    }
    private let sources: [any DispatchSourceSignal]

    public init(logger: Logger, onFirst: @escaping @Sendable () -> Void) {
        let received = Count()
        var sources: [any DispatchSourceSignal] = []
        for signalNumber in [SIGTERM, SIGINT] {
            signal(signalNumber, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
            source.setEventHandler {
                let count = received.value.add(1, ordering: .relaxed).newValue
                if count == 1 {
                    logger.notice("signal \(signalNumber) received: draining (send it again to exit at once)")
                    onFirst()
                } else {
                    logger.warning("second signal: exiting at once; uncommitted messages will be delivered again after a restart")
                    exit(130)
                }
            }
            source.resume()
            sources.append(source)
        }
        self.sources = sources
    }

    public func cancel() {
        for source in sources { source.cancel() }
    }
}
