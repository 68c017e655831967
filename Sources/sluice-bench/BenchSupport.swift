import Logging
import SluiceBenchBaseline
import Foundation

/// How fast one phase moved its messages.
struct Throughput: Sendable {
    /// Wall-clock seconds of the measured interval.
    var seconds: Double
    /// Messages moved in that interval.
    var messages: Int
    /// Payload bytes moved in that interval (keys, headers and protocol overhead not counted).
    var payloadBytes: Int
    /// CPU seconds of the whole process over the whole phase (set-up included); filled in by the caller.
    var cpuSeconds: Double = 0

    var messagesPerSecond: Double { seconds > 0 ? Double(messages) / seconds : 0 }
    /// Payload megabytes (10^6 bytes) per second.
    var megabytesPerSecond: Double { seconds > 0 ? Double(payloadBytes) / seconds / 1e6 : 0 }
}

/// Errors of the benchmark itself (as opposed to Sluice's `KafkaError`).
struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Runs blocking work (the C baselines) on a thread of its own, never on Swift's cooperative pool, and returns its
/// result to the awaiting task.
func runOnDedicatedThread<T: Sendable>(name: String, _ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        let thread = Thread { continuation.resume(returning: body()) }
        thread.name = name
        thread.stackSize = 8 << 20
        thread.start()
    }
}

/// Calls a C baseline that reports failures as a negative result and a message in an error buffer.
func callBaseline(_ body: (UnsafeMutablePointer<CChar>, Int) -> Double) throws -> Double {
    var errorBuffer = [CChar](repeating: 0, count: 512)
    let seconds = errorBuffer.withUnsafeMutableBufferPointer { body($0.baseAddress!, $0.count) }
    if seconds < 0 {
        let message = String(decoding: errorBuffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        throw BenchError("C baseline: \(message)")
    }
    return seconds
}

extension Duration {
    var milliseconds: Int {
        let (seconds, attoseconds) = components
        return Int(seconds) * 1000 + Int(attoseconds / 1_000_000_000_000_000)
    }

    var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}

/// User plus system CPU seconds of the whole process so far (every thread: librdkafka's included), or with
/// `children`, of its waited-for child processes.
func processCPUSeconds(children: Bool = false) -> Double {
    var usage = rusage()
    getrusage(children ? RUSAGE_CHILDREN.rawValue : RUSAGE_SELF.rawValue, &usage)
    func seconds(_ time: timeval) -> Double { Double(time.tv_sec) + Double(time.tv_usec) / 1e6 }
    return seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// The process's allocation requests so far, from jemalloc's statistics (`nil` without jemalloc): a count that
/// does not depend on the machine's speed.
func allocationRequests() -> Int64? {
    let count = sluice_bench_allocation_requests()
    return count < 0 ? nil : count
}

/// The median (the mean of the two middle values for an even count); 0 for no values.
func median(_ values: [Double]) -> Double {
    guard !values.isEmpty else { return 0 }
    let sorted = values.sorted()
    let middle = sorted.count / 2
    return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

/// `1234567.8` → `1,234,568`.
func grouped(_ value: Double) -> String {
    let digits = String(Int(value.rounded()))
    var result = ""
    for (index, character) in digits.reversed().enumerated() {
        if index > 0 && index % 3 == 0 && character != "-" { result.append(",") }
        result.append(character)
    }
    return String(result.reversed())
}

func fixed(_ value: Double, _ decimals: Int) -> String { String(format: "%.\(decimals)f", value) }

/// Left-aligns the first column and right-aligns the others, two spaces apart.
func renderTable(_ rows: [[String]], leftAligned: Int = 1) -> String {
    guard let columns = rows.map(\.count).max() else { return "" }
    var widths = [Int](repeating: 0, count: columns)
    for row in rows {
        for (index, cell) in row.enumerated() { widths[index] = max(widths[index], cell.count) }
    }
    return rows.map { row in
        row.enumerated().map { index, cell in
            let padding = String(repeating: " ", count: widths[index] - cell.count)
            return index < leftAligned ? cell + padding : padding + cell
        }.joined(separator: "  ").replacingOccurrences(of: "\\s+$", with: "", options: .regularExpression)
    }.joined(separator: "\n")
}

/// The benchmarks' logger: warnings only, the figures are the output.
func warningsOnlyLogger() -> Logger {
    var logger = Logger(label: "sluice.bench")
    logger.logLevel = .warning
    return logger
}
