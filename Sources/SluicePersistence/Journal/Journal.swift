/// Who an event-sourced entity is, in a journal: its entity type (for example `counter`) and its id within the type
/// (usually the Kafka message key). Both are stored separately, so neither needs escaping.
public struct PersistenceID: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The kind of entity, for example `counter` or `order`.
    public var entityType: String
    /// The entity's id within its type.
    public var entityID: String

    public init(entityType: String, entityID: String) {
        self.entityType = entityType
        self.entityID = entityID
    }

    public var description: String { "\(entityType)|\(entityID)" }
}

/// A position in an input stream (a Kafka topic partition) whose message an entity has applied.
///
/// Recorded with the events that message produced, in the same journal write, so that after a crash a redelivered
/// message at or below it is recognised and skipped: state is effectively-once although delivery is at-least-once.
public struct InputOffset: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The input topic.
    public var topic: String
    /// The input partition.
    public var partition: Int32
    /// The message's offset.
    public var offset: Int64

    public init(topic: String, partition: Int32, offset: Int64) {
        self.topic = topic
        self.partition = partition
        self.offset = offset
    }

    public var description: String { "\(topic)[\(partition)]@\(offset)" }
}

/// One stored event: its place in the entity's history, what it is, and its encoded form.
///
/// `manifest` names the event type and `version` the shape its payload was written with, so an event handler (its
/// codec, see ``PersistenceCodec``) can still read events written by older code.
public struct JournalEvent: Sendable, Hashable {
    /// The event's sequence number within its entity: 1 for the first event, then contiguous.
    public var sequenceNumber: Int64
    /// The event's type tag (for example `CounterEvent`).
    public var manifest: String
    /// The version of the payload's shape.
    public var version: Int
    /// The encoded event.
    public var payload: [UInt8]

    public init(sequenceNumber: Int64, manifest: String, version: Int, payload: [UInt8]) {
        self.sequenceNumber = sequenceNumber
        self.manifest = manifest
        self.version = version
        self.payload = payload
    }
}

/// A stored snapshot: the entity's state after event `sequenceNumber`, encoded.
public struct JournalSnapshot: Sendable, Hashable {
    /// The sequence number of the last event folded into this state.
    public var sequenceNumber: Int64
    /// The state's type tag.
    public var manifest: String
    /// The version of the payload's shape.
    public var version: Int
    /// The encoded state.
    public var payload: [UInt8]

    public init(sequenceNumber: Int64, manifest: String, version: Int, payload: [UInt8]) {
        self.sequenceNumber = sequenceNumber
        self.manifest = manifest
        self.version = version
        self.payload = payload
    }
}

/// One atomic write to a journal: an entity's next events, optionally the input offset they came from and a
/// snapshot of the state after them. Either all of it is stored or none of it.
public struct JournalAppend: Sendable {
    /// The entity.
    public var persistenceID: PersistenceID
    /// The events, with contiguous sequence numbers starting right after the highest one stored: a write whose first
    /// sequence number is not `highest + 1` is rejected with ``PersistenceError/Code/sequenceConflict`` (another
    /// writer, or a lost update). May be empty when only `inputOffset` or `snapshot` is written.
    public var events: [JournalEvent]
    /// The input message these events came from; recorded (as the highest per topic partition) with the events.
    public var inputOffset: InputOffset?
    /// A snapshot to store with the events (replacing the previous one).
    public var snapshot: JournalSnapshot?

    public init(
        persistenceID: PersistenceID, events: [JournalEvent], inputOffset: InputOffset? = nil,
        snapshot: JournalSnapshot? = nil
    ) {
        self.persistenceID = persistenceID
        self.events = events
        self.inputOffset = inputOffset
        self.snapshot = snapshot
    }
}

extension Journal {
    // Disfavoured: a call on a concrete journal type must reach that journal's own `submit`. Without this, Swift 6.3
    // bound `journal.submit(x) { error in outcome.withLock { $0 = error.map { .failure($0) } ?? .success(()) } }`
    // to this default (an append in a task) for some closure shapes. It still serves journals that have none.
    @_disfavoredOverload
    public func submit(_ append: consuming JournalAppend, completion: @escaping @Sendable (PersistenceError?) -> Void) {
        submitInTask(append, completion: completion)
    }

    /// Runs ``append(_:)`` in a task and reports its outcome to `completion`: the default ``submit(_:completion:)``,
    /// and the way of a journal's appends that its own non-suspending path does not take.
    func submitInTask(_ append: consuming JournalAppend, completion: @escaping @Sendable (PersistenceError?) -> Void) {
        Task {
            do throws(PersistenceError) {
                try await self.append(append)
                completion(nil)
            } catch {
                completion(error)
            }
        }
    }
}

extension JournalAppend {
    /// Checks what every journal requires of an append before storing it: sequence numbers start at 1 and are
    /// contiguous within the append.
    func validateSequenceNumbers(journal: String) throws(PersistenceError) {
        guard var expected = events.first?.sequenceNumber else { return }
        guard expected >= 1 else {
            throw PersistenceError(
                .invalidArgument, journal: journal, persistenceID: persistenceID, sequenceNumber: expected,
                message: "sequence numbers start at 1")
        }
        for event in events {
            guard event.sequenceNumber == expected else {
                throw PersistenceError(
                    .invalidArgument, journal: journal, persistenceID: persistenceID,
                    sequenceNumber: event.sequenceNumber,
                    message: "the events of one append must have contiguous sequence numbers (expected \(expected))")
            }
            expected += 1
        }
    }
}

/// Where event-sourced entities keep their events, snapshots and applied input offsets.
///
/// A journal stores bytes (the typed layer encodes them, see ``PersistenceCodec``), so one journal serves every
/// entity type. Implementations must:
/// - store an ``append(_:)`` atomically and durably before it returns (the caller acknowledges its input then);
/// - reject an append whose first sequence number is not the highest stored plus one
///   (``PersistenceError/Code/sequenceConflict``), leaving other appends unaffected;
/// - detect a damaged stored event or snapshot on read (``PersistenceError/Code/corruptEvent``), naming the entity,
///   the journal and the sequence number; never skip it.
///
/// Every implementation runs the shared journal test suite (`JournalConformanceTests`).
public protocol Journal: Sendable {
    /// Identifies this journal in errors and logs, for example `sqlite:/var/lib/sluice/state.db`.
    var name: String { get }

    /// Stores `append` atomically; returns once it is durable.
    func append(_ append: JournalAppend) async throws(PersistenceError)

    /// Stores `append` atomically like ``append(_:)``, without suspending the caller: `completion` runs once with
    /// `nil` when it is durable, or with the error. Callers keep at most one submitted append per entity in flight
    /// (the next one is submitted from the completion), so an implementation need not order appends of one entity.
    /// The default runs ``append(_:)`` in a task; journals that batch writes call back once a batch is stored.
    /// The journal owns `append` (the caller moves it in): keeping it costs no copy of its events.
    func submit(_ append: consuming JournalAppend, completion: @escaping @Sendable (PersistenceError?) -> Void)

    /// The entity's events with sequence numbers from `sequenceNumber` on, in order, at most `limit` of them (read
    /// in pages so that replay needs bounded memory).
    func readEvents(of id: PersistenceID, from sequenceNumber: Int64, limit: Int) async throws(PersistenceError)
        -> [JournalEvent]

    /// The highest stored sequence number of the entity's events (0 when it has none).
    func highestSequenceNumber(of id: PersistenceID) async throws(PersistenceError) -> Int64

    /// Stores a snapshot, replacing the entity's previous one.
    func saveSnapshot(_ snapshot: JournalSnapshot, for id: PersistenceID) async throws(PersistenceError)

    /// The entity's latest snapshot, if any.
    func loadSnapshot(of id: PersistenceID) async throws(PersistenceError) -> JournalSnapshot?

    /// The highest applied input offset per input topic partition recorded for the entity.
    func inputOffsets(of id: PersistenceID) async throws(PersistenceError) -> [InputOffset]

    /// Finishes pending writes and releases the journal's resources; later calls fail with
    /// ``PersistenceError/Code/journalClosed``.
    func close() async
}
