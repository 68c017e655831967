import Foundation

/// The outcome of running an external program.
public struct ProcessOutput: Sendable {
    public var status: Int32
    public var standardOutput: [UInt8]
    public var standardError: String
    public var standardOutputString: String { String(decoding: standardOutput, as: UTF8.self) }
}

/// Runs an external program to completion without blocking Swift's cooperative pool.
public func runExternalProcess(
    _ executable: String, _ arguments: [String], input: [UInt8] = [], environment: [String: String] = [:],
    timeout: Duration = .seconds(60)
) async throws -> ProcessOutput {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global().async {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = arguments
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
            let stdin = Pipe()
            let stdout = Pipe()
            let stderr = Pipe()
            process.standardInput = stdin
            process.standardOutput = stdout
            process.standardError = stderr
            do {
                try process.run()
            } catch {
                continuation.resume(throwing: TestSupportError("cannot run \(executable): \(error)"))
                return
            }
            let killer = DispatchWorkItem { process.terminate() }
            let (seconds, attoseconds) = timeout.components
            DispatchQueue.global().asyncAfter(
                deadline: .now() + .milliseconds(Int(seconds * 1000 + attoseconds / 1_000_000_000_000_000)),
                execute: killer)
            DispatchQueue.global().async {
                stdin.fileHandleForWriting.write(Data(input))
                try? stdin.fileHandleForWriting.close()
            }
            let errorData = LockedData()
            let errorReader = DispatchWorkItem { errorData.set(stderr.fileHandleForReading.readDataToEndOfFile()) }
            DispatchQueue.global().async(execute: errorReader)
            let output = stdout.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            errorReader.wait()
            killer.cancel()
            continuation.resume(
                returning: ProcessOutput(
                    status: process.terminationStatus, standardOutput: Array(output),
                    standardError: String(decoding: errorData.get(), as: UTF8.self)))
        }
    }
}

private final class LockedData: @unchecked Sendable {
    // @unchecked Sendable: every access goes through `lock`.
    private let lock = NSLock()
    private var data = Data()
    func set(_ value: Data) { lock.withLock { data = value } }
    func get() -> Data { lock.withLock { data } }
}

/// `kcat`, an independent Kafka client, run with librdkafka >= 2.1 on its library path (Debian's kcat links the
/// system's 2.0.2, which cannot talk to modern brokers).
public enum Kcat {
    public static func run(_ arguments: [String], input: [UInt8] = []) async throws -> ProcessOutput {
        let output = try await runExternalProcess(
            "/usr/bin/kcat", arguments, input: input,
            environment: ["LD_LIBRARY_PATH": "\(TestEnvironment.librdkafkaPrefix)/lib"])
        guard output.status == 0 else {
            throw TestSupportError("kcat \(arguments.joined(separator: " ")) failed (\(output.status)): \(output.standardError)")
        }
        return output
    }
}
