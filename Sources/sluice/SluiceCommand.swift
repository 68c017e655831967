import ArgumentParser
import Logging
import SluiceKafka

/// The `sluice` command: Sluice's connector service and its tools.
@main
struct SluiceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sluice",
        abstract: "Sluice: a Kafka connector service.",
        subcommands: [VersionCommand.self, DemoCommand.self]
    )
}

/// The version of Sluice, printed with the librdkafka version actually loaded.
enum SluiceVersion {
    static let current = "0.1.0"
}

struct VersionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "version", abstract: "Print Sluice's version and the librdkafka version loaded.")

    func run() throws {
        print("sluice \(SluiceVersion.current) (librdkafka \(KafkaLibrary.loadedVersion))")
        try KafkaLibrary.requireSupportedVersion()
    }
}
