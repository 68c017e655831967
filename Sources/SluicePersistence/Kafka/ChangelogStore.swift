/// A topic partition of an input, as a dictionary key.
struct InputPartition: Hashable, Sendable {
    var topic: String
    var partition: Int32
}

/// An event as the in-memory store holds it: intact, or damaged in the changelog (reads reaching it fail).
enum StoredEvent: Sendable {
    case event(JournalEvent)
    case corrupt(String)
}

/// A snapshot as the in-memory store holds it.
enum StoredSnapshot: Sendable {
    case snapshot(JournalSnapshot)
    case corrupt(String)

    var sequenceNumber: Int64? {
        if case .snapshot(let snapshot) = self { return snapshot.sequenceNumber }
        return nil
    }
}

/// One entity's restored and acknowledged state in a ``KafkaChangelogJournal``.
struct ChangelogEntity: Sendable {
    /// Events by sequence number, from ``firstRetained`` to ``highest`` (a missing one is reported as damage).
    var events: [Int64: StoredEvent] = [:]
    /// The highest acknowledged sequence number (events, or the snapshot when events before it were deleted).
    var highest: Int64 = 0
    /// The highest sequence number including appends in flight: the conflict check compares with this.
    var reserved: Int64 = 0
    /// The lowest sequence number still stored (events before it were deleted after a snapshot).
    var firstRetained: Int64 = 1
    /// The id of the latest append (in flight or acknowledged); the next append links to it.
    var headAppendID: UInt64 = 0
    var snapshot: StoredSnapshot?
    var offsets: [InputPartition: Int64] = [:]
    /// Why the entity's offsets record did not decode, if it did not.
    var offsetsCorruption: String?

    mutating func merge(_ offset: InputOffset) { Self.merge(offset, into: &offsets) }

    /// Raises `offsets`' entry for the offset's input partition to the offset (it never goes down).
    static func merge(_ offset: InputOffset, into offsets: inout [InputPartition: Int64]) {
        let key = InputPartition(topic: offset.topic, partition: offset.partition)
        // One lookup (a hash of the topic name) in the common case of a known partition.
        if let index = offsets.index(forKey: key) {
            if offsets.values[index] < offset.offset { offsets.values[index] = offset.offset }
        } else {
            offsets[key] = offset.offset
        }
    }

    var inputOffsets: [InputOffset] { Self.inputOffsets(offsets) }

    /// Offsets by input partition as a list, in topic and partition order.
    static func inputOffsets(_ offsets: [InputPartition: Int64]) -> [InputOffset] {
        offsets.map { InputOffset(topic: $0.key.topic, partition: $0.key.partition, offset: $0.value) }
            .sorted { ($0.topic, $0.partition) < ($1.topic, $1.partition) }
    }
}

/// Rebuilds the entities of one changelog partition from its records.
///
/// The records are first reduced to what compaction would leave (the latest value per key, tombstones removing
/// keys), so the result is the same before and after the broker compacts. Then, per entity:
/// - the snapshot and the offsets record are decoded (a damaged one is remembered and fails its read);
/// - the events are walked from the lowest stored sequence number. An append is accepted only when every one of
///   its events is there with the append's id, it starts right after the previous accepted append and names it as
///   its predecessor. The walk stops at the first missing event or one that does not continue the history: what
///   follows was never acknowledged (a failed append, or the remains of an append a later one overwrote) and is
///   ignored. A damaged event (its value does not decode) is kept in place, and reads reaching it fail.
struct ChangelogRestorer {
    struct Outcome {
        var entities: [PersistenceID: ChangelogEntity] = [:]
        /// Records after the end of an entity's acknowledged history, ignored.
        var ignoredRecords = 0
    }

    private var latest: [ChangelogKey: (key: [UInt8], value: [UInt8])] = [:]

    /// Takes the partition's next record, in offset order.
    mutating func add(key: ChangelogKey, rawKey: [UInt8], value: [UInt8]?) {
        if let value { latest[key] = (rawKey, value) } else { latest[key] = nil }
    }

    func finish() -> Outcome {
        var byEntity: [PersistenceID: [(ChangelogKey.Suffix, [UInt8], [UInt8])]] = [:]
        for (key, record) in latest {
            byEntity[key.persistenceID, default: []].append((key.suffix, record.key, record.value))
        }
        var outcome = Outcome()
        for (id, records) in byEntity {
            var entity = ChangelogEntity()
            var events: [Int64: Result<ChangelogValue.EventRecord, ChangelogDecodingError>] = [:]
            for (suffix, key, value) in records {
                let decoded: ChangelogValue
                do throws(ChangelogDecodingError) {
                    decoded = try ChangelogValue(decoding: value, key: key)
                } catch {
                    switch suffix {
                    case .event(let sequenceNumber): events[sequenceNumber] = .failure(error)
                    case .snapshot: entity.snapshot = .corrupt(error.reason)
                    case .offsets: entity.offsetsCorruption = error.reason
                    }
                    continue
                }
                switch (suffix, decoded) {
                case (.event(let sequenceNumber), .event(let record)):
                    events[sequenceNumber] =
                        record.event.sequenceNumber == sequenceNumber
                        ? .success(record)
                        : .failure(
                            ChangelogDecodingError(
                                "the record at key sequence number \(sequenceNumber) holds event "
                                    + "\(record.event.sequenceNumber)"))
                case (.snapshot, .snapshot(let record)):
                    entity.snapshot = .snapshot(record.snapshot)
                    for offset in record.inputOffsets { entity.merge(offset) }
                case (.offsets, .offsets(let offsets)):
                    for offset in offsets { entity.merge(offset) }
                case (.event(let sequenceNumber), _):
                    events[sequenceNumber] = .failure(ChangelogDecodingError("the record is not an event"))
                case (.snapshot, _):
                    entity.snapshot = .corrupt("the snapshot record holds no snapshot")
                case (.offsets, _):
                    entity.offsetsCorruption = "the offsets record holds no offsets"
                }
            }
            outcome.ignoredRecords += Self.walk(events, into: &entity)
            outcome.entities[id] = entity
        }
        return outcome
    }

    /// Accepts the acknowledged history (see the type's documentation); returns how many event records it ignored.
    private static func walk(
        _ events: [Int64: Result<ChangelogValue.EventRecord, ChangelogDecodingError>],
        into entity: inout ChangelogEntity
    ) -> Int {
        let snapshotSequence = entity.snapshot?.sequenceNumber ?? 0
        let snapshotIsDamaged = entity.snapshot.map { $0.sequenceNumber == nil } ?? false
        guard let start = events.keys.min() else {
            entity.highest = snapshotSequence
            entity.reserved = snapshotSequence
            entity.firstRetained = snapshotSequence + 1
            return 0
        }
        // Events before `start` may be missing only because a snapshot covers them (deleted after it); otherwise
        // the history starts at 1 and reads of the missing events fail.
        let coveredStart = start == 1 || start <= snapshotSequence + 1 || snapshotIsDamaged
        entity.firstRetained = coveredStart ? start : 1

        var accepted: [Int64: StoredEvent] = [:]
        var pending: [(Int64, StoredEvent, InputOffset?)] = []
        var lastAccepted: Int64 = start - 1
        // The id of the last accepted append; nil before the first one, or when a damaged event hid it.
        var lastAppendID: UInt64?
        var linkKnown = false
        // The append being walked: its id (nil when unknown) and its last sequence number.
        var current: (id: UInt64?, last: Int64)?
        var sequenceNumber = start

        func commit(_ appendID: UInt64?) {
            for (number, event, offset) in pending {
                accepted[number] = event
                if let offset { entity.merge(offset) }
                lastAccepted = number
            }
            pending.removeAll()
            lastAppendID = appendID
            linkKnown = appendID != nil
            current = nil
        }

        walking: while let stored = events[sequenceNumber] {
            switch stored {
            case .failure(let error):
                // Its boundaries are unknown: it continues the append being walked, or starts one that the next
                // intact event tells.
                pending.append((sequenceNumber, .corrupt(error.reason), nil))
                if let append = current {
                    if append.id != nil, sequenceNumber == append.last { commit(append.id) }
                } else {
                    current = (nil, Int64.max)
                }
            case .success(let record):
                if let append = current {
                    guard append.id == nil || record.appendID == append.id,
                        record.appendFirst <= sequenceNumber, sequenceNumber <= record.appendLast
                    else { break walking }
                    if append.id == nil { current = (record.appendID, record.appendLast) }
                } else {
                    let startsHere = record.appendFirst == sequenceNumber
                    // The first stored event may be in the middle of an append whose start a snapshot covers.
                    let continuesCovered =
                        sequenceNumber == start && start > 1 && coveredStart && record.appendFirst < sequenceNumber
                    guard record.appendLast >= sequenceNumber, startsHere || continuesCovered else { break walking }
                    if startsHere, linkKnown, record.previousAppendID != lastAppendID { break walking }
                    current = (record.appendID, record.appendLast)
                }
                pending.append((sequenceNumber, .event(record.event), record.inputOffset))
                if sequenceNumber == record.appendLast { commit(record.appendID) }
            }
            sequenceNumber += 1
        }
        // Damaged events at the end whose append is unknown stay, so that reads reaching them fail.
        if let append = current, append.id == nil { commit(nil) }
        entity.events = accepted
        entity.highest = max(lastAccepted, snapshotSequence)
        entity.reserved = entity.highest
        entity.headAppendID = lastAppendID ?? 0
        return events.count - accepted.count
    }
}
