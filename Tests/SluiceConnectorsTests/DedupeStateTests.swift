import Foundation
import SluiceConnectorConfig
@testable import SluiceConnectors
import SluiceKafka
import SluicePersistence
import SluiceTesting
import Testing

/// The persistent deduplication set of a `dedupe` processor with `state:`.
@Suite struct DedupeStateTests {
    static func temporaryPath() throws -> (URL, String) {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(uniqueTestName("dedupe-state"))
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return (directory, directory.appendingPathComponent("state.db").path)
    }

    static let id = PersistenceID(entityType: PersistentDedupe.entityType, entityID: "test/0/orders/0")

    /// A connector reading `topic` with a `dedupe` on `.id` whose state is `state` (YAML), into the topic `output`.
    static func connectorYAML(name: String, topic: String, group: String, state: String, output: String) -> String {
        """
        kafka:
          default: { bootstrap: "${SLUICE_BOOTSTRAP}" }
        server: { listen: "127.0.0.1:0" }
        connectors:
          - name: \(name)
            source: { topics: [\(topic)], group: \(group), properties: { session.timeout.ms: "6000", heartbeat.interval.ms: "500" } }
            processors:
              - dedupe: { id: .id, window: 10m, state: \(state) }
            sink: { kafka: { topic: \(output) } }
        """
    }

    /// Produces `{"id":"oN"}` keyed `oN` for each N: keyed by id, so every copy of an id is in the same partition (a
    /// Kafka store dedupes per partition).
    static func produceOrders(_ ids: [Int], topic: String) async throws {
        let bootstrap = try await TestBroker.bootstrapServers().joined(separator: ",")
        let lines = ids.map { "o\($0)|{\"id\":\"o\($0)\"}" }.joined(separator: "\n") + "\n"
        let produced = try await Kcat.run(["-P", "-b", bootstrap, "-t", topic, "-K", "|"], input: Array(lines.utf8))
        #expect(produced.status == 0)
    }

    /// A SQLite journal at `path` and the test partition's set recovered from it.
    static func open(_ path: String, window: Duration = .seconds(600), maxIDs: Int = 1000) async throws
        -> (SQLiteJournal, DedupeLog)
    {
        let journal = try await SQLiteJournal(path: path)
        return (journal, try await DedupeLog.recover(id, journal: journal, window: window, maxIDs: maxIDs))
    }

    @Test func idsSurviveARestartAndARedeliveryOfTheOriginalIsNotADuplicate() async throws {
        let (directory, path) = try Self.temporaryPath()
        defer { try? FileManager.default.removeItem(at: directory) }
        let (journal, log) = try await Self.open(path)
        #expect(try await log.isDuplicate("a", offset: 10) == false)
        #expect(try await log.isDuplicate("b", offset: 11) == false)
        #expect(try await log.isDuplicate("a", offset: 12) == true, "a second message with id a")
        await journal.close()

        // A new incarnation (after a crash or restart) recovers the ids from the journal.
        let (reopened, recovered) = try await Self.open(path)
        #expect(await recovered.count == 2)
        #expect(try await recovered.isDuplicate("a", offset: 13) == true, "a later duplicate of a")
        // The message that first carried a, delivered again (its offset was not committed): not its own duplicate.
        #expect(try await recovered.isDuplicate("a", offset: 10) == false)
        #expect(try await recovered.isDuplicate("c", offset: 14) == false)
        await reopened.close()
    }

    @Test func idsAreForgottenAfterTheWindowAndBeyondTheBound() async throws {
        let (directory, path) = try Self.temporaryPath()
        defer { try? FileManager.default.removeItem(at: directory) }
        let (journal, log) = try await Self.open(path, window: .seconds(60), maxIDs: 3)
        let start: Int64 = 1_800_000_000_000
        #expect(try await log.isDuplicate("a", offset: 1, now: start) == false)
        #expect(try await log.isDuplicate("a", offset: 2, now: start + 59_000) == true)
        // Past the window a is new again.
        #expect(try await log.isDuplicate("a", offset: 3, now: start + 61_000) == false)
        for (index, id) in ["b", "c", "d"].enumerated() {
            #expect(try await log.isDuplicate(id, offset: Int64(4 + index), now: start + 62_000) == false)
        }
        // At most 3 ids: the oldest (a, seen again at 61 s) was forgotten first.
        #expect(await log.count == 3)
        #expect(try await log.isDuplicate("a", offset: 8, now: start + 62_000) == false)
        await journal.close()
    }

    @Test func concurrentNewIdsShareWrites() async throws {
        let (directory, path) = try Self.temporaryPath()
        defer { try? FileManager.default.removeItem(at: directory) }
        let (journal, log) = try await Self.open(path, maxIDs: 100_000)
        let ids = 2000
        let duplicates = try await withThrowingTaskGroup(of: Bool.self) { group in
            for index in 0..<ids { group.addTask { try await log.isDuplicate("id-\(index)", offset: Int64(index)) } }
            return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(duplicates == 0)
        let writes = journal.statistics.appends
        #expect(writes < ids / 4, "\(writes) journal writes for \(ids) ids: they were not grouped")
        await journal.close()
        let (reopened, recovered) = try await Self.open(path, maxIDs: 100_000)
        #expect(await recovered.count == ids)
        await reopened.close()
        print("dedupe state: \(ids) concurrent new ids stored in \(writes) journal writes")
    }

    @Test func aFailedWriteRefusesEveryLaterCheck() async throws {
        let (directory, path) = try Self.temporaryPath()
        defer { try? FileManager.default.removeItem(at: directory) }
        let (journal, log) = try await Self.open(path)
        #expect(try await log.isDuplicate("a", offset: 1) == false)
        await journal.close()
        await #expect(throws: PersistenceError.self) { try await log.isDuplicate("b", offset: 2) }
        // Even a check that needs no write: after a failure the set in memory is not trusted.
        await #expect(throws: PersistenceError.self) { try await log.isDuplicate("a", offset: 3) }
    }

    /// A connector with `dedupe` and `state:`, run twice against the broker: the second run skips the ids the
    /// first one delivered.
    @Test(arguments: ["sqlite", "kafka"])
    func duplicatesAreSkippedAcrossARestart(store: String) async throws {
        try await withTestTopic(partitions: 2, prefix: "dedupe-state") { topic in
            let output = uniqueTestName("deduped")
            let group = uniqueTestName("dedupe-state")
            let (directory, path) = try Self.temporaryPath()
            defer { try? FileManager.default.removeItem(at: directory) }
            // The Kafka store also sets its changelog producer's linger, the way a deployment tuning for throughput
            // would.
            let state = store == "sqlite"
                ? "{ store: sqlite, path: \"\(path)\" }" : "{ store: kafka, topic: \(uniqueTestName("seen")), linger: 20ms }"
            let yaml = Self.connectorYAML(name: "dedupe-state", topic: topic, group: group, state: state, output: output)
            let bootstrap = try await TestBroker.bootstrapServers().joined(separator: ",")
            func produce(_ ids: [Int]) async throws { try await Self.produceOrders(ids, topic: topic) }

            try await produce(Array(0..<10))
            let first = try await SidecarHarness.start(yaml)
            try await Eventually.require(timeout: .seconds(60), "the first run delivers 10 orders") {
                first.metric("sluice_messages_delivered_total", connector: "dedupe-state") >= 10
            }
            try await first.stop()

            // Five ids again (new messages), five new ones.
            try await produce(Array(0..<5) + Array(10..<15))
            let second = try await SidecarHarness.start(yaml)
            try await Eventually.require(timeout: .seconds(60), "the second run handles the 10 new messages") {
                second.metric("sluice_messages_delivered_total", connector: "dedupe-state")
                    + second.metric("sluice_messages_skipped_total", connector: "dedupe-state") >= 10
            }
            #expect(second.metric("sluice_messages_delivered_total", connector: "dedupe-state") == 5)
            #expect(second.metric("sluice_messages_skipped_total", connector: "dedupe-state") == 5)
            try await second.stop()
            let read = try await Kcat.run(["-C", "-b", bootstrap, "-t", output, "-o", "beginning", "-c", "15", "-e", "-q", "-f", "%k\\n"])
            let keys = read.standardOutputString.split(separator: "\n").map(String.init).sorted()
            #expect(keys == (0..<15).map { "o\($0)" }.sorted(), "every id once in the output")
        }
    }

    /// Two sidecars in one group with a Kafka store: when the second joins, the partitions it takes bring their
    /// deduplication sets with them (restored from the changelog), so duplicates of ids the first one saw are
    /// skipped wherever they land.
    @Test func theSetMovesWithItsPartitionToAnotherInstance() async throws {
        try await withTestTopic(partitions: 2, prefix: "dedupe-move") { topic in
            let output = uniqueTestName("deduped")
            let group = uniqueTestName("dedupe-move")
            let yaml = Self.connectorYAML(
                name: "dedupe-move", topic: topic, group: group,
                state: "{ store: kafka, topic: \(uniqueTestName("seen")) }", output: output)
            func produce(_ ids: [Int]) async throws { try await Self.produceOrders(ids, topic: topic) }
            func assigned(_ sidecar: SidecarHarness) async throws -> Int {
                let (_, body) = try await sidecar.request("GET", "/v1/connectors/dedupe-move")
                guard case .object(let status)? = JSONValue.parse(Array(body.utf8)),
                    case .array(let partitions)? = status["assigned_partitions"]
                else { return -1 }
                return partitions.count
            }
            func handled(_ sidecars: [SidecarHarness]) -> (delivered: Double, skipped: Double) {
                sidecars.reduce((0, 0)) { total, sidecar in
                    (total.0 + sidecar.metric("sluice_messages_delivered_total", connector: "dedupe-move"),
                     total.1 + sidecar.metric("sluice_messages_skipped_total", connector: "dedupe-move"))
                }
            }

            // A alone sees o0-o19 (both partitions).
            try await produce(Array(0..<20))
            let a = try await SidecarHarness.start(yaml)
            try await Eventually.require(timeout: .seconds(60), "A delivers 20 orders") { handled([a]).delivered >= 20 }
            // B joins: each takes one partition; B's comes with A's set for it.
            let b = try await SidecarHarness.start(yaml)
            try await Eventually.require(timeout: .seconds(60), "A and B hold one partition each") {
                let (onA, onB) = (try await assigned(a), try await assigned(b))
                return onA == 1 && onB == 1
            }
            let before = handled([a, b])
            try await produce(Array(0..<20) + Array(20..<30))
            try await Eventually.require(timeout: .seconds(60), "the 30 new messages are handled") {
                let now = handled([a, b])
                return now.delivered + now.skipped - before.delivered - before.skipped >= 30
            }
            let after = handled([a, b])
            #expect(after.skipped - before.skipped == 20, "every copy of o0-o19 is a duplicate on whichever instance")
            #expect(after.delivered - before.delivered == 10)
            #expect(b.metric("sluice_messages_skipped_total", connector: "dedupe-move") > 0, "B recognised ids it never saw")
            try await b.stop()
            try await a.stop()
        }
    }
}
