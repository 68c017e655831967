import SluicePersistence
import Testing

/// The shared journal test suite: written once against the ``Journal`` protocol, run against every implementation
/// in ``JournalKind``.
@Suite struct JournalConformanceTests {
    let a = PersistenceID(entityType: "account", entityID: "a")
    let b = PersistenceID(entityType: "account", entityID: "b")
    /// Same entity id, another type: a separate history.
    let otherType = PersistenceID(entityType: "order", entityID: "a")

    @Test(arguments: JournalKind.allCases)
    func appendedEventsReplayInOrderPerEntity(_ kind: JournalKind) async throws {
        try await withJournal(kind) { fixture in
            let journal = fixture.journal
            try await journal.append(JournalAppend(persistenceID: a, events: testEvents(a, 1...3)))
            try await journal.append(JournalAppend(persistenceID: b, events: testEvents(b, 1...1)))
            try await journal.append(JournalAppend(persistenceID: a, events: testEvents(a, 4...4)))
            try await journal.append(JournalAppend(persistenceID: otherType, events: testEvents(otherType, 1...2)))
            try await journal.append(JournalAppend(persistenceID: a, events: testEvents(a, 5...7)))

            #expect(try await journal.readEvents(of: a, from: 1, limit: 100) == testEvents(a, 1...7))
            #expect(try await journal.readEvents(of: a, from: 3, limit: 2) == testEvents(a, 3...4))
            #expect(try await journal.readEvents(of: a, from: 8, limit: 100).isEmpty)
            #expect(try await journal.readEvents(of: b, from: 1, limit: 100) == testEvents(b, 1...1))
            #expect(try await journal.readEvents(of: otherType, from: 1, limit: 100) == testEvents(otherType, 1...2))
            #expect(try await journal.highestSequenceNumber(of: a) == 7)
            let unknown = PersistenceID(entityType: "account", entityID: "nobody")
            #expect(try await journal.highestSequenceNumber(of: unknown) == 0)
            #expect(try await journal.readEvents(of: unknown, from: 1, limit: 100).isEmpty)

            // A restart reads the same history.
            let reopened = try await fixture.reopen()
            #expect(try await reopened.journal.readEvents(of: a, from: 1, limit: 100) == testEvents(a, 1...7))
            #expect(try await reopened.journal.highestSequenceNumber(of: b) == 1)
            await reopened.destroy()
        }
    }

    @Test(arguments: JournalKind.allCases)
    func eventsKeepManifestVersionAndBinaryPayloads(_ kind: JournalKind) async throws {
        try await withJournal(kind) { fixture in
            let events = [
                JournalEvent(sequenceNumber: 1, manifest: "Empty", version: 1, payload: []),
                JournalEvent(sequenceNumber: 2, manifest: "Binary", version: 7, payload: [0, 255, 0, 1, 128]),
                JournalEvent(
                    sequenceNumber: 3, manifest: "Ünïcode ✓", version: 2, payload: Array(repeating: 42, count: 100_000)),
            ]
            try await fixture.journal.append(JournalAppend(persistenceID: a, events: events))
            #expect(try await fixture.journal.readEvents(of: a, from: 1, limit: 10) == events)
        }
    }

    @Test(arguments: JournalKind.allCases)
    func sequenceNumberConflictsAreRejectedAndStoreNothing(_ kind: JournalKind) async throws {
        try await withJournal(kind) { fixture in
            let journal = fixture.journal
            try await journal.append(JournalAppend(persistenceID: a, events: testEvents(a, 1...2)))

            // Overlapping the stored history, or leaving a gap after it: both rejected, naming entity and journal.
            for range: ClosedRange<Int64> in [2...3, 1...1, 4...5] {
                let error = await persistenceError {
                    try await journal.append(
                        JournalAppend(
                            persistenceID: a, events: testEvents(a, range),
                            inputOffset: InputOffset(topic: "in", partition: 0, offset: 99)))
                }
                #expect(error?.code == .sequenceConflict)
                #expect(error?.persistenceID == a)
                #expect(error?.journal == journal.name)
                #expect(error?.sequenceNumber == range.lowerBound)
            }
            #expect(try await journal.readEvents(of: a, from: 1, limit: 100) == testEvents(a, 1...2))
            #expect(try await journal.inputOffsets(of: a).isEmpty)

            // The right next sequence number still works.
            try await journal.append(JournalAppend(persistenceID: a, events: testEvents(a, 3...3)))
            #expect(try await journal.highestSequenceNumber(of: a) == 3)
        }
    }

    @Test(arguments: JournalKind.allCases)
    func concurrentWritersOfOneEntityCannotBothWin(_ kind: JournalKind) async throws {
        try await withJournal(kind) { fixture in
            let journal = fixture.journal
            let id = a
            // Two "instances" of the same entity race for sequence numbers 1...2; exactly one may succeed.
            let outcomes = try await withThrowingTaskGroup(of: Bool.self) { group in
                for writer in 0..<2 {
                    group.addTask {
                        let events = (1...2 as ClosedRange<Int64>).map {
                            JournalEvent(
                                sequenceNumber: $0, manifest: "w\(writer)", version: 1, payload: [UInt8(writer)])
                        }
                        do {
                            try await journal.append(JournalAppend(persistenceID: id, events: events))
                            return true
                        } catch let error as PersistenceError where error.code == .sequenceConflict {
                            return false
                        }
                    }
                }
                return try await group.reduce(into: [Bool]()) { $0.append($1) }
            }
            #expect(outcomes.filter { $0 }.count == 1)
            let stored = try await journal.readEvents(of: id, from: 1, limit: 10)
            #expect(stored.count == 2)
            #expect(Set(stored.map(\.manifest)).count == 1, "both events come from the same writer")
        }
    }

    @Test(arguments: JournalKind.allCases)
    func snapshotsAndTheEventsAfterThem(_ kind: JournalKind) async throws {
        try await withJournal(kind) { fixture in
            let journal = fixture.journal
            #expect(try await journal.loadSnapshot(of: a) == nil)
            let atFive = JournalSnapshot(sequenceNumber: 5, manifest: "state", version: 1, payload: Array("five".utf8))
            // The snapshot is written in the same append as the events that reach it.
            try await journal.append(JournalAppend(persistenceID: a, events: testEvents(a, 1...5), snapshot: atFive))
            try await journal.append(JournalAppend(persistenceID: a, events: testEvents(a, 6...7)))
            #expect(try await journal.loadSnapshot(of: a) == atFive)
            #expect(
                try await journal.readEvents(of: a, from: atFive.sequenceNumber + 1, limit: 100) == testEvents(a, 6...7)
            )
            #expect(try await journal.loadSnapshot(of: b) == nil)

            // A later snapshot replaces it; saved on its own.
            let atSeven = JournalSnapshot(
                sequenceNumber: 7, manifest: "state", version: 2, payload: Array("seven".utf8))
            try await journal.saveSnapshot(atSeven, for: a)
            #expect(try await journal.loadSnapshot(of: a) == atSeven)

            let reopened = try await fixture.reopen()
            #expect(try await reopened.journal.loadSnapshot(of: a) == atSeven)
            #expect(try await reopened.journal.readEvents(of: a, from: 1, limit: 100) == testEvents(a, 1...7))
            await reopened.destroy()
        }
    }

    @Test(arguments: JournalKind.allCases)
    func lastAppliedInputOffsetsRoundTrip(_ kind: JournalKind) async throws {
        try await withJournal(kind) { fixture in
            let journal = fixture.journal
            #expect(try await journal.inputOffsets(of: a).isEmpty)
            try await journal.append(
                JournalAppend(
                    persistenceID: a, events: testEvents(a, 1...1),
                    inputOffset: InputOffset(topic: "in", partition: 0, offset: 10)))
            try await journal.append(
                JournalAppend(
                    persistenceID: a, events: testEvents(a, 2...3),
                    inputOffset: InputOffset(topic: "in", partition: 0, offset: 12)))
            try await journal.append(
                JournalAppend(
                    persistenceID: a, events: testEvents(a, 4...4),
                    inputOffset: InputOffset(topic: "in", partition: 3, offset: 5)))
            // An offset-only write (no events), and a lower offset that must not move the recorded one back.
            try await journal.append(
                JournalAppend(
                    persistenceID: a, events: [], inputOffset: InputOffset(topic: "other", partition: 0, offset: 1)))
            try await journal.append(
                JournalAppend(
                    persistenceID: a, events: testEvents(a, 5...5),
                    inputOffset: InputOffset(topic: "in", partition: 0, offset: 11)))
            try await journal.append(
                JournalAppend(
                    persistenceID: b, events: testEvents(b, 1...1),
                    inputOffset: InputOffset(topic: "in", partition: 1, offset: 7)))

            let expected = [
                InputOffset(topic: "in", partition: 0, offset: 12), InputOffset(topic: "in", partition: 3, offset: 5),
                InputOffset(topic: "other", partition: 0, offset: 1),
            ]
            #expect(Set(try await journal.inputOffsets(of: a)) == Set(expected))
            #expect(try await journal.inputOffsets(of: b) == [InputOffset(topic: "in", partition: 1, offset: 7)])

            let reopened = try await fixture.reopen()
            #expect(Set(try await reopened.journal.inputOffsets(of: a)) == Set(expected))
            await reopened.destroy()
        }
    }

    /// Entity ids come from message keys, which may hold any bytes: an id with a NUL inside is its own entity, not
    /// the one named by the bytes before the NUL.
    @Test(arguments: JournalKind.allCases)
    func anIdWithANulInsideIsItsOwnEntity(_ kind: JournalKind) async throws {
        try await withJournal(kind) { fixture in
            let journal = fixture.journal
            let plain = PersistenceID(entityType: "account", entityID: "a")
            let withNul = PersistenceID(entityType: "account", entityID: "a\u{0}b")
            let offset = InputOffset(topic: "in", partition: 0, offset: 5)
            try await journal.append(JournalAppend(persistenceID: plain, events: testEvents(plain, 1...2)))
            try await journal.append(
                JournalAppend(persistenceID: withNul, events: testEvents(withNul, 1...1), inputOffset: offset))
            try await journal.saveSnapshot(
                JournalSnapshot(sequenceNumber: 1, manifest: "state", version: 1, payload: [7]), for: withNul)

            let reopened = try await fixture.reopen()
            #expect(try await reopened.journal.readEvents(of: plain, from: 1, limit: 10) == testEvents(plain, 1...2))
            #expect(try await reopened.journal.readEvents(of: withNul, from: 1, limit: 10) == testEvents(withNul, 1...1))
            #expect(try await reopened.journal.highestSequenceNumber(of: withNul) == 1)
            #expect(try await reopened.journal.inputOffsets(of: withNul) == [offset])
            #expect(try await reopened.journal.inputOffsets(of: plain).isEmpty)
            #expect(try await reopened.journal.loadSnapshot(of: withNul)?.payload == [7])
            #expect(try await reopened.journal.loadSnapshot(of: plain) == nil)
            await reopened.destroy()
        }
    }

    @Test(arguments: JournalKind.allCases)
    func inputOffsetsStayExactAcrossSnapshots(_ kind: JournalKind) async throws {
        try await withJournal(kind) { fixture in
            let journal = fixture.journal
            func offset(_ partition: Int32, _ offset: Int64) -> InputOffset {
                InputOffset(topic: "in", partition: partition, offset: offset)
            }
            func snapshot(_ sequenceNumber: Int64) -> JournalSnapshot {
                JournalSnapshot(sequenceNumber: sequenceNumber, manifest: "state", version: 1, payload: [1])
            }
            try await journal.append(
                JournalAppend(persistenceID: a, events: testEvents(a, 1...2), inputOffset: offset(0, 20)))
            try await journal.append(
                JournalAppend(persistenceID: a, events: testEvents(a, 3...3), inputOffset: offset(1, 7)))
            // A snapshot in the append that reaches it, then offsets after it, lower and higher.
            try await journal.append(
                JournalAppend(
                    persistenceID: a, events: testEvents(a, 4...5), inputOffset: offset(0, 21), snapshot: snapshot(5)))
            try await journal.append(
                JournalAppend(persistenceID: a, events: testEvents(a, 6...6), inputOffset: offset(2, 3)))
            try await journal.append(
                JournalAppend(persistenceID: a, events: testEvents(a, 7...7), inputOffset: offset(0, 19)))
            #expect(try await journal.inputOffsets(of: a) == [offset(0, 21), offset(1, 7), offset(2, 3)])

            // A snapshot saved on its own, then an offset-only write and more events.
            try await journal.saveSnapshot(snapshot(7), for: a)
            try await journal.append(JournalAppend(persistenceID: a, events: [], inputOffset: offset(1, 9)))
            try await journal.append(
                JournalAppend(persistenceID: a, events: testEvents(a, 8...8), inputOffset: offset(2, 4)))
            let expected = [offset(0, 21), offset(1, 9), offset(2, 4)]
            #expect(try await journal.inputOffsets(of: a) == expected)
            // Another entity's offsets stay its own.
            try await journal.append(
                JournalAppend(persistenceID: b, events: testEvents(b, 1...1), inputOffset: offset(0, 99)))
            #expect(try await journal.inputOffsets(of: a) == expected)

            let reopened = try await fixture.reopen()
            #expect(try await reopened.journal.inputOffsets(of: a) == expected)
            #expect(try await reopened.journal.inputOffsets(of: b) == [offset(0, 99)])
            #expect(try await reopened.journal.readEvents(of: a, from: 1, limit: 100) == testEvents(a, 1...8))
            await reopened.destroy()
        }
    }

    @Test(arguments: JournalKind.allCases)
    func aCorruptEventFailsTheReadNamingEntityJournalAndSequenceNumber(_ kind: JournalKind) async throws {
        try await withJournal(kind) { fixture in
            try await fixture.journal.append(JournalAppend(persistenceID: a, events: testEvents(a, 1...5)))
            try await fixture.journal.append(JournalAppend(persistenceID: b, events: testEvents(b, 1...5)))
            try await fixture.corruptEvent(of: a, sequenceNumber: 3)

            let reopened = try await fixture.reopen()
            let journal = reopened.journal
            let error = await persistenceError { _ = try await journal.readEvents(of: a, from: 1, limit: 100) }
            #expect(error?.code == .corruptEvent)
            #expect(error?.persistenceID == a)
            #expect(error?.journal == journal.name)
            #expect(error?.sequenceNumber == 3)
            #expect(error.map { "\($0)" }?.contains("account|a") == true)
            // The events before it and other entities are unaffected.
            #expect(try await journal.readEvents(of: a, from: 1, limit: 2) == testEvents(a, 1...2))
            #expect(try await journal.readEvents(of: b, from: 1, limit: 100) == testEvents(b, 1...5))
            await reopened.destroy()
        }
    }

    @Test(arguments: JournalKind.allCases)
    func aClosedJournalRefusesWork(_ kind: JournalKind) async throws {
        try await withJournal(kind) { fixture in
            await fixture.journal.close()
            let journal = fixture.journal
            let error = await persistenceError {
                try await journal.append(JournalAppend(persistenceID: a, events: testEvents(a, 1...1)))
            }
            #expect(error?.code == .journalClosed)
            #expect(error?.journal == journal.name)
        }
    }
}
