import Foundation
import SluiceActors
@_spi(Testing) import SluicePersistence
import SluiceTesting
import Synchronization
import Testing

enum CounterCommand: Codable, Sendable {
    case add(Int)
    /// Adds each amount as its own event (one command, several events).
    case addEach([Int])
    case get
    case stop
}

enum CounterEvent: Codable, Sendable, Equatable {
    case added(Int)
}

struct CounterState: Codable, Sendable, Equatable {
    var value = 0
    var changes = 0
}

/// An event-sourced counter that replies with its value.
func counter(_ entityID: String, snapshotEvery: Int? = nil) -> EventSourcedBehavior<
    CounterCommand, CounterEvent, CounterState, Int
> {
    EventSourcedBehavior(
        persistenceID: PersistenceID(entityType: "counter", entityID: entityID), emptyState: CounterState(),
        snapshotEvery: snapshotEvery,
        commandHandler: { state, command in
            switch command {
            case .add(let amount): .persist(.added(amount)).thenReply { $0.value }
            case .addEach(let amounts): .persist(amounts.map { .added($0) }).thenReply { $0.value }
            case .get: .reply(state.value)
            case .stop: .stop
            }
        },
        eventHandler: { state, event in
            switch event {
            case .added(let amount): CounterState(value: state.value + amount, changes: state.changes + 1)
            }
        })
}

@Suite struct CounterEntityTests {
    @Test func replayAfterRestartGivesTheSameState() async throws {
        var fixture = try await SQLiteFixture.make()
        let entity = PersistentEntity(counter("c1"), journal: fixture.journal)
        for amount in 1...100 {
            let result = try await entity.handle(.add(amount))
            #expect(result.eventsPersisted == 1)
        }
        let multi = try await entity.handle(.addEach([1, 2, 3]))
        #expect(multi.eventsPersisted == 3)
        #expect(multi.reply == 5050 + 6)
        let before = await entity.state
        #expect(before == CounterState(value: 5056, changes: 103))

        fixture = try await fixture.reopenSQLite()
        let restarted = PersistentEntity(counter("c1"), journal: fixture.journal)
        let recovery = try await restarted.recover()
        #expect(
            recovery == RecoveryStatistics(snapshotSequenceNumber: nil, eventsReplayed: 103, lastSequenceNumber: 103))
        #expect(await restarted.state == before)
        #expect(try await restarted.handle(.get).reply == 5056)
        #expect(try await restarted.handle(.add(4)).reply == 5060)
        #expect(try await fixture.journal.highestSequenceNumber(of: counter("c1").persistenceID) == 104)
        // Another entity is independent.
        let other = PersistentEntity(counter("c2"), journal: fixture.journal)
        #expect(try await other.handle(.get).reply == 0)
        await fixture.destroy()
    }

    @Test func snapshotsBoundTheEventsReadDuringRecovery() async throws {
        var fixture = try await SQLiteFixture.make()
        let entity = PersistentEntity(counter("snap", snapshotEvery: 100), journal: fixture.journal)
        for _ in 1...1048 { _ = try await entity.handle(.add(1)) }
        // A command whose events cross a multiple of 100 (1049...1051 cross nothing; 1099...1101 would).
        _ = try await entity.handle(.addEach([1, 1, 1]))
        let expected = await entity.state
        #expect(expected.value == 1051)
        let snapshot = try #require(try await fixture.journal.loadSnapshot(of: counter("snap").persistenceID))
        #expect(snapshot.sequenceNumber == 1000)

        fixture = try await fixture.reopenSQLite()
        let readBefore = fixture.sqlite.statistics.eventsRead
        let restarted = PersistentEntity(counter("snap", snapshotEvery: 100), journal: fixture.journal)
        let recovery = try await restarted.recover()
        #expect(recovery.snapshotSequenceNumber == 1000)
        #expect(recovery.eventsReplayed == 51)
        #expect(fixture.sqlite.statistics.eventsRead - readBefore == 51, "only the events after the snapshot are read")
        #expect(await restarted.state == expected)

        // Without snapshots the same history replays in full.
        let full = PersistentEntity(counter("full"), journal: fixture.journal)
        for _ in 1...1051 { _ = try await full.handle(.add(1)) }
        let fullRecovery = try await PersistentEntity(counter("full"), journal: fixture.journal).recover()
        #expect(fullRecovery.eventsReplayed == 1051)
        await fixture.destroy()
    }

    @Test func aSnapshotIsTakenWhenOneCommandsEventsCrossTheInterval() async throws {
        let fixture = try await SQLiteFixture.make()
        let entity = PersistentEntity(counter("cross", snapshotEvery: 10), journal: fixture.journal)
        _ = try await entity.handle(.addEach(Array(repeating: 1, count: 8)))
        #expect(try await fixture.journal.loadSnapshot(of: counter("cross").persistenceID) == nil)
        _ = try await entity.handle(.addEach(Array(repeating: 1, count: 5)))  // 9...13 crosses 10
        let snapshot = try #require(try await fixture.journal.loadSnapshot(of: counter("cross").persistenceID))
        #expect(snapshot.sequenceNumber == 13)
        let restarted = try await PersistentEntity(counter("cross", snapshotEvery: 10), journal: fixture.journal)
            .recover()
        #expect(restarted == RecoveryStatistics(snapshotSequenceNumber: 13, eventsReplayed: 0, lastSequenceNumber: 13))
        await fixture.destroy()
    }

    @Test func redeliveredInputsAtOrBelowTheAppliedOffsetAreSkipped() async throws {
        var fixture = try await SQLiteFixture.make()
        let entity = PersistentEntity(counter("once"), journal: fixture.journal)
        for offset in Int64(0)..<10 {
            _ = try await entity.handle(.add(1), inputOffset: InputOffset(topic: "in", partition: 2, offset: offset))
        }
        // Same incarnation: a duplicate is skipped.
        let duplicate = try await entity.handle(.add(1), inputOffset: InputOffset(topic: "in", partition: 2, offset: 9))
        #expect(duplicate.skippedAsAlreadyApplied)
        #expect(duplicate.reply == nil)

        // After a restart, the consumer redelivers from an older committed offset: 5...9 are skipped.
        fixture = try await fixture.reopenSQLite()
        let restarted = PersistentEntity(counter("once"), journal: fixture.journal)
        var skipped = 0
        for offset in Int64(5)..<15 {
            let result = try await restarted.handle(
                .add(1), inputOffset: InputOffset(topic: "in", partition: 2, offset: offset))
            if result.skippedAsAlreadyApplied { skipped += 1 }
        }
        #expect(skipped == 5)
        #expect(await restarted.state.value == 15)
        // Another partition's offsets are separate.
        let other = try await restarted.handle(.add(1), inputOffset: InputOffset(topic: "in", partition: 3, offset: 0))
        #expect(!other.skippedAsAlreadyApplied)
        await fixture.destroy()
    }

    /// The latest input partition is kept apart from the others: switching between partitions must keep each one's
    /// highest applied offset, in memory and after recovery.
    @Test func appliedOffsetsOfInterleavedPartitionsStaySeparate() async throws {
        var fixture = try await SQLiteFixture.make()
        let entity = PersistentEntity(counter("interleaved"), journal: fixture.journal)
        let inputs: [(String, Int32, Int64)] = [
            ("in", 0, 5), ("in", 1, 3), ("other", 0, 7), ("in", 0, 6), ("in", 1, 4), ("in", 0, 2), ("other", 0, 1),
        ]
        var applied = 0
        for (topic, partition, offset) in inputs {
            let result = try await entity.handle(.add(1), inputOffset: InputOffset(topic: topic, partition: partition, offset: offset))
            if !result.skippedAsAlreadyApplied { applied += 1 }
        }
        // ("in", 0, 2) and ("other", 0, 1) are below their partitions' applied offsets (6 and 7).
        #expect(applied == 5)
        #expect(await entity.state.value == 5)
        /// Whether each of these inputs counts as applied.
        let probes: [(InputOffset, Bool)] = [
            (InputOffset(topic: "in", partition: 0, offset: 6), true),
            (InputOffset(topic: "in", partition: 0, offset: 7), false),
            (InputOffset(topic: "in", partition: 1, offset: 4), true),
            (InputOffset(topic: "in", partition: 1, offset: 5), false),
            (InputOffset(topic: "other", partition: 0, offset: 7), true),
            (InputOffset(topic: "other", partition: 0, offset: 8), false),
            (InputOffset(topic: "in", partition: 2, offset: 0), false),
        ]
        for (input, isApplied) in probes { #expect(await entity.isAlreadyApplied(input) == isApplied, "\(input)") }
        fixture = try await fixture.reopenSQLite()
        let restarted = PersistentEntity(counter("interleaved"), journal: fixture.journal)
        _ = try await restarted.recover()
        for (input, isApplied) in probes { #expect(await restarted.isAlreadyApplied(input) == isApplied, "\(input)") }
        await fixture.destroy()
    }

    @Test func aFailedWriteStopsTheEntityWithoutChangingItsState() async throws {
        let fixture = try await SQLiteFixture.make()
        let failing = FailingJournal(fixture.journal)
        let entity = PersistentEntity(counter("fail"), journal: failing)
        for _ in 1...3 { _ = try await entity.handle(.add(1)) }

        failing.failAppends(true)
        let error = await persistenceError { _ = try await entity.handle(.add(10)) }
        #expect(error?.code == .storageFailure)
        #expect(await entity.state.value == 3, "the event was not applied")
        #expect(await entity.isStopped)
        failing.failAppends(false)
        let stopped = await persistenceError { _ = try await entity.handle(.add(1)) }
        #expect(stopped?.code == .entityStopped)
        #expect(stopped?.persistenceID == counter("fail").persistenceID)

        // A new incarnation recovers what is durable.
        let restarted = PersistentEntity(counter("fail"), journal: failing)
        #expect(try await restarted.handle(.get).reply == 3)
        await fixture.destroy()
    }

    @Test func anUndecodableEventFailsRecoveryNamingEntityJournalAndSequenceNumber() async throws {
        let fixture = try await SQLiteFixture.make()
        let id = counter("bad").persistenceID
        let entity = PersistentEntity(counter("bad"), journal: fixture.journal)
        for _ in 1...4 { _ = try await entity.handle(.add(1)) }
        // Intact in the journal (its checksum matches) but not a CounterEvent.
        try await fixture.journal.append(
            JournalAppend(
                persistenceID: id,
                events: [
                    JournalEvent(sequenceNumber: 5, manifest: "CounterEvent", version: 1, payload: Array("{oops".utf8))
                ]))

        let error = await persistenceError {
            try await PersistentEntity(counter("bad"), journal: fixture.journal).recover()
        }
        #expect(error?.code == .undecodableEvent)
        #expect(error?.persistenceID == id)
        #expect(error?.journal == fixture.journal.name)
        #expect(error?.sequenceNumber == 5)
        // Commands do not run on a half-recovered entity.
        let failed = PersistentEntity(counter("bad"), journal: fixture.journal)
        let commandError = await persistenceError { _ = try await failed.handle(.add(1)) }
        #expect(commandError?.code == .undecodableEvent)
        #expect(try await fixture.journal.highestSequenceNumber(of: id) == 5, "nothing was written after the bad event")
        await fixture.destroy()
    }

    @Test func aCorruptEventFailsRecoveryInsteadOfResettingState() async throws {
        let fixture = try await SQLiteFixture.make()
        let id = counter("rot").persistenceID
        let entity = PersistentEntity(counter("rot"), journal: fixture.journal)
        for _ in 1...6 { _ = try await entity.handle(.add(1)) }
        try await fixture.corruptEvent(of: id, sequenceNumber: 4)

        let error = await persistenceError {
            try await PersistentEntity(counter("rot"), journal: fixture.journal).recover()
        }
        #expect(error?.code == .corruptEvent)
        #expect(error?.persistenceID == id)
        #expect(error?.journal == fixture.journal.name)
        #expect(error?.sequenceNumber == 4)
        await fixture.destroy()
    }

    @Test func olderEventShapesAreReadThroughTheCodecsUpcaster() async throws {
        let fixture = try await SQLiteFixture.make()
        struct AddedV1: Codable { let amount: Int }
        let id = PersistenceID(entityType: "counter", entityID: "versions")
        // Version 1 of the application wrote `{"amount": n}`.
        let v1 = PersistenceCodec<AddedV1>.json(manifest: "CounterEvent", version: 1)
        try await fixture.journal.append(
            JournalAppend(
                persistenceID: id,
                events: try (1...3).map {
                    JournalEvent(
                        sequenceNumber: Int64($0), manifest: v1.manifest, version: v1.version,
                        payload: try v1.encode(AddedV1(amount: $0 * 10)))
                }))

        // Version 2 stores `CounterEvent` and reads version 1 through an upcaster.
        let v2 = PersistenceCodec<CounterEvent>.json(manifest: "CounterEvent", version: 2) { version, payload in
            switch version {
            case 1: .added(try PersistenceJSON.decode(AddedV1.self, from: payload).amount)
            default: throw PersistenceCodecError.unsupportedVersion(version)
            }
        }
        var behavior = counter("versions")
        behavior.eventCodec = v2
        let entity = PersistentEntity(behavior, journal: fixture.journal)
        #expect(try await entity.handle(.add(1)).reply == 61)
        let stored = try await fixture.journal.readEvents(of: id, from: 4, limit: 1)
        #expect(stored.first?.version == 2)
        #expect(try await PersistentEntity(behavior, journal: fixture.journal).handle(.get).reply == 61)

        // Code that only knows version 1 refuses version 2 events instead of misreading them.
        var newer = counter("written-by-v2")
        newer.eventCodec = v2
        _ = try await PersistentEntity(newer, journal: fixture.journal).handle(.add(1))
        var old = counter("written-by-v2")
        old.eventCodec = .json(manifest: "CounterEvent", version: 1)
        let error = await persistenceError { try await PersistentEntity(old, journal: fixture.journal).recover() }
        #expect(error?.code == .undecodableEvent)
        #expect(error?.sequenceNumber == 1)
        #expect(error?.message.contains("newer") == true)
        await fixture.destroy()
    }

    @Test func concurrentCommandsToOneEntityAreHandledOneAtATime() async throws {
        let fixture = try await SQLiteFixture.make()
        let entity = PersistentEntity(counter("busy"), journal: fixture.journal)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<200 { group.addTask { _ = try await entity.handle(.add(1)) } }
            try await group.waitForAll()
        }
        #expect(await entity.state.value == 200)
        #expect(await entity.lastSequenceNumber == 200)
        #expect(try await fixture.journal.highestSequenceNumber(of: counter("busy").persistenceID) == 200)
        await fixture.destroy()
    }

    @Test func aPersistentActorRepliesAfterPersistingAndRecoversWhenSpawnedAgain() async throws {
        var fixture = try await SQLiteFixture.make()
        let system = ActorSystem(name: "persistence")
        let ref = try system.spawn(counter("actor").actorBehavior(journal: fixture.journal), name: "counter-actor")
        for amount in 1...10 {
            let reply = try await ref.ask(timeout: .seconds(30)) { EntityEnvelope(.add(amount), replyTo: $0) }
            #expect(reply == (1...amount).reduce(0, +))
        }
        _ = await ref.send(EntityEnvelope(.stop))
        await ref.waitForTermination()

        fixture = try await fixture.reopenSQLite()
        let again = try system.spawn(counter("actor").actorBehavior(journal: fixture.journal), name: "counter-actor-2")
        let value = try await again.ask(timeout: .seconds(30)) { EntityEnvelope(.get, replyTo: $0) }
        #expect(value == 55)
        await system.shutdown()
        await fixture.destroy()
    }

    @Test func aPersistentActorsFailedWriteIsNotAcknowledged() async throws {
        let fixture = try await SQLiteFixture.make()
        let failing = FailingJournal(fixture.journal)
        let system = ActorSystem(name: "persistence-failure")
        let ref = try system.spawn(counter("actor-fail").actorBehavior(journal: failing), name: "counter")
        let outcomes = OutcomeLog()
        _ = await ref.send(EntityEnvelope(.add(1))) { outcomes.append($0) }
        try await Eventually.require("the first command is processed") { outcomes.count == 1 }
        failing.failAppends(true)
        _ = await ref.send(EntityEnvelope(.add(1))) { outcomes.append($0) }
        try await Eventually.require("the second command fails") { outcomes.count == 2 }
        #expect(outcomes.descriptions == ["processed", "failed"])
        // Unsupervised, the actor stops on the failure.
        await ref.waitForTermination()
        await system.shutdown()
        await fixture.destroy()
    }

    /// Persistent entities in a shard region, fed from one input partition, then "crashed" and fed again from an
    /// older offset (as a consumer redelivers after a restart): every input is applied exactly once.
    @Test func shardedPersistentEntitiesApplyEachInputOnceAcrossARedelivery() async throws {
        var fixture = try await SQLiteFixture.make()
        let keys = 30
        func run(offsets: Range<Int64>, journal: any Journal) async throws {
            let system = ActorSystem(name: "persistent-shards")
            var settings = ShardRegionSettings()
            settings.idleTimeout = nil
            let region = try ShardRegion(
                system: system, typeKey: EntityTypeKey<EntityEnvelope<CounterCommand, Int>>("counter"),
                settings: settings
            ) { entityID in counter(entityID).actorBehavior(journal: journal) }
            let outcomes = OutcomeLog()
            for offset in offsets {
                let envelope = EntityEnvelope<CounterCommand, Int>(
                    .add(1), inputOffset: InputOffset(topic: "in", partition: 0, offset: offset))
                await region.deliver(envelope, to: "k\(offset % Int64(keys))", shard: 0) { outcomes.append($0) }
            }
            try await Eventually.require("every input is processed") { outcomes.count == offsets.count }
            #expect(Set(outcomes.descriptions) == ["processed"])
            await region.shutdown()
            await system.shutdown()
        }

        try await run(offsets: 0..<200, journal: fixture.journal)
        fixture = try await fixture.reopenSQLite()
        try await run(offsets: 100..<300, journal: fixture.journal)  // 100..<200 again: skipped by every entity

        for key in 0..<keys {
            let value = try await PersistentEntity(counter("k\(key)"), journal: fixture.journal).handle(.get).reply
            #expect(value == 10, "k\(key) got each of its 10 inputs once")
        }
        await fixture.destroy()
    }

    /// Prints how long recovering an entity with 10,000 events takes with and without a snapshot (no assertion on
    /// time: performance is never asserted in tests).
    @Test func recoveryTimeOfTenThousandEvents() async throws {
        let fixture = try await SQLiteFixture.make()
        let codec = PersistenceCodec<CounterEvent>.json()
        for name in ["plain", "snapshotted"] {
            let id = PersistenceID(entityType: "counter", entityID: name)
            for chunk in 0..<100 {
                let events = try (1...100).map { index in
                    JournalEvent(
                        sequenceNumber: Int64(chunk * 100 + index), manifest: codec.manifest, version: codec.version,
                        payload: try codec.encode(.added(1)))
                }
                try await fixture.journal.append(JournalAppend(persistenceID: id, events: events))
            }
        }
        let snapshotCodec = PersistenceCodec<CounterState>.json()
        try await fixture.journal.saveSnapshot(
            JournalSnapshot(
                sequenceNumber: 10_000, manifest: snapshotCodec.manifest, version: snapshotCodec.version,
                payload: try snapshotCodec.encode(CounterState(value: 10_000, changes: 10_000))),
            for: PersistenceID(entityType: "counter", entityID: "snapshotted"))

        let clock = ContinuousClock()
        for name in ["plain", "snapshotted"] {
            let entity = PersistentEntity(counter(name), journal: fixture.journal)
            let start = clock.now
            let recovery = try await entity.recover()
            let elapsed = clock.now - start
            #expect(await entity.state.value == 10_000)
            print("recovery of 10,000 events (\(name)): \(elapsed), \(recovery.eventsReplayed) events replayed")
        }
        await fixture.destroy()
    }
}

final class OutcomeLog: Sendable {
    private let outcomes = Mutex<[String]>([])
    func append(_ outcome: MessageOutcome) {
        let text =
            switch outcome {
            case .processed: "processed"
            case .failed: "failed"
            case .dropped: "dropped"
            }
        outcomes.withLock { $0.append(text) }
    }
    var count: Int { outcomes.withLock { $0.count } }
    var descriptions: [String] { outcomes.withLock { $0 } }
}
