import ArgumentParser
import Logging
import SluiceConnectors
import SluiceKafka

/// The `sluice` command: Sluice's connector service and its tools.
@main
struct SluiceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sluice",
        abstract: "Sluice: a Kafka connector service.",
        subcommands: [RunCommand.self, ValidateCommand.self, VersionCommand.self, DemoCommand.self]
    )
}

struct VersionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "version", abstract: "Print Sluice's version and the librdkafka version loaded.")

    func run() throws {
        print("sluice \(SluiceVersion.current) (librdkafka \(KafkaLibrary.loadedVersion))")
        try KafkaLibrary.requireSupportedVersion()
    }
}
