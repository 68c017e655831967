public import AsyncHTTPClient
import DequeModule
import Foundation
public import Logging
public import SluiceConnectorConfig
public import SluiceKafka
import SluiceKafkaStreams
import SluiceStreams
import Synchronization

/// What a connector is doing.
public enum ConnectorState: String, Sendable {
    case starting, running, paused, restarting, draining, stopped
    /// Stopped by `errors: stop` after a record failed: offsets stay uncommitted past it.
    case halted
}

/// A connector's status, as `GET /v1/connectors` shows it.
public struct ConnectorStatus: Sendable {
    public var name: String
    public var state: ConnectorState
    public var isReady: Bool
    public var assignedPartitions: [KafkaTopicPartition]
    /// Per partition: high watermark minus committed offset (refreshed every few seconds).
    public var lag: [KafkaTopicPartition: Int64]
    public var inFlight: Int
    public var lastError: String?
}

/// The error that halts a connector whose error policy is `stop`.
public struct ConnectorHalted: Error, Sendable, CustomStringConvertible {
    public var connector: String
    public var record: String
    public var failure: RecordFailure
    public var description: String {
        "connector '\(connector)' halted on \(record): \(failure) (errors: stop; its offsets stay uncommitted past this record — fix the cause and restart)"
    }
}

/// Runs one connector: Kafka source → processors → sink, committing each offset only after the record (and every
/// earlier one of its partition) was delivered, dead-lettered or deliberately skipped. Failures of the pipeline
/// itself (a broker gone for longer than librdkafka's timeouts) restart it with backoff from the committed offsets.
public final class ConnectorRuntime: Sendable {
    public let configuration: ConnectorConfiguration
    let clients: KafkaClients
    let httpClient: HTTPClient
    let metrics: MetricsRegistry
    let logger: Logger
    let gate = PauseGate()
    let revokedPartitionsStore = Mutex<Set<KafkaTopicPartition>>([])

    private struct RuntimeState {
        var state: ConnectorState = .starting
        var lastError: String?
        var control: KafkaConsumerControl?
        var completion: StreamCompletion<Void>?
        var joined = false
        var draining = false
        var lag: [KafkaTopicPartition: Int64] = [:]
        /// Whether the last broker probe (watermark queries every few seconds) got an answer.
        var brokerReachable = true
    }
    private let state = Mutex(RuntimeState())

    public init(
        _ configuration: ConnectorConfiguration, clients: KafkaClients, httpClient: HTTPClient, metrics: MetricsRegistry,
        logger: Logger
    ) {
        self.configuration = configuration
        self.clients = clients
        self.httpClient = httpClient
        self.metrics = metrics
        var logger = logger
        logger[metadataKey: "connector"] = .string(configuration.name)
        self.logger = logger
        registerMetrics()
    }

    var labels: [(String, String)] { [("connector", configuration.name)] }

    // MARK: Control

    /// Runs until drained (``drain(grace:)``) or halted; restarts the pipeline with backoff when it fails.
    public func run() async {
        var restarts = 0
        while !Task.isCancelled {
            // The processors' state stores, opened for this run of the pipeline and closed after it (a restart
            // recovers their state from the journals).
            let stores: ProcessorStateStores
            do {
                stores = try await ProcessorStateStores.open(configuration, clients: clients, logger: logger)
            } catch {
                if state.withLock({ $0.draining }) { break }
                restarts += 1
                logger.error("cannot open the processors' state (retrying with backoff): \(error)")
                state.withLock {
                    $0.state = .restarting
                    $0.lastError = "\(error)"
                }
                await backoff(restarts)
                continue
            }
            let outcome = await runOnce(stores: stores, restarts: &restarts)
            await stores.close()
            guard case .again = outcome else { break }
        }
        state.withLock { state in
            if state.state != .halted { state.state = .stopped }
        }
    }

    private enum RunOutcome { case again, stop }

    /// Runs the pipeline once: until it completes, fails (then waits out the backoff) or halts.
    private func runOnce(stores: ProcessorStateStores, restarts: inout Int) async -> RunOutcome {
        let graph: RunnableGraph<(KafkaConsumerControl, StreamCompletion<Void>)>
        do {
            graph = try makeGraph(stores: stores)
        } catch {
            fail(error)
            return .stop
        }
        let proceed: Bool = state.withLock { state in
            guard !state.draining else { return false }
            state.state = gate.isPaused ? .paused : .running
            state.joined = false
            return true
        }
        guard proceed else { return .stop }
        let control: KafkaConsumerControl
        let completion: StreamCompletion<Void>
        do {
            (control, completion) = try graph.run()
        } catch {
            logger.error("cannot start the connector: \(error)")
            state.withLock { $0.lastError = "\(error)" }
            restarts += 1
            await backoff(restarts)
            return .again
        }
        state.withLock {
            $0.control = control
            $0.completion = completion
        }
        let lagTask = Task { await refreshLag(control) }
        defer { lagTask.cancel() }
        do {
            try await completion.value()
            lagTask.cancel()
            if state.withLock({ $0.draining }) { return .stop }
            // The source completed without a drain (its consumer was closed under it): start again.
            await control.shutdown()
            return .again
        } catch let halted as ConnectorHalted {
            lagTask.cancel()
            logger.error("\(halted)")
            state.withLock {
                $0.state = .halted
                $0.lastError = halted.description
            }
            metrics.increment("sluice_connector_halts_total", labels: labels)
            await control.shutdown()
            return .stop
        } catch {
            lagTask.cancel()
            if state.withLock({ $0.draining }) { return .stop }
            restarts += 1
            logger.error("the pipeline failed (restart \(restarts) follows with backoff; uncommitted messages will be consumed again): \(error)")
            state.withLock {
                $0.state = .restarting
                $0.lastError = "\(error)"
            }
            metrics.increment("sluice_connector_restarts_total", labels: labels)
            await control.abandon()
            await backoff(restarts)
            return .again
        }
    }

    private func fail(_ error: any Error) {
        logger.error("cannot build the connector: \(error)")
        state.withLock {
            $0.state = .halted
            $0.lastError = "\(error)"
        }
    }

    /// Waits before a restart; a drain that begins meanwhile ends the wait at once.
    private func backoff(_ restarts: Int) async {
        let policy = RetryPolicy(maxAttempts: nil, initialBackoff: .milliseconds(500), maxBackoff: .seconds(30), jitter: 0.2)
        let until = ContinuousClock.now + policy.backoff(afterAttempt: restarts)
        while ContinuousClock.now < until, !state.withLock({ $0.draining }), !Task.isCancelled {
            try? await Task.sleep(for: min(.milliseconds(100), until - ContinuousClock.now))
        }
    }

    /// Stops taking new messages, waits up to `grace` for in-flight ones to be delivered and committed, then
    /// leaves the group. What is not done by then is abandoned uncommitted (delivered again after a restart).
    public func drain(grace: Duration) async {
        let (control, completion) = state.withLock { state -> (KafkaConsumerControl?, StreamCompletion<Void>?) in
            state.draining = true
            if state.state != .halted { state.state = .draining }
            return (state.control, state.completion)
        }
        gate.resume()
        guard let control, let completion else { return }
        do {
            try await control.drainAndShutdown(completion, timeout: grace)
            logger.info("drained: every in-flight message was delivered and committed")
        } catch {
            logger.warning("drain ended without finishing everything (\(error)); uncommitted messages will be delivered again after a restart")
            await control.abandon()
        }
    }

    func stateJoined() {
        state.withLock { $0.joined = true }
    }

    public func pause() {
        gate.pause()
        state.withLock { if $0.state == .running { $0.state = .paused } }
    }

    public func resume() {
        gate.resume()
        state.withLock { if $0.state == .paused { $0.state = .running } }
    }

    /// Ready: running (or paused on request), the group joined, the brokers answering, not draining.
    public var isReady: Bool { state.withLock { Self.isReady($0) } }

    private static func isReady(_ state: RuntimeState) -> Bool {
        (state.state == .running || state.state == .paused) && state.joined && state.brokerReachable && !state.draining
    }

    public var status: ConnectorStatus {
        let snapshot = state.withLock { $0 }
        let metricsSnapshot = snapshot.control?.metrics
        return ConnectorStatus(
            name: configuration.name, state: snapshot.state,
            isReady: Self.isReady(snapshot),
            assignedPartitions: (metricsSnapshot?.assignment ?? []).sorted { ($0.topic, $0.partition) < ($1.topic, $1.partition) },
            lag: snapshot.lag, inFlight: metricsSnapshot?.inFlight.values.reduce(0, +) ?? 0, lastError: snapshot.lastError)
    }

    // MARK: Metrics

    private func registerMetrics() {
        let descriptions: [(String, String, String)] = [
            ("sluice_messages_consumed_total", "counter", "Messages taken from Kafka by the connector"),
            ("sluice_messages_delivered_total", "counter", "Records acknowledged by the sink (2xx, broker ack, written)"),
            ("sluice_messages_skipped_total", "counter", "Messages filtered out or deduplicated (acknowledged without delivery)"),
            ("sluice_messages_retried_total", "counter", "Delivery attempts that failed and were retried"),
            ("sluice_messages_dead_lettered_total", "counter", "Records sent to the dead-letter topic"),
            ("sluice_messages_dropped_total", "counter", "Records the application asked to drop while no dead-letter topic is set"),
            ("sluice_messages_acknowledged_total", "counter", "Input messages whose offsets became committable"),
            ("sluice_late_records_total", "counter", "Records that arrived after their aggregation window closed"),
            ("sluice_windows_emitted_total", "counter", "Aggregation windows emitted"),
            ("sluice_rebalances_total", "counter", "Partition assignments and revocations"),
            ("sluice_connector_restarts_total", "counter", "Pipeline restarts after failures"),
            ("sluice_connector_halts_total", "counter", "Connectors halted by errors: stop"),
            ("sluice_delivery_duration_seconds", "histogram", "Time to deliver a request to the application over HTTP"),
            ("sluice_in_flight_messages", "gauge", "Messages handed out and not yet acknowledged, per partition"),
            ("sluice_committed_offset", "gauge", "Committed offset per partition"),
            ("sluice_consumer_lag", "gauge", "High watermark minus committed offset per partition"),
            ("sluice_paused_partitions", "gauge", "Partitions paused because the connector is backpressured"),
            ("sluice_assigned_partitions", "gauge", "Partitions assigned to this instance"),
            ("sluice_connector_ready", "gauge", "1 when the connector is running and has joined its group"),
            ("sluice_open_windows", "gauge", "Aggregation windows not yet emitted"),
        ]
        for (name, kind, help) in descriptions { metrics.describe(name, kind: kind, help: help) }
        let name = configuration.name
        metrics.addCollector { [weak self] registry in
            guard let self else { return }
            let snapshot = self.state.withLock { ($0.control, $0.lag) }
            registry.setGauge("sluice_connector_ready", self.isReady ? 1 : 0, labels: [("connector", name)])
            registry.removeGauges("sluice_in_flight_messages", where: ("connector", name))
            registry.removeGauges("sluice_committed_offset", where: ("connector", name))
            registry.removeGauges("sluice_consumer_lag", where: ("connector", name))
            guard let control = snapshot.0 else { return }
            let sourceMetrics = control.metrics
            registry.setGauge("sluice_paused_partitions", Double(sourceMetrics.pausedPartitions.count), labels: [("connector", name)])
            registry.setGauge("sluice_assigned_partitions", Double(sourceMetrics.assignment.count), labels: [("connector", name)])
            for partition in sourceMetrics.assignment {
                let partitionLabels = [("connector", name), ("topic", partition.topic), ("partition", String(partition.partition))]
                registry.setGauge("sluice_in_flight_messages", Double(sourceMetrics.inFlight[partition] ?? 0), labels: partitionLabels)
                if let committed = sourceMetrics.committed[partition] {
                    registry.setGauge("sluice_committed_offset", Double(committed), labels: partitionLabels)
                }
                if let lag = snapshot.1[partition] { registry.setGauge("sluice_consumer_lag", Double(lag), labels: partitionLabels) }
            }
        }
    }

    /// Every few seconds: lag = high watermark − committed offset, for each assigned partition. The same queries
    /// probe the brokers: when none answers, readiness turns false (librdkafka keeps reconnecting with backoff).
    private func refreshLag(_ control: KafkaConsumerControl) async {
        while !Task.isCancelled {
            let sourceMetrics = control.metrics
            var lag: [KafkaTopicPartition: Int64] = [:]
            var probe = Array(sourceMetrics.assignment)
            if probe.isEmpty, let topic = configuration.source.topics.first {
                probe = [KafkaTopicPartition(topic: topic, partition: 0)]
            }
            var answered = probe.isEmpty
            var failure: (any Error)?
            for partition in probe {
                do {
                    let marks = try await control.kafkaConsumer.watermarks(
                        topic: partition.topic, partition: partition.partition, timeout: .seconds(3))
                    answered = true
                    guard sourceMetrics.assignment.contains(partition) else { continue }
                    let committed = sourceMetrics.committed[partition] ?? marks.low
                    lag[partition] = max(0, marks.high - committed)
                } catch let error as KafkaError where error.code == .unknownTopic {
                    answered = true  // the broker answered: the topic just does not exist (yet)
                } catch {
                    failure = error
                }
            }
            let reachable = answered
            let wasReachable = state.withLock { state in
                defer {
                    state.lag = lag
                    state.brokerReachable = reachable
                    if !reachable, let failure { state.lastError = "brokers unreachable: \(failure)" }
                }
                return state.brokerReachable
            }
            if wasReachable && !reachable {
                logger.error("Kafka brokers do not answer (\(failure.map { "\($0)" } ?? "no answer")): not ready; librdkafka keeps reconnecting with backoff, nothing is lost")
            } else if !wasReachable && reachable {
                logger.notice("Kafka brokers answer again: ready")
            }
            try? await Task.sleep(for: .seconds(reachable ? 5 : 2))
        }
    }
}
