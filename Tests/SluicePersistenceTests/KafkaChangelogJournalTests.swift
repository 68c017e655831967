@_spi(Testing) import SluiceKafka
@_spi(Testing) import SluicePersistence
import SluiceTesting
import Synchronization
import Testing

/// What only the Kafka changelog journal does (the shared suite, `JournalConformanceTests`, covers the journal
/// protocol): placement by the input's partitioner, state moving with a partition, the partition-count check,
/// deleting events after a snapshot, restore time.
@Suite struct KafkaChangelogJournalTests {
    /// Entity ids of type `counter`, `perPartition` of them in each of `partitions` (by the journal's partitioner).
    func entities(
        of journal: KafkaChangelogJournal, perPartition: Int, partitions: Int32
    ) -> [Int32: [PersistenceID]] {
        var result: [Int32: [PersistenceID]] = [:]
        var index = 0
        while result.values.map(\.count).reduce(0, +) < perPartition * Int(partitions) {
            let id = PersistenceID(entityType: "counter", entityID: "key-\(index)")
            let partition = journal.partition(of: id)
            if result[partition, default: []].count < perPartition { result[partition, default: []].append(id) }
            index += 1
        }
        return result
    }

    @Test func stateMovesWithItsPartitionToAnotherInstance() async throws {
        let a = try await KafkaChangelogFixture.make(partitions: 2)
        let journalA = a.changelog
        let byPartition = entities(of: journalA, perPartition: 3, partitions: 2)

        // The changelog partition of an entity is the partition the input's producers give its key.
        let producer = try KafkaProducer(configuration: try await makeTestProducerConfiguration())
        for id in byPartition.values.joined() {
            let report = try await producer.send(
                KafkaProducerMessage(topic: a.configuration.inputTopic, key: id.entityID, value: "command"))
            #expect(report.partition == journalA.partition(of: id), "entity \(id)")
        }
        try await producer.close()

        // Instance A owns both partitions and writes every entity: events in several appends, input offsets,
        // a snapshot in the middle.
        for (partition, ids) in byPartition {
            for (n, id) in ids.enumerated() {
                let offset = Int64(n * 10)
                try await journalA.append(
                    JournalAppend(
                        persistenceID: id, events: testEvents(id, 1...3),
                        inputOffset: InputOffset(topic: "in", partition: partition, offset: offset)))
                try await journalA.append(
                    JournalAppend(
                        persistenceID: id, events: testEvents(id, 4...5),
                        inputOffset: InputOffset(topic: "in", partition: partition, offset: offset + 1),
                        snapshot: JournalSnapshot(
                            sequenceNumber: 5, manifest: "state", version: 1, payload: Array("\(id)@5".utf8))))
                try await journalA.append(
                    JournalAppend(
                        persistenceID: id, events: testEvents(id, 6...(6 + Int64(n))),
                        inputOffset: InputOffset(topic: "in", partition: partition, offset: offset + 2)))
            }
        }

        // Partition 1 moves to instance B: a fresh journal that restores only partition 1.
        let journalB = try await KafkaChangelogJournal(a.configuration)
        let statistics = try await journalB.restore(partitions: [1])
        #expect(journalB.restoredPartitions == [1])
        #expect(statistics.entities == 3)
        #expect(statistics.ignoredRecords == 0)
        for (n, id) in byPartition[1]!.enumerated() {
            let last = 6 + Int64(n)
            #expect(try await journalB.readEvents(of: id, from: 1, limit: 100) == testEvents(id, 1...last))
            #expect(try await journalB.highestSequenceNumber(of: id) == last)
            #expect(
                try await journalB.loadSnapshot(of: id)
                    == JournalSnapshot(sequenceNumber: 5, manifest: "state", version: 1, payload: Array("\(id)@5".utf8))
            )
            #expect(
                try await journalB.inputOffsets(of: id) == [
                    InputOffset(topic: "in", partition: 1, offset: Int64(n * 10) + 2)
                ])
            // B goes on where A stopped; a stale sequence number is a conflict.
            try await journalB.append(JournalAppend(persistenceID: id, events: testEvents(id, (last + 1)...(last + 1))))
            let conflict = await persistenceError {
                try await journalB.append(JournalAppend(persistenceID: id, events: testEvents(id, last...last)))
            }
            #expect(conflict?.code == .sequenceConflict)
        }
        // Entities of partition 0 are not B's: their operations fail instead of answering from an empty state.
        let notHere = byPartition[0]![0]
        let error = await persistenceError { _ = try await journalB.highestSequenceNumber(of: notHere) }
        #expect(error?.code == .partitionNotRestored)
        #expect(error?.persistenceID == notHere)
        let appendError = await persistenceError {
            try await journalB.append(JournalAppend(persistenceID: notHere, events: testEvents(notHere, 1...1)))
        }
        #expect(appendError?.code == .partitionNotRestored)

        // Released on revoke: the entities of partition 1 are no longer served.
        journalB.release(partitions: [1])
        let released = await persistenceError { _ = try await journalB.loadSnapshot(of: byPartition[1]![0]) }
        #expect(released?.code == .partitionNotRestored)

        await journalB.close()
        await a.destroy()
    }

    @Test func aChangelogTopicWithAnotherPartitionCountIsAClearError() async throws {
        let admin = try await makeTestAdmin()
        let input = uniqueTestName("journal-input")
        let changelog = uniqueTestName("journal-changelog")
        try await admin.createTopic(KafkaTopicSpecification(name: input, partitions: 2))
        try await admin.createTopic(KafkaTopicSpecification(name: changelog, partitions: 3))
        let configuration = KafkaChangelogJournalConfiguration(
            bootstrapServers: try await TestBroker.bootstrapServers(), topic: changelog, inputTopic: input)
        let error = await persistenceError { _ = try await KafkaChangelogJournal(configuration) }
        #expect(error?.code == .partitionMismatch)
        #expect(error?.journal == "kafka:\(changelog)")
        let message = error?.message ?? ""
        #expect(message.contains("'\(changelog)' has 3 partitions"), "\(message)")
        #expect(message.contains("'\(input)' has 2"), "\(message)")

        // A missing changelog topic is created with the input's partition count.
        let created = uniqueTestName("journal-changelog")
        let journal = try await KafkaChangelogJournal(
            KafkaChangelogJournalConfiguration(
                bootstrapServers: try await TestBroker.bootstrapServers(), topic: created, inputTopic: input))
        #expect(journal.partitionCount == 2)
        #expect(try await admin.describeTopic(created).partitions.count == 2)
        await journal.close()
    }

    @Test func aMissingInputTopicIsAClearErrorAndNothingIsCreated() async throws {
        let servers = try await TestBroker.bootstrapServers()
        let input = uniqueTestName("missing-input")
        let changelog = input + "-changelog"
        let error = await persistenceError {
            _ = try await KafkaChangelogJournal(
                KafkaChangelogJournalConfiguration(bootstrapServers: servers, topic: changelog, inputTopic: input))
        }
        #expect(error?.code == .storageFailure)
        #expect(error?.message.contains("create the input topic first") == true)
        let admin = try KafkaAdminClient(configuration: KafkaClientConfiguration(bootstrapServers: servers))
        let cluster = try await admin.describeCluster()
        #expect(cluster.topic(input) == nil)
        #expect(cluster.topic(changelog) == nil)
    }

    @Test func aChangelogWrittenWithAnotherPartitionerIsNotMisread() async throws {
        let fixture = try await KafkaChangelogFixture.make(partitions: 4)
        let byPartition = entities(of: fixture.changelog, perPartition: 2, partitions: 4)
        for id in byPartition.values.joined() {
            try await fixture.changelog.append(JournalAppend(persistenceID: id, events: testEvents(id, 1...1)))
        }
        var murmur = fixture.configuration
        murmur.partitioner = .murmur2Random
        let other = try await KafkaChangelogJournal(murmur)
        // Some of these entities are elsewhere with murmur2: the restore says so rather than serving a wrong view.
        let error = await persistenceError { try await other.restore(partitions: [0, 1, 2, 3]) }
        #expect(error?.code == .partitionMismatch)
        #expect(error?.message.contains("murmur2_random") == true)
        await other.close()
        await fixture.destroy()
    }

    @Test func aSnapshotCanDeleteTheEventsItCovers() async throws {
        let fixture = try await KafkaChangelogFixture.make(partitions: 1) { $0.deleteEventsOnSnapshot = true }
        let id = PersistenceID(entityType: "counter", entityID: "deleting")
        let journal = fixture.changelog
        let atFive = JournalSnapshot(sequenceNumber: 5, manifest: "state", version: 1, payload: Array("five".utf8))
        try await journal.append(
            JournalAppend(
                persistenceID: id, events: testEvents(id, 1...5),
                inputOffset: InputOffset(topic: "in", partition: 0, offset: 4), snapshot: atFive))
        try await journal.append(JournalAppend(persistenceID: id, events: testEvents(id, 6...7)))
        #expect(try await journal.readEvents(of: id, from: 1, limit: 100) == testEvents(id, 6...7))

        let reopened = try await fixture.reopen()
        #expect(try await reopened.journal.loadSnapshot(of: id) == atFive)
        #expect(try await reopened.journal.readEvents(of: id, from: 1, limit: 100) == testEvents(id, 6...7))
        #expect(try await reopened.journal.highestSequenceNumber(of: id) == 7)
        // The input offset written with the deleted events survives in the snapshot record.
        #expect(try await reopened.journal.inputOffsets(of: id) == [InputOffset(topic: "in", partition: 0, offset: 4)])
        // A snapshot that covers every event: nothing left but the snapshot, and the history goes on after it.
        let atSeven = JournalSnapshot(sequenceNumber: 7, manifest: "state", version: 1, payload: Array("seven".utf8))
        try await reopened.journal.saveSnapshot(atSeven, for: id)
        let again = try await reopened.reopen()
        #expect(try await again.journal.readEvents(of: id, from: 1, limit: 100).isEmpty)
        #expect(try await again.journal.highestSequenceNumber(of: id) == 7)
        try await again.journal.append(JournalAppend(persistenceID: id, events: testEvents(id, 8...8)))
        let last = try await again.reopen()
        #expect(try await last.journal.readEvents(of: id, from: 1, limit: 100) == testEvents(id, 8...8))
        await last.destroy()
    }

    /// `submit` hands records to librdkafka without suspending; when librdkafka's queue is full it must wait for
    /// room in a task, not drop or reorder records. A queue of 4 messages makes almost every submit meet a full one.
    @Test func submitsThatMeetAFullProducerQueueWaitForRoom() async throws {
        let fixture = try await KafkaChangelogFixture.make(partitions: 1) {
            $0.client.properties["queue.buffering.max.messages"] = "4"
            $0.linger = .milliseconds(1)
        }
        let journal = fixture.changelog
        let ids = (0..<50).map { PersistenceID(entityType: "counter", entityID: "full-\($0)") }
        let failures = Mutex<[String]>([])
        let completed = Mutex(0)
        for round in 1...4 {
            for id in ids {
                // Several events in one append: the fallback must keep the records after the refused one in order.
                let events = testEvents(id, Int64(2 * round - 1)...Int64(2 * round))
                journal.submit(
                    JournalAppend(
                        persistenceID: id, events: events,
                        inputOffset: InputOffset(topic: "in", partition: 0, offset: Int64(round)))
                ) { error in
                    if let error { failures.withLock { $0.append("\(error)") } }
                    completed.withLock { $0 += 1 }
                }
            }
            try await Eventually.require("round \(round) is durable") { completed.withLock { $0 } == round * ids.count }
        }
        #expect(failures.withLock { $0 }.isEmpty)
        let reopened = try await fixture.reopen()
        for id in ids {
            #expect(try await reopened.journal.readEvents(of: id, from: 1, limit: 100) == testEvents(id, 1...8))
            #expect(try await reopened.journal.inputOffsets(of: id) == [InputOffset(topic: "in", partition: 0, offset: 4)])
        }
        await reopened.destroy()
    }

    /// A write whose records are not acknowledged (the broker is gone past the write timeout; librdkafka's mock
    /// cluster, as a real broker cannot be made to vanish on cue) fails its append with a storage failure and
    /// marks its partition failed: the entity's next append is refused until the partition is restored, and the
    /// restore finds what was stored.
    @Test func aWriteThatFailsRefusesThePartitionUntilItIsRestored() async throws {
        let cluster = try KafkaMockCluster(brokers: 1)
        try cluster.createTopic("orders", partitions: 1)
        try cluster.createTopic("orders-changelog", partitions: 1)
        var configuration = KafkaChangelogJournalConfiguration(
            bootstrapServers: cluster.bootstrapServers, topic: "orders-changelog", inputTopic: "orders")
        configuration.writeTimeout = .seconds(2)
        configuration.linger = .milliseconds(1)
        let journal = try await KafkaChangelogJournal(configuration)
        _ = try await journal.restore(partitions: [0])
        let id = PersistenceID(entityType: "counter", entityID: "a")
        func submitted(_ range: ClosedRange<Int64>) async -> PersistenceError? {
            await withCheckedContinuation { continuation in
                journal.submit(
                    JournalAppend(
                        persistenceID: id, events: testEvents(id, range),
                        inputOffset: InputOffset(topic: "orders", partition: 0, offset: range.upperBound))
                ) { error in continuation.resume(returning: error) }
            }
        }

        #expect(await submitted(1...2) == nil)
        try cluster.setBroker(1, isUp: false)
        let failure = await submitted(3...3)
        #expect(failure?.code == .storageFailure)
        #expect(failure?.sequenceNumber == 3)
        try cluster.setBroker(1, isUp: true)

        // Whatever became of event 3, the partition is refused until restored...
        #expect(await submitted(3...3)?.code == .partitionNotRestored)
        let readError = await persistenceError { _ = try await journal.readEvents(of: id, from: 1, limit: 10) }
        #expect(readError?.code == .partitionNotRestored)
        // ...and the restore reads what the broker holds: the acknowledged events at least, and the entity goes on
        // after them. (The producer reconnects to the broker in its own time, and a restore attempt within the write
        // timeout may fail: it is tried again, as the error tells users to.)
        try await Eventually.require(timeout: .seconds(60), "a restore succeeds once the broker is back") {
            (try? await journal.restore(partitions: [0])) != nil
        }
        let stored = try await journal.readEvents(of: id, from: 1, limit: 10)
        #expect(Array(stored.prefix(2)) == testEvents(id, 1...2))
        let next = Int64(stored.count) + 1
        #expect(await submitted(next...next) == nil)
        #expect(try await journal.readEvents(of: id, from: 1, limit: 10) == testEvents(id, 1...next))
        await journal.close()
    }

    @Test func restoreTime() async throws {
        let fixture = try await KafkaChangelogFixture.make(partitions: 4)
        let journal = fixture.changelog
        let entityCount = 200
        let appendsPerEntity = 10
        let eventsPerAppend = 10
        let started = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for entity in 0..<entityCount {
                group.addTask {
                    let id = PersistenceID(entityType: "counter", entityID: "restore-\(entity)")
                    for append in 0..<appendsPerEntity {
                        let first = Int64(append * eventsPerAppend + 1)
                        try await journal.append(
                            JournalAppend(
                                persistenceID: id, events: testEvents(id, first...(first + Int64(eventsPerAppend) - 1)),
                                inputOffset: InputOffset(topic: "in", partition: 0, offset: first)))
                    }
                }
            }
            try await group.waitForAll()
        }
        let events = entityCount * appendsPerEntity * eventsPerAppend
        let written = ContinuousClock.now - started
        print(
            "kafka changelog: appended \(events) events (\(entityCount) entities, \(eventsPerAppend) per append) in \(written)"
        )

        let restoring = try await KafkaChangelogJournal(fixture.configuration)
        let statistics = try await restoring.restore(partitions: Array(0..<restoring.partitionCount))
        print(
            "kafka changelog: restored \(statistics.events) events (\(statistics.records) records, "
                + "\(statistics.entities) entities, \(statistics.partitions.count) partitions) in \(statistics.duration)"
        )
        #expect(statistics.events == events)
        #expect(statistics.entities == entityCount)
        let sample = PersistenceID(entityType: "counter", entityID: "restore-7")
        #expect(try await restoring.highestSequenceNumber(of: sample) == Int64(appendsPerEntity * eventsPerAppend))
        await restoring.close()
        await fixture.destroy()
    }
}
