import Testing

@testable import SluicePersistence

/// The Kafka changelog restore's rules for what history is acknowledged, on hand-made records (no broker): an
/// append counts only when all of it is there and it continues the entity's history.
@Suite struct ChangelogRestorerTests {
    let id = PersistenceID(entityType: "counter", entityID: "a|b/c")

    func record(_ sequenceNumber: Int64, append: UInt64, previous: UInt64, range: ClosedRange<Int64>) -> (
        ChangelogKey, [UInt8], [UInt8]
    ) {
        let key = ChangelogKey(id, .event(sequenceNumber))
        let value = ChangelogValue.event(
            .init(
                appendID: append, previousAppendID: previous, appendFirst: range.lowerBound,
                appendLast: range.upperBound, event: testEvents(id, sequenceNumber...sequenceNumber)[0],
                inputOffset: sequenceNumber == range.upperBound
                    ? InputOffset(topic: "in", partition: 0, offset: sequenceNumber) : nil))
        return (key, key.bytes, value.encoded(key: key.bytes))
    }

    func restore(_ records: [(ChangelogKey, [UInt8], [UInt8]?)]) -> (ChangelogEntity?, Int) {
        var restorer = ChangelogRestorer()
        for (key, raw, value) in records { restorer.add(key: key, rawKey: raw, value: value) }
        let outcome = restorer.finish()
        return (outcome.entities[id], outcome.ignoredRecords)
    }

    @Test func keysRoundTripWhateverTheIdsContain() {
        for id in [id, PersistenceID(entityType: "odd|ty%pe/", entityID: "|/%7C/1")] {
            for suffix: ChangelogKey.Suffix in [.event(42), .snapshot, .offsets] {
                let key = ChangelogKey(id, suffix)
                #expect(ChangelogKey(bytes: key.bytes) == key)
            }
        }
        #expect(ChangelogKey(bytes: Array("no-separator".utf8)) == nil)
    }

    @Test func anEventKeySpellsItsSequenceNumberInDecimal() {
        for sequenceNumber: Int64 in [1, 9, 10, 42, 1_000_000, Int64.max] {
            let key = ChangelogKey(id, .event(sequenceNumber))
            #expect(String(decoding: key.bytes, as: UTF8.self) == "\(id.entityType)|\(id.entityID)/\(sequenceNumber)")
            #expect(ChangelogKey(bytes: key.bytes) == key)
        }
    }

    @Test func anIncompleteLastAppendIsNotPartOfTheHistory() {
        // Append 1 (events 1-2) acknowledged; append 2 (3-5) failed after event 3 was stored.
        let (entity, ignored) = restore(
            [
                record(1, append: 1, previous: 0, range: 1...2), record(2, append: 1, previous: 0, range: 1...2),
                record(3, append: 2, previous: 1, range: 3...5),
            ].map { ($0.0, $0.1, $0.2) })
        #expect(entity?.highest == 2)
        #expect(ignored == 1)
        #expect(entity?.inputOffsets == [InputOffset(topic: "in", partition: 0, offset: 2)])
    }

    @Test func remainsOfAnOverwrittenAppendAreNotAttachedToTheNewHistory() {
        // After a failed append 2 (3-4, only 3 and 4 stored but reported failed), the entity recovered and
        // wrote append 3 (event 3 only) after append 1: event 4 of append 2 must not follow it.
        let (entity, ignored) = restore(
            [
                record(1, append: 1, previous: 0, range: 1...2), record(2, append: 1, previous: 0, range: 1...2),
                record(3, append: 2, previous: 1, range: 3...4), record(4, append: 2, previous: 1, range: 3...4),
                record(3, append: 3, previous: 1, range: 3...3),
            ].map { ($0.0, $0.1, $0.2) })
        #expect(entity?.highest == 3)
        #expect(ignored == 1)
        // An append that starts right but links to another predecessor is not accepted either.
        let (stale, _) = restore(
            [
                record(1, append: 1, previous: 0, range: 1...1), record(2, append: 9, previous: 8, range: 2...2),
            ].map { ($0.0, $0.1, $0.2) })
        #expect(stale?.highest == 1)
    }

    @Test func aDamagedEventStaysInPlaceAndTheRecordsAfterItCount() {
        let key = ChangelogKey(id, .event(2))
        let first = record(1, append: 1, previous: 0, range: 1...3)
        let third = record(3, append: 1, previous: 0, range: 1...3)
        let (entity, ignored) = restore([
            (first.0, first.1, first.2), (key, key.bytes, Array("garbage".utf8)), (third.0, third.1, third.2),
        ])
        #expect(entity?.highest == 3)
        #expect(ignored == 0)
        if case .corrupt? = entity?.events[2] {} else { Issue.record("event 2 should be marked damaged") }
    }

    @Test func aValueMovedToAnotherKeyFailsItsChecksum() {
        let moved = record(1, append: 1, previous: 0, range: 1...1).2
        #expect(throws: ChangelogDecodingError.self) {
            try ChangelogValue(decoding: moved, key: ChangelogKey(id, .event(2)).bytes)
        }
    }
}
