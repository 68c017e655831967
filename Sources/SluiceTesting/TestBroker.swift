import Foundation

/// The Kafka-compatible broker the tests run against.
///
/// Uses `SLUICE_BOOTSTRAP` when set (as `scripts/test` does); otherwise starts one Tansu broker for the whole
/// test process on a free loopback port, and stops it when the process ends.
public enum TestBroker {
    /// The bootstrap servers of the shared test broker, starting it on first use.
    public static func bootstrapServers() async throws -> [String] {
        try await shared.servers()
    }

    private static let shared = SharedBroker()

    private actor SharedBroker {
        /// The one start, shared by every caller: the actor is reentrant at the start's `await`, so callers that come
        /// while the broker starts wait for that start instead of starting brokers of their own.
        private var starting: Task<[String], any Error>?
        private var process: Process?

        func servers() async throws -> [String] {
            if let starting { return try await starting.value }
            let start = Task { try await self.start() }
            starting = start
            return try await start.value
        }

        private func start() async throws -> [String] {
            if let given = ProcessInfo.processInfo.environment["SLUICE_BOOTSTRAP"], !given.isEmpty {
                return given.split(separator: ",").map(String.init)
            }
            let port = try FreePort.find()
            let tansu = TestEnvironment.tansuPath
            guard FileManager.default.isExecutableFile(atPath: tansu) else {
                throw TestSupportError("no Tansu broker at \(tansu): run scripts/setup (or set SLUICE_BOOTSTRAP)")
            }
            // The shell wrapper keeps Tansu tied to this process: when our end of its stdin closes (we exit or
            // crash), `read` returns and the broker is killed, so no broker outlives the tests.
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            process.arguments = [
                "-c",
                "\"$0\" broker --listener-url tcp://127.0.0.1:\(port) --advertised-listener-url tcp://127.0.0.1:\(port) "
                    + ">/dev/null 2>&1 </dev/null & pid=$!; read _; kill $pid",
                tansu,
            ]
            let stdin = Pipe()
            process.standardInput = stdin
            try process.run()
            self.process = process
            try await Eventually.require(timeout: .seconds(20), "Tansu accepts connections on port \(port)") {
                FreePort.isAccepting(port: port)
            }
            return ["127.0.0.1:\(port)"]
        }
    }
}

/// Paths and settings of the test environment.
public enum TestEnvironment {
    /// The cache `scripts/setup` installs into.
    public static var cacheDirectory: String {
        let environment = ProcessInfo.processInfo.environment
        return environment["SLUICE_CACHE"] ?? "\(environment["HOME"] ?? "/root")/.cache/sluice"
    }

    /// The librdkafka >= 2.1 prefix (for running kcat with a library new enough to talk to the broker).
    public static var librdkafkaPrefix: String {
        ProcessInfo.processInfo.environment["SLUICE_RDKAFKA_PREFIX"] ?? "\(cacheDirectory)/librdkafka-2.8.0"
    }

    /// The Tansu binary.
    public static var tansuPath: String {
        ProcessInfo.processInfo.environment["SLUICE_TANSU"] ?? "\(cacheDirectory)/tansu-0.6.0/tansu"
    }
}

/// An error in the test support itself (missing tool, failed precondition).
public struct TestSupportError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Free loopback ports, for servers a test starts itself.
public enum FreePort {
    /// A loopback port nothing listens on right now.
    public static func find() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestSupportError("socket() failed") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(fd, pointer, length) == 0 && getsockname(fd, pointer, &length) == 0
            }
        }
        guard bound else { throw TestSupportError("could not bind a free loopback port") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    static func isAccepting(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }
}
