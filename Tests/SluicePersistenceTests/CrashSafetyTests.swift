import Foundation
import SluicePersistence
import SluiceTesting
import Synchronization
import Testing

/// A process killed with SIGKILL mid-stream loses no acknowledged event (a process crash, not a power loss).
@Suite struct CrashSafetyTests {
    /// The helper executable, built next to the test bundle by `swift build --build-tests`.
    static var helper: String {
        let name = "sluice-persistence-crash-helper"
        let besideTests = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
            .appendingPathComponent(name).path
        if FileManager.default.isExecutableFile(atPath: besideTests) { return besideTests }
        return URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent(".build/debug/\(name)").path
    }

    /// Lines a child process printed, collected by a reader on a Dispatch thread (never the cooperative pool).
    final class LineCollector: Sendable {
        private struct State {
            var partial: [UInt8] = []
            var acknowledged: [String: Int64] = [:]
            var acknowledgedCount = 0
            var lines: [String] = []
            var finished = false
        }
        private let state = Mutex(State())

        func start(reading handle: FileHandle) {
            DispatchQueue.global().async {
                while true {
                    let data = handle.availableData
                    if data.isEmpty { break }
                    self.consume(Array(data))
                }
                self.state.withLock { $0.finished = true }
            }
        }

        private func consume(_ bytes: [UInt8]) {
            state.withLock { state in
                state.partial += bytes
                while let newline = state.partial.firstIndex(of: UInt8(ascii: "\n")) {
                    let line = String(decoding: state.partial[..<newline], as: UTF8.self)
                    state.partial.removeSubrange(...newline)
                    state.lines.append(line)
                    let fields = line.split(separator: " ")
                    if fields.count == 3, fields[0] == "ack", let sequenceNumber = Int64(fields[2]) {
                        let entity = String(fields[1])
                        state.acknowledged[entity] = max(state.acknowledged[entity] ?? 0, sequenceNumber)
                        state.acknowledgedCount += 1
                    }
                }
            }
        }

        var acknowledgedCount: Int { state.withLock { $0.acknowledgedCount } }
        var acknowledged: [String: Int64] { state.withLock { $0.acknowledged } }
        var lines: [String] { state.withLock { $0.lines } }
        var finished: Bool { state.withLock { $0.finished } }
    }

    @Test(arguments: [SQLiteDurability.full, .normal])
    func everyAcknowledgedEventSurvivesSIGKILL(_ durability: SQLiteDurability) async throws {
        try #require(
            FileManager.default.isExecutableFile(atPath: Self.helper),
            "build the helper first (swift build --build-tests): \(Self.helper)")
        let directory = try TemporaryDirectory.make()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("crash.db").path
        let entities = 8

        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.helper)
        process.arguments = [path, "\(entities)", "1000000", durability == .full ? "full" : "normal"]
        let stdout = Pipe()
        process.standardOutput = stdout
        let exited = LockedFlag()
        process.terminationHandler = { _ in exited.set(true) }
        try process.run()
        let collector = LineCollector()
        collector.start(reading: stdout.fileHandleForReading)

        // Let it acknowledge a good number of appends, then kill it while it is appending.
        try await Eventually.require(timeout: .seconds(120), "the helper acknowledges 2,000 appends") {
            collector.acknowledgedCount >= 2000 || exited.value
        }
        #expect(!exited.value, "the helper ended before it was killed: \(collector.lines.suffix(3))")
        kill(process.processIdentifier, SIGKILL)
        try await Eventually.require("the helper is gone and its output read") { exited.value && collector.finished }
        #expect(process.terminationReason == .uncaughtSignal)
        #expect(process.terminationStatus == SIGKILL)
        #expect(!collector.lines.contains("done"))

        let acknowledged = collector.acknowledged
        #expect(acknowledged.count == entities)
        let journal = try await SQLiteJournal(path: path)
        var stored = 0
        for (entity, highestAcknowledged) in acknowledged {
            let id = PersistenceID(entityType: "crash", entityID: entity)
            let highest = try await journal.highestSequenceNumber(of: id)
            // Every acknowledged event is there; at most the appends in flight at the kill are there unacknowledged.
            #expect(highest >= highestAcknowledged, "\(entity): acknowledged \(highestAcknowledged), stored \(highest)")
            let events = try await journal.readEvents(of: id, from: 1, limit: Int(highest) + 1)
            #expect(events.map(\.sequenceNumber) == (0..<highest).map { $0 + 1 })
            for event in events where event.payload != Array("event \(event.sequenceNumber) of \(entity)".utf8) {
                Issue.record("\(entity) #\(event.sequenceNumber) has the wrong payload")
            }
            stored += events.count
        }
        print("crash (\(durability)): \(collector.acknowledgedCount) acknowledged, \(stored) stored after SIGKILL")
        await journal.close()
    }
}
