// swift-tools-version:6.1
import Foundation
import PackageDescription

// librdkafka >= 2.1 is required (Debian 12 ships 2.0.2, which fails the handshake with modern brokers).
// `scripts/setup` builds 2.8.0 into a cache outside the clone; compile against it and bake its path in as an
// rpath so the binaries load that library, never the system's older one. Override with SLUICE_RDKAFKA_PREFIX.
let environment = ProcessInfo.processInfo.environment
let rdkafkaPrefix: String? = {
    let candidate =
        environment["SLUICE_RDKAFKA_PREFIX"]
        ?? "\(environment["SLUICE_CACHE"] ?? "\(environment["HOME"] ?? "/root")/.cache/sluice")/librdkafka-2.8.0"
    return FileManager.default.fileExists(atPath: "\(candidate)/include/librdkafka/rdkafka.h") ? candidate : nil
}()
let rdkafkaCFlags: [String] = rdkafkaPrefix.map { ["-I\($0)/include"] } ?? []
let rdkafkaSwiftFlags: [String] = rdkafkaPrefix.map { ["-Xcc", "-I\($0)/include"] } ?? []
let rdkafkaLinkerFlags: [String] =
    (rdkafkaPrefix.map { ["-L\($0)/lib", "-Xlinker", "-rpath", "-Xlinker", "\($0)/lib"] } ?? []) + ["-lrdkafka"]

// The executables allocate through jemalloc instead of glibc's malloc: Sluice's threads (librdkafka's, the
// cooperative pool's, the SQLite writer's) hand memory to each other all the time, which in glibc's arenas means a
// contended lock per cross-thread free (measured in docs/benchmarks.md, "Memory allocator"). Linked only into
// executables, so the libraries impose no allocator on their users. `scripts/setup` installs libjemalloc-dev.
let allocatorLinkerSettings: [LinkerSetting] = [.linkedLibrary("jemalloc", .when(platforms: [.linux]))]
// jemalloc's options for those executables (one arena per CPU): a C target that each of them depends on.
let allocatorConfiguration: Target.Dependency = "SluiceAllocatorConfig"

let strictSwiftSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
    .unsafeFlags(rdkafkaSwiftFlags),
    // Let release builds specialize generic stream stages across modules: without it every element pays for
    // runtime generic-metadata lookups (measured: 300 ns per map stage).
    .unsafeFlags(["-cross-module-optimization"], .when(configuration: .release)),
]

let package = Package(
    name: "sluice",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "SluiceKafka", targets: ["SluiceKafka"]),
        .library(name: "SluiceStreams", targets: ["SluiceStreams"]),
        .library(name: "SluiceKafkaStreams", targets: ["SluiceKafkaStreams"]),
        .library(name: "SluiceActors", targets: ["SluiceActors"]),
        .library(name: "SluiceSharding", targets: ["SluiceSharding"]),
        .library(name: "SluicePersistence", targets: ["SluicePersistence"]),
        .executable(name: "sluice", targets: ["sluice"]),
        .executable(name: "sluice-bench", targets: ["sluice-bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1", traits: []),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
    ],
    targets: [
        // C layer: librdkafka's headers plus a few non-variadic shims Swift can call.
        .target(
            name: "CRDKafka",
            cSettings: [.unsafeFlags(rdkafkaCFlags)],
            linkerSettings: [.unsafeFlags(rdkafkaLinkerFlags)]
        ),
        // The Kafka client: producer, consumer, admin. Hides every librdkafka pointer.
        .target(
            name: "SluiceKafka",
            dependencies: ["CRDKafka", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strictSwiftSettings
        ),
        // Streams: Source/Flow/Sink with demand-driven backpressure and bounded buffers (no Kafka).
        .target(
            name: "SluiceStreams",
            dependencies: [.product(name: "DequeModule", package: "swift-collections")],
            swiftSettings: strictSwiftSettings
        ),
        // Kafka stream stages: consumer sources, producer flow and sink, committer (Pekko Connectors Kafka's ideas).
        .target(
            name: "SluiceKafkaStreams",
            dependencies: [
                "SluiceKafka", "SluiceStreams", .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSwiftSettings
        ),
        // Actors: typed references, bounded mailboxes, hierarchy, supervision, timers; sharded entities.
        .target(
            name: "SluiceActors",
            dependencies: [
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSwiftSettings
        ),
        // Sharded entities over Kafka: entity ids, the sharded-entities stage, repartitioning, rebalance hand-off.
        .target(
            name: "SluiceSharding",
            dependencies: [
                "SluiceActors", "SluiceKafka", "SluiceKafkaStreams", "SluicePersistence", "SluiceStreams",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSwiftSettings
        ),
        // The system SQLite library (libsqlite3-dev, installed by scripts/setup): no SQLite build of our own, so a
        // first build stays fast.
        .systemLibrary(name: "CSQLite", path: "Sources/CSQLite", providers: [.apt(["libsqlite3-dev"])]),
        // Persistence: event-sourced entities, the journal protocol, the embedded SQLite journal and the Kafka changelog
        // journal.
        .target(
            name: "SluicePersistence",
            dependencies: [
                "CSQLite", "SluiceActors", "SluiceKafka", .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSwiftSettings
        ),
        // Test helper: appends to a SQLite journal and prints each acknowledged sequence number until killed; or runs
        // counter entities behind a Kafka consumer until killed (the effectively-once test).
        .executableTarget(
            name: "sluice-persistence-crash-helper",
            dependencies: [
                "SluicePersistence", "SluiceSharding", "SluiceKafkaStreams", "SluiceStreams", "SluiceActors",
                "SluiceKafka", allocatorConfiguration,
            ],
            swiftSettings: strictSwiftSettings,
            linkerSettings: allocatorLinkerSettings
        ),
        // Connector configuration: YAML files to typed, validated connector definitions (no network).
        .target(
            name: "SluiceConnectorConfig",
            dependencies: ["SluiceKafka", .product(name: "Yams", package: "Yams")],
            swiftSettings: strictSwiftSettings
        ),
        // The connector runtime: a validated connector becomes a running Kafka pipeline with processors, sinks,
        // retries and dead letters, plus the metrics it reports.
        .target(
            name: "SluiceConnectors",
            dependencies: [
                "SluiceConnectorConfig", "SluiceKafka", "SluiceKafkaStreams", "SluicePersistence", "SluiceStreams",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: strictSwiftSettings
        ),
        // The sidecar: the HTTP interface (health, readiness, metrics, publish, connector control) and the
        // service lifecycle that drains every connector on SIGTERM.
        .target(
            name: "SluiceSidecar",
            dependencies: [
                "SluiceConnectors", "SluiceConnectorConfig", "SluiceKafka",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: strictSwiftSettings
        ),
        // Test support: the local broker, unique topics, polling with a deadline, independent clients.
        .target(
            name: "SluiceTesting",
            dependencies: ["SluiceKafka", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strictSwiftSettings
        ),
        // jemalloc's options, linked into the executables that link jemalloc (see allocatorLinkerSettings).
        .target(name: "SluiceAllocatorConfig"),
        // Raw-librdkafka baselines (C) that the benchmark measures Sluice against in the same run.
        .target(
            name: "SluiceBenchBaseline",
            dependencies: ["CRDKafka"],
            cSettings: [.unsafeFlags(rdkafkaCFlags + ["-O2"])]
        ),
        .executableTarget(
            name: "sluice",
            dependencies: [
                "SluiceKafka", "SluiceConnectorConfig", "SluiceConnectors", "SluiceSidecar", allocatorConfiguration,
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSwiftSettings,
            linkerSettings: allocatorLinkerSettings
        ),
        .executableTarget(
            name: "sluice-bench",
            dependencies: [
                "SluiceKafka", "SluiceBenchBaseline", "SluiceStreams", "SluiceKafkaStreams", "SluiceActors", "SluiceSharding",
                "SluicePersistence",
                "SluiceSidecar", "SluiceConnectors", "SluiceConnectorConfig", allocatorConfiguration,
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSwiftSettings,
            linkerSettings: allocatorLinkerSettings
        ),
        .testTarget(
            name: "SluiceStreamsTests",
            dependencies: ["SluiceStreams", "SluiceTesting"],
            swiftSettings: strictSwiftSettings
        ),
        .testTarget(
            name: "SluiceActorsTests",
            dependencies: ["SluiceActors", "SluiceTesting"],
            swiftSettings: strictSwiftSettings
        ),
        .testTarget(
            name: "SluiceKafkaStreamsTests",
            dependencies: ["SluiceKafkaStreams", "SluiceStreams", "SluiceKafka", "SluiceTesting", "SluiceSharding", "SluiceActors"],
            swiftSettings: strictSwiftSettings
        ),
        .testTarget(
            name: "SluiceConnectorsTests",
            dependencies: [
                "SluiceConnectorConfig", "SluiceConnectors", "SluiceSidecar", "SluiceKafka", "SluiceTesting",
                "SluicePersistence",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: strictSwiftSettings
        ),
        .testTarget(
            name: "SluicePersistenceTests",
            dependencies: [
                "SluicePersistence", "SluiceActors", "SluiceKafka", "SluiceTesting", "SluiceSharding",
                "SluiceKafkaStreams", "SluiceStreams",
            ],
            swiftSettings: strictSwiftSettings
        ),
        .testTarget(
            name: "SluiceKafkaTests",
            dependencies: ["SluiceKafka", "SluiceTesting", "CRDKafka", "SluiceBenchBaseline"],
            swiftSettings: strictSwiftSettings
        ),
    ]
)
