import Foundation
import SluiceActors
import SluicePersistence
import SluiceSharding
import SluiceTesting
import Synchronization
import Testing

/// A partitioned journal over SQLite whose restores can be made to fail, recording restores and releases.
final class GatedJournal: ForwardingJournal, PartitionedJournal {
    let inner: any Journal
    private let failing = LockedFlag()
    private let log = Locked<[String]>([])

    init(_ inner: SQLiteJournal) { self.inner = inner }

    var name: String { "gated:\(inner.name)" }
    var events: [String] { log.value }
    func failRestores(_ fail: Bool) { failing.set(fail) }

    func restore(partitions: [Int32]) async throws(PersistenceError) -> PartitionRestoreStatistics {
        log.mutate { $0.append("restore \(partitions)") }
        if failing.value {
            throw PersistenceError(.storageFailure, journal: name, message: "injected failure: the cluster is down")
        }
        return PartitionRestoreStatistics(
            partitions: partitions, records: 0, entities: 0, events: 0, ignoredRecords: 0, duration: .zero)
    }

    func release(partitions: [Int32]) { log.mutate { $0.append("release \(partitions)") } }

    func append(_ append: JournalAppend) async throws(PersistenceError) { try await inner.append(append) }
}

/// A value behind a lock (tests only).
final class Locked<Value: Sendable>: Sendable {
    private let state: Mutex<Value>
    init(_ value: Value) { state = Mutex(value) }
    var value: Value { state.withLock { $0 } }
    func mutate(_ body: (inout Value) -> Void) { state.withLock { body(&$0) } }
}

/// The hand-off between partitions and persistent entities, without a broker: no entity runs on a partition whose
/// restore failed, and a released partition takes no more messages.
@Suite struct PartitionHandOffTests {
    func send(_ command: CounterCommand, to id: String, offset: Int64, via entities: PersistentShardedEntities<CounterCommand, CounterEvent, CounterState, Int>) async -> MessageOutcome {
        let envelope = EntityEnvelope<CounterCommand, Int>(command, inputOffset: InputOffset(topic: "in", partition: 0, offset: offset))
        // The receipt is called exactly once: when the entity handled the message, or at once if it was refused.
        return await withCheckedContinuation { continuation in
            Task { await entities.region.deliver(envelope, to: id, shard: 0) { continuation.resume(returning: $0) } }
        }
    }

    @Test func aFailedRestoreKeepsThePartitionsEntitiesStopped() async throws {
        let fixture = try await SQLiteFixture.make()
        let journal = GatedJournal(fixture.sqlite)
        let system = ActorSystem(name: "hand-off")
        let entities = try PersistentShardedEntities(
            system: system, settings: PersistentEntitiesSettings(entityType: "counter"), journal: journal
        ) { id in counter(id.entityID) }

        journal.failRestores(true)
        await entities.assign([0])
        #expect(entities.ownedPartitions.isEmpty)
        #expect(entities.statistics.partitionRestoreFailures == 1)
        guard case .dropped = await send(.add(1), to: "a", offset: 0, via: entities) else {
            Issue.record("a message reached an entity whose partition was not restored")
            return
        }
        #expect(entities.statistics.commandsHandled == 0)

        journal.failRestores(false)
        await entities.assign([0])
        #expect(entities.ownedPartitions == [0])
        guard case .processed = await send(.add(5), to: "a", offset: 1, via: entities) else {
            Issue.record("the restored partition's entity did not process the message")
            return
        }
        // A redelivery of the same input offset is recognised.
        _ = await send(.add(5), to: "a", offset: 1, via: entities)
        #expect(entities.statistics.skippedAsAlreadyApplied == 1)

        await entities.revoke([0])
        #expect(entities.ownedPartitions.isEmpty)
        guard case .dropped = await send(.add(1), to: "a", offset: 2, via: entities) else {
            Issue.record("a revoked partition's entity took a message")
            return
        }
        #expect(journal.events == ["restore [0]", "restore [0]", "release [0]"])
        let entity = PersistentEntity(counter("a"), journal: fixture.journal)
        #expect(try await entity.handle(.get).reply == 5)
        await entities.shutdown()
        await system.shutdown()
        await fixture.destroy()
    }
}
