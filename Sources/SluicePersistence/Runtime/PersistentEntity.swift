import DequeModule

/// What recovery did.
public struct RecoveryStatistics: Sendable, Hashable {
    /// The snapshot recovery started from (its sequence number), if any.
    public var snapshotSequenceNumber: Int64?
    /// Events read and applied after the snapshot.
    public var eventsReplayed: Int
    /// The entity's sequence number after recovery.
    public var lastSequenceNumber: Int64

    public init(snapshotSequenceNumber: Int64?, eventsReplayed: Int, lastSequenceNumber: Int64) {
        self.snapshotSequenceNumber = snapshotSequenceNumber
        self.eventsReplayed = eventsReplayed
        self.lastSequenceNumber = lastSequenceNumber
    }
}

/// What handling one command did.
public struct CommandResult<Reply: Sendable>: Sendable {
    /// The reply, if the effect had one (and the command was not skipped).
    public var reply: Reply?
    /// Events persisted and applied.
    public var eventsPersisted: Int
    /// The effect stopped the entity: it takes no more commands.
    public var stopped: Bool
    /// The command's input offset was at or below one already applied (a redelivery after a crash): the command was
    /// not handled.
    public var skippedAsAlreadyApplied: Bool
}

/// Runs an ``EventSourcedBehavior`` against a journal, one command at a time.
///
/// - Before its first command the entity recovers: the latest snapshot, then the events after it, in pages; a gap,
///   a damaged event or one its codec cannot decode fails recovery with a ``PersistenceError`` naming the entity,
///   the journal and the sequence number (never a silent reset to the empty state).
/// - A command runs the command handler; its events are encoded, written (with the command's input offset and, when
///   due, a snapshot, in one atomic append), and only once durable applied to the state; then the reply is
///   computed from the new state. So a returned result means the events are durable, and the input may be
///   acknowledged.
/// - A failed write stops the entity: the command is not acknowledged (the error is thrown), and every later
///   command fails with ``PersistenceError/Code/entityStopped``; whoever supervises it starts a new one, which
///   recovers from the journal. (After a failed write the journal's content is what counts, not memory.)
/// - Commands are serialized even when called concurrently (a FIFO gate; a Swift actor alone would interleave
///   commands at the journal write).
public actor PersistentEntity<Command: Sendable, Event: Sendable, State: Sendable, Reply: Sendable> {
    private let core: PersistentEntityCore<Command, Event, State, Reply>
    private var isBusy = false
    private var waiters = Deque<CheckedContinuation<Void, Never>>()

    /// The behaviour this entity runs.
    public nonisolated var behavior: EventSourcedBehavior<Command, Event, State, Reply> { core.behavior }
    /// The journal it persists to.
    public nonisolated var journal: any Journal { core.journal }
    /// Events read per journal call during recovery.
    public nonisolated var recoveryPageSize: Int { core.recoveryPageSize }

    /// The current state (the empty state before recovery).
    public var state: State { core.state }
    /// The sequence number of the last event applied.
    public var lastSequenceNumber: Int64 { core.lastSequenceNumber }
    /// What recovery did (`nil` before it ran).
    public var recoveryStatistics: RecoveryStatistics? { core.recoveryStatistics }

    public init(
        _ behavior: EventSourcedBehavior<Command, Event, State, Reply>, journal: any Journal,
        recoveryPageSize: Int = 1000
    ) {
        core = PersistentEntityCore(behavior, journal: journal, recoveryPageSize: recoveryPageSize)
    }

    /// Recovers the state from the journal if that has not happened yet (commands do it first anyway).
    @discardableResult
    public func recover() async throws(PersistenceError) -> RecoveryStatistics {
        await acquire()
        defer { release() }
        return try await core.recoverIfNeeded()
    }

    /// Handles a command: recovers first if needed, runs the command handler, persists its events (with
    /// `inputOffset`), applies them, and computes the reply.
    ///
    /// - Parameter inputOffset: the input message the command came from. A command whose offset is at or below one
    ///   already applied for the same topic partition is skipped (``CommandResult/skippedAsAlreadyApplied``). The
    ///   offset is recorded with the command's events; a command without events records nothing (handlers are
    ///   deterministic, so handling it again after a crash decides the same).
    /// - Throws: the recovery error; ``PersistenceError/Code/encodingFailed`` (nothing was written, the entity goes
    ///   on); a journal failure (the entity stops); ``PersistenceError/Code/entityStopped``.
    public func handle(_ command: Command, inputOffset: InputOffset? = nil) async throws(PersistenceError)
        -> CommandResult<Reply>
    {
        await acquire()
        defer { release() }
        return try await core.handle(command, inputOffset: inputOffset)
    }

    /// Whether the entity has stopped (by its own effect or after a failed write).
    public var isStopped: Bool { core.isStopped }

    /// Whether a message at `offset` was applied already (its events, if any, are durable).
    public func isAlreadyApplied(_ offset: InputOffset) -> Bool { core.isAlreadyApplied(offset) }

    /// Takes the entity's turn (FIFO); commands do not interleave across their journal writes.
    private func acquire() async {
        guard isBusy else {
            isBusy = true
            return
        }
        await withCheckedContinuation { waiters.append($0) }
    }

    private func release() {
        if let next = waiters.popFirst() { next.resume() } else { isBusy = false }
    }
}

/// The logic of ``PersistentEntity``: recovery, command handling and the applied-offsets bookkeeping, with no
/// isolation of its own.
///
/// `@unchecked Sendable`: it is used by one caller at a time, never concurrently — by the ``PersistentEntity`` actor
/// (under its FIFO gate, which holds across the journal write) or by the actor cell of
/// ``EventSourcedBehavior/actorBehavior(journal:onRecovered:onResult:)``, whose message loop handles one message at a
/// time and is the only code that reaches the core (it is created in the behaviour's setup and captured by its
/// message handler only). Each such caller's accesses happen in order on one task, so no two accesses race.
final class PersistentEntityCore<Command: Sendable, Event: Sendable, State: Sendable, Reply: Sendable>:
    @unchecked Sendable
{
    /// The behaviour this entity runs.
    let behavior: EventSourcedBehavior<Command, Event, State, Reply>
    /// The journal it persists to.
    let journal: any Journal
    /// Events read per journal call during recovery.
    let recoveryPageSize: Int

    /// The current state (the empty state before recovery).
    private(set) var state: State
    /// The sequence number of the last event applied.
    private(set) var lastSequenceNumber: Int64 = 0
    /// What recovery did (`nil` before it ran).
    private(set) var recoveryStatistics: RecoveryStatistics?
    /// The highest applied offset of the input partition the entity last had a message from. An entity's messages
    /// come from one partition (its key's) nearly always: kept in the core itself, that partition's offset is read
    /// and updated twice per message without touching other memory (a list's storage was a cache miss each time,
    /// with 10,000 entities).
    private var latestInput: InputOffset?
    /// The highest applied offset of each other input partition the entity had messages from: a list, searched
    /// from the front, because there are few, and a list finds one without hashing the topic name.
    private var otherInputs: [InputOffset] = []
    private var stoppedBecause: String?

    init(
        _ behavior: EventSourcedBehavior<Command, Event, State, Reply>, journal: any Journal, recoveryPageSize: Int
    ) {
        self.behavior = behavior
        self.journal = journal
        self.recoveryPageSize = max(recoveryPageSize, 1)
        self.state = behavior.emptyState
    }

    private var id: PersistenceID { behavior.persistenceID }


    /// Handles a command: recovers first if needed, runs the command handler, persists its events (with
    /// `inputOffset`), applies them, and computes the reply.
    ///
    /// - Parameter inputOffset: the input message the command came from. A command whose offset is at or below one
    ///   already applied for the same topic partition is skipped (``CommandResult/skippedAsAlreadyApplied``). The
    ///   offset is recorded with the command's events; a command without events records nothing (handlers are
    ///   deterministic, so handling it again after a crash decides the same).
    /// - Throws: the recovery error; ``PersistenceError/Code/encodingFailed`` (nothing was written, the entity goes
    ///   on); a journal failure (the entity stops); ``PersistenceError/Code/entityStopped``.
    func handle(_ command: Command, inputOffset: InputOffset?) async throws(PersistenceError) -> CommandResult<Reply> {
        try await recoverIfNeeded()
        if let stoppedBecause {
            throw PersistenceError(
                .entityStopped, journal: journal.name, persistenceID: id, sequenceNumber: lastSequenceNumber,
                message: "the entity stopped (\(stoppedBecause)) and takes no more commands: start it again")
        }
        let prepared = try prepareCommand(command, inputOffset: inputOffset)
        if let append = prepared.append {
            do throws(PersistenceError) {
                try await journal.append(append)
            } catch {
                stoppedBecause = "a journal write failed: \(error)"
                throw error
            }
        }
        return commit(prepared)
    }

    /// What a command does, decided but not yet applied: the write it needs (if any) and the state after it.
    struct PreparedCommand {
        /// The events (with the input offset and a due snapshot) to write; `nil`: nothing to write.
        var append: JournalAppend?
        var inputOffset: InputOffset?
        var newState: State
        var newSequenceNumber: Int64
        var reply: (@Sendable (State) -> Reply)?
        var eventCount: Int
        var stops: Bool
        /// The input was applied already (a redelivery): the command does nothing.
        var isSkipped: Bool
    }

    /// Runs the command handler and encodes its events, changing nothing: apply the result with ``commit(_:)`` once
    /// it may be (after the write, or at once when the write is awaited elsewhere).
    /// - Throws: ``PersistenceError/Code/encodingFailed`` (nothing changed).
    func prepareCommand(_ command: Command, inputOffset: InputOffset?) throws(PersistenceError) -> PreparedCommand {
        if let inputOffset, isAlreadyApplied(inputOffset) {
            return PreparedCommand(
                append: nil, inputOffset: nil, newState: state, newSequenceNumber: lastSequenceNumber, reply: nil,
                eventCount: 0, stops: false, isSkipped: true)
        }
        let effect = behavior.commandHandler(state, command)
        var prepared = PreparedCommand(
            append: nil, inputOffset: inputOffset, newState: state, newSequenceNumber: lastSequenceNumber,
            reply: effect.reply, eventCount: effect.events.count, stops: effect.stops, isSkipped: false)
        if !effect.events.isEmpty {
            let (records, snapshot, after) = try prepare(effect.events)
            prepared.append = JournalAppend(
                persistenceID: id, events: records, inputOffset: inputOffset, snapshot: snapshot)
            prepared.newState = after
            prepared.newSequenceNumber = records.last!.sequenceNumber
        }
        return prepared
    }

    /// Applies a prepared command: the new state and sequence number, the applied input offset, the reply (computed
    /// from the new state) and a stop.
    func commit(_ prepared: PreparedCommand) -> CommandResult<Reply> {
        guard !prepared.isSkipped else {
            return CommandResult(reply: nil, eventsPersisted: 0, stopped: false, skippedAsAlreadyApplied: true)
        }
        state = prepared.newState
        lastSequenceNumber = prepared.newSequenceNumber
        if let inputOffset = prepared.inputOffset { recordApplied(inputOffset) }
        if prepared.stops { stoppedBecause = "its command handler stopped it" }
        return CommandResult(
            reply: prepared.reply?(state), eventsPersisted: prepared.eventCount, stopped: prepared.stops,
            skippedAsAlreadyApplied: false)
    }

    /// Whether the entity has stopped (by its own effect or after a failed write).
    var isStopped: Bool { stoppedBecause != nil }

    /// Whether a message at `offset` was applied already (its events, if any, are durable).
    func isAlreadyApplied(_ offset: InputOffset) -> Bool {
        if let latest = latestInput, Self.samePartition(latest, offset) { return offset.offset <= latest.offset }
        guard let index = otherIndex(of: offset) else { return false }
        return offset.offset <= otherInputs[index].offset
    }

    // MARK: Recovery

    @discardableResult
    func recoverIfNeeded() async throws(PersistenceError) -> RecoveryStatistics {
        if let recoveryStatistics { return recoveryStatistics }
        var recovered = behavior.emptyState
        var sequenceNumber: Int64 = 0
        var snapshotSequenceNumber: Int64?
        if let snapshot = try await journal.loadSnapshot(of: id) {
            do {
                recovered = try behavior.snapshotCodec.decode(
                    manifest: snapshot.manifest, version: snapshot.version, payload: snapshot.payload)
            } catch {
                throw PersistenceError(
                    .undecodableSnapshot, journal: journal.name, persistenceID: id,
                    sequenceNumber: snapshot.sequenceNumber,
                    message: "the snapshot (manifest '\(snapshot.manifest)', version \(snapshot.version)) cannot be "
                        + "decoded: \(error); fix the snapshot codec (or delete the snapshot to replay all events)")
            }
            sequenceNumber = snapshot.sequenceNumber
            snapshotSequenceNumber = snapshot.sequenceNumber
        }
        var replayed = 0
        while true {
            let page = try await journal.readEvents(of: id, from: sequenceNumber + 1, limit: recoveryPageSize)
            for record in page {
                guard record.sequenceNumber == sequenceNumber + 1 else {
                    throw PersistenceError(
                        .corruptEvent, journal: journal.name, persistenceID: id, sequenceNumber: sequenceNumber + 1,
                        message: "the event is missing (the next stored one is \(record.sequenceNumber)): the journal "
                            + "lost events; restore it from a backup")
                }
                let event: Event
                do {
                    event = try behavior.eventCodec.decode(
                        manifest: record.manifest, version: record.version, payload: record.payload)
                } catch {
                    throw PersistenceError(
                        .undecodableEvent, journal: journal.name, persistenceID: id,
                        sequenceNumber: record.sequenceNumber,
                        message: "the event (manifest '\(record.manifest)', version \(record.version)) cannot be "
                            + "decoded: \(error); fix the event codec (add an upcaster for old versions)")
                }
                recovered = behavior.eventHandler(recovered, event)
                sequenceNumber = record.sequenceNumber
                replayed += 1
            }
            if page.count < recoveryPageSize { break }
        }
        for offset in try await journal.inputOffsets(of: id) { recordApplied(offset) }
        state = recovered
        lastSequenceNumber = sequenceNumber
        let statistics = RecoveryStatistics(
            snapshotSequenceNumber: snapshotSequenceNumber, eventsReplayed: replayed, lastSequenceNumber: sequenceNumber
        )
        recoveryStatistics = statistics
        return statistics
    }

    // MARK: Helpers

    /// Folds `events` into the state (a copy) and encodes them with the next sequence numbers, with a snapshot of
    /// the new state when one is due. Changes nothing.
    private func prepare(_ events: [Event]) throws(PersistenceError) -> ([JournalEvent], JournalSnapshot?, State) {
        var newState = state
        var newSequenceNumber = lastSequenceNumber
        var records: [JournalEvent] = []
        records.reserveCapacity(events.count)
        for event in events {
            newSequenceNumber += 1
            newState = behavior.eventHandler(newState, event)
            do {
                records.append(
                    JournalEvent(
                        sequenceNumber: newSequenceNumber, manifest: behavior.eventCodec.manifest,
                        version: behavior.eventCodec.version, payload: try behavior.eventCodec.encode(event)))
            } catch {
                throw PersistenceError(
                    .encodingFailed, journal: journal.name, persistenceID: id, sequenceNumber: newSequenceNumber,
                    message: "the event could not be encoded (\(error)); nothing was written")
            }
        }
        let snapshot = try snapshotIfDue(newState, from: lastSequenceNumber, to: newSequenceNumber)
        return (records, snapshot, newState)
    }

    private func snapshotIfDue(_ newState: State, from old: Int64, to new: Int64) throws(PersistenceError)
        -> JournalSnapshot?
    {
        guard let every = behavior.snapshotEvery.map(Int64.init), every > 0, old / every != new / every else {
            return nil
        }
        do {
            return JournalSnapshot(
                sequenceNumber: new, manifest: behavior.snapshotCodec.manifest, version: behavior.snapshotCodec.version,
                payload: try behavior.snapshotCodec.encode(newState))
        } catch {
            throw PersistenceError(
                .encodingFailed, journal: journal.name, persistenceID: id, sequenceNumber: new,
                message: "the snapshot could not be encoded (\(error)); nothing was written")
        }
    }

    private func recordApplied(_ offset: InputOffset) {
        if let latest = latestInput {
            if Self.samePartition(latest, offset) {
                if latest.offset < offset.offset { latestInput!.offset = offset.offset }
                return
            }
            // Another partition: the latest one joins the others, and this one's entry (if any) leaves them.
            otherInputs.append(latest)
        }
        var next = offset
        if let index = otherIndex(of: offset) {
            next.offset = max(next.offset, otherInputs.remove(at: index).offset)
        }
        latestInput = next
    }

    /// Where the offset's input partition is in ``otherInputs``.
    private func otherIndex(of offset: InputOffset) -> Int? {
        otherInputs.firstIndex { Self.samePartition($0, offset) }
    }

    private static func samePartition(_ first: InputOffset, _ second: InputOffset) -> Bool {
        first.partition == second.partition && first.topic == second.topic
    }
}
