import ArgumentParser
import Foundation
import Logging
import SluiceConnectorConfig
import SluiceConnectors
import SluiceKafka
import SluiceSidecar
import Synchronization

/// Options every long-running command shares.
struct LoggingOptions: ParsableArguments {
    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    @Option(name: .long, help: "Log format: text or json (one JSON object per line, on standard error).")
    var logFormat: String = "text"

    func validate() throws {
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical; found '\(logLevel)'")
        }
        guard ["text", "json"].contains(logFormat) else {
            throw ValidationError("--log-format must be text or json; found '\(logFormat)'")
        }
    }

    func bootstrap() -> Logger {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        let json = logFormat == "json"
        LoggingSystem.bootstrap { label in
            var handler: any LogHandler = json ? JSONLogHandler(label: label) : StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        return Logger(label: "sluice")
    }
}

/// `sluice run`: validates, then runs every connector until SIGTERM/SIGINT drains them.
struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the connectors declared in YAML files (or every .yaml/.yml file of a folder).",
        discussion: """
            Validates every file first and refuses to start on any problem. Then runs each connector, serves the \
            HTTP interface (health, readiness, metrics, connector control, publish API) and, on SIGTERM or SIGINT, \
            drains: stops taking messages, finishes or abandons in-flight ones within server.drain_grace, commits, \
            leaves the group and exits 0. A second signal exits at once.
            """)

    @Argument(help: "Connector files or folders.")
    var paths: [String]

    @OptionGroup var logging: LoggingOptions

    func run() async throws {
        let logger = logging.bootstrap()
        // Signals first: a SIGTERM during start-up must drain (or end) cleanly, not kill the process.
        let sidecarBox = SidecarBox()
        let signals = SignalWatcher(logger: logger) { sidecarBox.shutdown() }
        defer { signals.cancel() }
        try KafkaLibrary.requireSupportedVersion()
        let configuration: SluiceConfiguration
        switch ConfigurationLoader.load(paths: paths) {
        case .success(let loaded): configuration = loaded
        case .failure(let error):
            FileHandle.standardError.write(Data((error.description + "\nsluice run refuses to start.\n").utf8))
            throw ExitCode(2)
        }
        logger.info("starting \(configuration.connectors.count) connector(s): \(configuration.connectors.map(\.name).joined(separator: ", "))")
        let sidecar = Sidecar(configuration: configuration, logger: logger)
        guard sidecarBox.set(sidecar) else {
            logger.notice("a signal arrived during start-up: not starting")
            return
        }
        try await sidecar.run(handleSignals: false)
        let halted = sidecar.connectors.filter { $0.status.state == .halted }
        guard halted.isEmpty else {
            // Not a clean stop: let the supervisor (systemd's Restart=on-failure, Kubernetes) see it.
            logger.error("stopped with halted connector(s): \(halted.map(\.configuration.name).joined(separator: ", ")); exit status 3")
            throw ExitCode(3)
        }
        logger.info("stopped cleanly")
    }
}

/// `sluice validate`: checks configuration without connecting to anything.
struct ValidateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate",
        abstract: "Check connector files without connecting to anything; print each problem as file:line:column: message.")

    @Argument(help: "Connector files or folders.")
    var paths: [String]

    func run() throws {
        switch ConfigurationLoader.load(paths: paths) {
        case .success(let configuration):
            print("ok: \(configuration.connectors.count) connector(s) in \(paths.joined(separator: ", ")): \(configuration.connectors.map(\.name).joined(separator: ", "))")
        case .failure(let error):
            print(error.description)
            throw ExitCode(1)
        }
    }
}

/// Hands a signal that arrives during start-up to the sidecar once it exists.
final class SidecarBox: Sendable {
    private let state = Mutex<(sidecar: Sidecar?, shutdownRequested: Bool)>((nil, false))

    func shutdown() {
        let sidecar = state.withLock { state -> Sidecar? in
            state.shutdownRequested = true
            return state.sidecar
        }
        sidecar?.shutdown()
    }

    /// Records the sidecar; `false` when a shutdown was already requested (do not start it).
    func set(_ sidecar: Sidecar) -> Bool {
        state.withLock { state in
            state.sidecar = sidecar
            return !state.shutdownRequested
        }
    }
}
