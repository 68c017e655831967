import Foundation
import SluiceKafka
import SluicePersistence
import SluiceTesting
import Testing

/// A counter entity per key behind a Kafka consumer (the helper's `counter-consumer`), killed with SIGKILL twice
/// mid-stream and started again: every key's count equals what was produced for it, although messages applied
/// but not yet committed at each kill were delivered again.
@Suite("Effectively-once state over at-least-once delivery", .serialized, .timeLimit(.minutes(6)))
struct EffectivelyOnceTests {
    /// One run of the helper's consumer.
    final class ConsumerRun: Sendable {
        let process: Process
        let collector = CrashSafetyTests.LineCollector()
        let exited = LockedFlag()

        init(_ arguments: [String]) throws {
            process = Process()
            process.executableURL = URL(fileURLWithPath: CrashSafetyTests.helper)
            process.arguments = arguments
            let stdout = Pipe()
            process.standardOutput = stdout
            let exited = self.exited
            process.terminationHandler = { _ in exited.set(true) }
            try process.run()
            collector.start(reading: stdout.fileHandleForReading)
        }

        /// The last `progress <handled> <skipped>` line's numbers.
        var progress: (handled: Int, skipped: Int) {
            for line in collector.lines.reversed() {
                let fields = line.split(separator: " ")
                if fields.count == 3, fields[0] == "progress", let handled = Int(fields[1]),
                    let skipped = Int(fields[2])
                {
                    return (handled, skipped)
                }
            }
            return (0, 0)
        }

        func kill() async throws {
            Foundation.kill(process.processIdentifier, SIGKILL)
            try await Eventually.require("the consumer is gone and its output read") {
                exited.value && collector.finished
            }
        }
    }

    @Test("100,000 messages over 1,000 keys, the consumer killed with SIGKILL twice: every count is exact")
    func countsSurviveTwoKills() async throws {
        try #require(
            FileManager.default.isExecutableFile(atPath: CrashSafetyTests.helper),
            "build the helper first (swift build --build-tests): \(CrashSafetyTests.helper)")
        let directory = try TemporaryDirectory.make()
        defer { try? FileManager.default.removeItem(at: directory) }
        let journalPath = directory.appendingPathComponent("counters.db").path
        let bootstrap = try await TestBroker.bootstrapServers().joined(separator: ",")
        let keys = 1000
        let messages = 100_000

        try await withTestTopic(partitions: 4) { topic in
            // Produce, keeping the producer's own tally per key.
            var generator = SeededGenerator(seed: 6)
            var tally: [String: Int] = [:]
            let amounts = (0..<messages).map { _ -> (key: String, amount: Int) in
                let key = "key-\(Int.random(in: 0..<keys, using: &generator))"
                tally[key, default: 0] += 1
                return (key, 1)
            }
            let ends = try await produceAmounts(amounts, topic: topic)
            #expect(tally.values.reduce(0, +) == messages)

            let group = uniqueTestName("counters")
            let arguments = ["counter-consumer", bootstrap, topic, group, journalPath]
            var skipped = 0
            // Two runs killed mid-stream, each after handling a good share of the messages.
            for (run, share) in [(1, 20_000), (2, 20_000)] {
                let consumer = try ConsumerRun(arguments)
                try await Eventually.require(timeout: .seconds(180), "run \(run) handles \(share) messages") {
                    consumer.progress.handled >= share || consumer.exited.value
                }
                #expect(!consumer.exited.value, "run \(run) ended by itself: \(consumer.collector.lines.suffix(3))")
                try await consumer.kill()
                skipped += consumer.progress.skipped
                print("effectively-once: run \(run) killed after \(consumer.progress.handled) commands")
            }
            // The last run goes to the end: every partition's committed offset reaches its end.
            let last = try ConsumerRun(arguments)
            let exited = last.exited
            try await waitForCommits(
                group: group, topic: topic, ends: ends, partitions: 4, timeout: .seconds(240),
                givesUp: { exited.value })
            #expect(!last.exited.value, "the last run ended by itself: \(last.collector.lines.suffix(3))")
            try await last.kill()
            skipped += last.progress.skipped

            // Every key's count, recovered from the journal, equals the producer's tally.
            let sortedKeys = tally.keys.sorted()
            let report = try await runExternalProcess(
                CrashSafetyTests.helper, ["counter-report", journalPath] + sortedKeys)
            #expect(report.status == 0, "counter-report failed: \(report.standardError)")
            var counts: [String: Int] = [:]
            for line in report.standardOutputString.split(separator: "\n") {
                let fields = line.split(separator: " ")
                if fields.count == 3, fields[0] == "count", let value = Int(fields[2]) { counts[String(fields[1])] = value }
            }
            #expect(counts.count == tally.count, "the report has \(counts.count) of \(tally.count) keys")
            var wrong = 0
            for (key, expected) in tally where counts[key] != expected {
                wrong += 1
                if wrong <= 5 { Issue.record("\(key): counted \(counts[key] ?? -1), produced \(expected)") }
            }
            #expect(wrong == 0, "\(wrong) keys have a wrong count")
            // Messages applied but not committed at a kill came again and were recognised.
            #expect(skipped > 0, "no message was delivered twice: the kills did not land mid-stream")
            print("effectively-once: \(messages) messages, \(keys) keys, 2 kills, \(skipped) redeliveries skipped, every count exact")
        }
    }
}
