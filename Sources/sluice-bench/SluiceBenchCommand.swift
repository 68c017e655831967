import ArgumentParser

/// The `sluice-bench` command: Sluice's benchmarks, each measured against a raw-C baseline in the same run.
@main
struct SluiceBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sluice-bench",
        abstract: "Benchmarks of Sluice against raw-C baselines.",
        subcommands: [KafkaBenchCommand.self, StreamBenchCommand.self, EntityBenchCommand.self, PersistenceBenchCommand.self, SidecarBenchCommand.self,
        ]
    )
}
