import DequeModule
import SluiceActors
import Synchronization

/// An event-sourced entity inside an actor that does not wait for its writes (Pekko's `persistAsync`, with the
/// acknowledgements of `persist`).
///
/// A command's events are applied to the state at once and queued for the journal; the actor goes on with its next
/// message while they are written. What others can observe still waits for durability: a command's reply and its
/// message's receipt (the offset acknowledgement) are released only after its events are durable, and in the order
/// the commands came, so a reply never shows state that is not stored, and a message is never acknowledged before an
/// earlier one of the same entity. One write per entity is in flight at a time; commands that queue up behind it go
/// into the next write together (one append, one fsync or one produce round for all of them).
///
/// A failed write fails its commands and every command queued behind it (their state was never stored) and stops the
/// entity (messages still in its mailbox are dropped): its state in memory is not what the journal holds. A shard
/// region starts a new entity on the next message, which recovers from the journal: after a failure the journal,
/// not memory, is the truth.
final class PipelinedEntity<Command: Sendable, Event: Sendable, State: Sendable, Reply: Sendable>: Sendable {
    private let core: PersistentEntityCore<Command, Event, State, Reply>
    private let queue: WriteQueue
    private let onResult: @Sendable (CommandResult<Reply>) -> Void

    /// - Parameter onFailure: called once, from the journal's thread, when a write failed (stop the actor there).
    init(
        core: PersistentEntityCore<Command, Event, State, Reply>,
        onResult: @escaping @Sendable (CommandResult<Reply>) -> Void, onFailure: @escaping @Sendable () -> Void
    ) {
        self.core = core
        self.queue = WriteQueue(journal: core.journal, onFailure: onFailure)
        self.onResult = onResult
    }

    /// Handles a message; `receipt` is called once its events are durable (or it failed). Called by the entity's
    /// actor only, one message at a time (the core is confined to it).
    /// - Returns: whether the command stopped the entity.
    /// - Throws: an earlier write's failure (the entity must be restarted).
    func receive(_ envelope: EntityEnvelope<Command, Reply>, receipt: MessageReceipt?) throws -> Bool {
        if let failure = queue.failure {
            receipt?(.failed(failure))
            throw failure
        }
        let prepared: PersistentEntityCore<Command, Event, State, Reply>.PreparedCommand
        do throws(PersistenceError) {
            prepared = try core.prepareCommand(envelope.command, inputOffset: envelope.inputOffset)
        } catch {
            // Nothing was applied or written: the command fails alone, the entity goes on.
            receipt?(.failed(error))
            return false
        }
        // Applied now; observed (reply, receipt) only once durable, after everything queued before it.
        let result = core.commit(prepared)
        let (onResult, replyTo) = (self.onResult, envelope.replyTo)
        queue.enqueue(prepared.append) { error in
            if let error {
                receipt?(.failed(error))
                return
            }
            if let reply = result.reply { replyTo?.tell(reply) }
            onResult(result)
            receipt?(.processed)
        }
        return result.stopped
    }
}

/// One entity's writes, in order, at most one in flight; completions released in order.
final class WriteQueue: Sendable {
    private struct Item {
        var append: JournalAppend?
        var done: @Sendable (PersistenceError?) -> Void
    }

    private struct State {
        var items = Deque<Item>()
        /// How many items at the head the write in flight covers (0: none in flight).
        var inFlight = 0
        var failure: PersistenceError?
    }

    /// Commands merged into one write at most.
    static let maxMerged = 256

    private let journal: any Journal
    private let onFailure: @Sendable () -> Void
    private let state = Mutex(State())

    init(journal: any Journal, onFailure: @escaping @Sendable () -> Void) {
        self.journal = journal
        self.onFailure = onFailure
    }

    /// The failure of a write, once one failed.
    var failure: PersistenceError? { state.withLock { $0.failure } }

    /// Queues a command's write (`nil`: nothing to write) and what to do once it (and everything before it) is
    /// durable, or failed.
    func enqueue(_ append: JournalAppend?, done: @escaping @Sendable (PersistenceError?) -> Void) {
        let failure: PersistenceError? = state.withLock { state in
            if let failure = state.failure { return failure }
            state.items.append(Item(append: append, done: done))
            return nil
        }
        if let failure {
            done(failure)
            return
        }
        advance()
    }

    /// Completes the items at the head that wait for nothing, and starts the next write if none is in flight.
    private func advance() {
        var ready: [@Sendable (PersistenceError?) -> Void] = []
        var write: JournalAppend?
        state.withLock { state in
            guard state.inFlight == 0 else { return }
            while let head = state.items.first, head.append == nil {
                ready.append(head.done)
                state.items.removeFirst()
            }
            guard !state.items.isEmpty else { return }
            // Merge the writes at the head (and the no-write items between them) into one append, up to a snapshot.
            var merged = state.items[0].append!
            var count = 1
            while count < state.items.count, count < Self.maxMerged, merged.snapshot == nil {
                let next = state.items[count]
                if let append = next.append {
                    guard Self.canMerge(merged.inputOffset, append.inputOffset) else { break }
                    merged.events += append.events
                    merged.inputOffset = append.inputOffset ?? merged.inputOffset
                    merged.snapshot = append.snapshot
                }
                count += 1
            }
            state.inFlight = count
            write = merged
        }
        for done in ready { done(nil) }
        guard let write else { return }
        journal.submit(write) { [self] error in finished(error) }
    }

    /// Offsets of merged commands: the append records one, the highest, so they must be of one topic partition.
    private static func canMerge(_ first: InputOffset?, _ next: InputOffset?) -> Bool {
        guard let first, let next else { return true }
        return first.topic == next.topic && first.partition == next.partition && next.offset >= first.offset
    }

    private func finished(_ error: PersistenceError?) {
        let completed: [@Sendable (PersistenceError?) -> Void] = state.withLock { state in
            var completed: [@Sendable (PersistenceError?) -> Void] = []
            let count = error == nil ? state.inFlight : state.items.count
            for _ in 0..<count { completed.append(state.items.removeFirst().done) }
            state.inFlight = 0
            if let error { state.failure = error }
            return completed
        }
        for done in completed { done(error) }
        if error == nil { advance() } else { onFailure() }
    }
}
