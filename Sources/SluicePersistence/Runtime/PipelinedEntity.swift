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
        queue.enqueue((consume prepared).append) { error in
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
        /// The write, until it is submitted (moved into the journal, or merged into another item's write).
        var append: JournalAppend?
        /// Whether the item waits for a write (its own, or one it was merged into); `false`: for nothing.
        let writes: Bool
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
    ///
    /// The write is moved, never copied: into the queue, out of it into the journal (a copy would retain every
    /// event's payload and the entity's id).
    func enqueue(_ append: consuming JournalAppend?, done: @escaping @Sendable (PersistenceError?) -> Void) {
        enum Next { case failed(PersistenceError), completeNow, write(JournalAppend), wait }
        var incoming = consume append
        // The common case, nothing queued and nothing in flight, is decided under one lock: write at once (or
        // complete at once when there is nothing to write).
        let next: Next = state.withLock { state in
            if let failure = state.failure { return .failed(failure) }
            guard state.inFlight == 0, state.items.isEmpty else {
                let writes = incoming != nil
                state.items.append(Item(append: incoming.take(), writes: writes, done: done))
                return .wait
            }
            guard let append = incoming.take() else { return .completeNow }
            // In flight at once: the item keeps only that it waits for a write.
            state.items.append(Item(append: nil, writes: true, done: done))
            state.inFlight = 1
            return .write(append)
        }
        switch next {
        case .failed(let failure): done(failure)
        case .completeNow: done(nil)
        case .write(let append): journal.submit(consume append) { [self] error in finished(error) }
        case .wait: advance()
        }
    }

    /// Completes the items at the head that wait for nothing, and starts the next write if none is in flight.
    private func advance() {
        // Items, not their closures, leave the lock: a closure taken out of a generic container (the lock's result)
        // would be wrapped in a newly allocated thunk.
        var ready: [Item] = []
        var write: JournalAppend?
        state.withLock { state in
            guard state.inFlight == 0 else { return }
            while state.items.first?.writes == false {
                ready.append(state.items.removeFirst())
            }
            guard !state.items.isEmpty else { return }
            // Merge the writes at the head (and the no-write items between them) into one append, up to a snapshot.
            // Each write is moved out of its item (which goes on waiting for the merged one).
            var merged = state.items[0].append.take()!
            var count = 1
            while count < state.items.count, count < Self.maxMerged, merged.snapshot == nil {
                if state.items[count].writes {
                    guard Self.canMerge(merged.inputOffset, state.items[count].append?.inputOffset) else { break }
                    let append = state.items[count].append.take()!
                    merged.events += append.events
                    merged.inputOffset = append.inputOffset ?? merged.inputOffset
                    merged.snapshot = append.snapshot
                }
                count += 1
            }
            state.inFlight = count
            write = merged
        }
        for item in ready { item.done(nil) }
        guard let write else { return }
        journal.submit(write) { [self] error in finished(error) }
    }

    /// Offsets of merged commands: the append records one, the highest, so they must be of one topic partition.
    private static func canMerge(_ first: InputOffset?, _ next: InputOffset?) -> Bool {
        guard let first, let next else { return true }
        return first.topic == next.topic && first.partition == next.partition && next.offset >= first.offset
    }

    private func finished(_ error: PersistenceError?) {
        // Usually the write covered one command and nothing waits behind it: complete it without building a list,
        // and without looking for a next write. (Items leave the lock, not closures: see `advance`.)
        let (single, more, waiting): (Item?, [Item], Bool) = state.withLock { state in
            let count = error == nil ? state.inFlight : state.items.count
            state.inFlight = 0
            if let error { state.failure = error }
            if count == 1 { return (state.items.removeFirst(), [], !state.items.isEmpty) }
            var completed: [Item] = []
            completed.reserveCapacity(count)
            for _ in 0..<count { completed.append(state.items.removeFirst()) }
            return (nil, completed, !state.items.isEmpty)
        }
        single?.done(error)
        for item in more { item.done(error) }
        if error != nil {
            onFailure()
        } else if waiting {
            advance()
        }
    }
}
