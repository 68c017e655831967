import Foundation
import SluiceActors
import SluiceKafka
import SluiceKafkaStreams
import SluicePersistence
import SluiceSharding
import SluiceStreams
import Synchronization

// The effectively-once test's consumer: a counter entity per message key, persisted to a SQLite journal, behind a
// committable source and a committer. The test kills it with SIGKILL mid-stream, starts it again, and finally asks
// `counter-report` for every key's count.

enum CounterCommand: Codable, Sendable { case increment }
enum CounterEvent: Codable, Sendable { case incremented }

func counterBehavior(_ id: PersistenceID) -> EventSourcedBehavior<CounterCommand, CounterEvent, Int, Int> {
    EventSourcedBehavior(
        persistenceID: id, emptyState: 0, snapshotEvery: 50,
        commandHandler: { _, _ in .persist(.incremented).thenReply { $0 } },
        eventHandler: { count, _ in count + 1 })
}

enum CounterMode: String {
    case consumer = "counter-consumer"
    case report = "counter-report"

    func run(_ arguments: [String]) async -> Int32 {
        do {
            switch self {
            case .consumer:
                guard arguments.count == 4 else { return usage() }
                try await consume(bootstrap: arguments[0], topic: arguments[1], group: arguments[2], path: arguments[3])
            case .report:
                guard arguments.count >= 1 else { return usage() }
                try await report(path: arguments[0], keys: Array(arguments.dropFirst()))
            }
            return 0
        } catch {
            FileHandle.standardError.write(Data("counter helper failed: \(error)\n".utf8))
            return 1
        }
    }

    private func usage() -> Int32 {
        FileHandle.standardError.write(
            Data(
                """
                usage: sluice-persistence-crash-helper counter-consumer <bootstrap> <topic> <group> <journal path>
                       sluice-persistence-crash-helper counter-report <journal path> <key>...

                """.utf8))
        return 2
    }

    /// Consumes until killed, printing `progress <commands handled> <skipped as already applied>` every 500
    /// commands.
    private func consume(bootstrap: String, topic: String, group: String, path: String) async throws {
        let journal = try await SQLiteJournal(path: path)
        let system = ActorSystem(name: "counter-consumer")
        let counters = try PersistentShardedEntities(
            system: system, settings: PersistentEntitiesSettings(entityType: "counter"), journal: journal,
            behavior: counterBehavior)
        var consumer = KafkaConsumerConfiguration(bootstrapServers: [bootstrap], groupID: group)
        consumer.sessionTimeout = .seconds(6)
        consumer.client.properties["heartbeat.interval.ms"] = "500"
        consumer.autoOffsetReset = .earliest
        let settings = counters.handOff(KafkaSourceSettings(consumer: consumer, subscription: .topics([topic])))
        let output = LineOutput()
        let printed = ProgressMark()
        let (_, completion) = try KafkaSource.committable(settings)
            .via(counters.flow(parallelism: 500) { _ in .increment })
            .map { delivery -> CommittableOffset in
                guard delivery.isProcessed else { throw CounterHelperError.notProcessed("\(delivery.outcome)") }
                let statistics = counters.statistics
                let due = printed.withLock { last in
                    guard statistics.commandsHandled >= last + 500 else { return false }
                    last = statistics.commandsHandled
                    return true
                }
                if due {
                    output.write("progress \(statistics.commandsHandled) \(statistics.skippedAsAlreadyApplied)")
                }
                return delivery.message.committableOffset
            }
            // Commits at most once a second: a kill always leaves applied but uncommitted messages to redeliver.
            .toMat(KafkaCommitter.sink(KafkaCommitterSettings(maxBatch: 100_000, maxInterval: .seconds(1))), Keep.both)
            .run()
        try await completion.value()
    }

    /// Prints `count <key> <value>` for every key, recovered from the journal.
    private func report(path: String, keys: [String]) async throws {
        let journal = try await SQLiteJournal(path: path)
        let output = LineOutput()
        for key in keys {
            let entity = PersistentEntity(
                counterBehavior(PersistenceID(entityType: "counter", entityID: key)), journal: journal)
            try await entity.recover()
            output.write("count \(key) \(await entity.state)")
        }
        await journal.close()
    }
}

/// The commands-handled count last printed.
final class ProgressMark: Sendable {
    private let last = Mutex(0)
    func withLock<T>(_ body: (inout Int) -> T) -> T { last.withLock { body(&$0) } }
}

enum CounterHelperError: Error { case notProcessed(String) }
