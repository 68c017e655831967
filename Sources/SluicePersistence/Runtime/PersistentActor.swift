public import SluiceActors

/// A message to a persistent entity running as an actor: the command, the input offset it came from (if any), and
/// where to send the reply (if anyone waits for one).
public struct EntityEnvelope<Command: Sendable, Reply: Sendable>: Sendable {
    /// What to do.
    public var command: Command
    /// The input message the command came from: recorded with its events, and a redelivery of it is skipped.
    public var inputOffset: InputOffset?
    /// Who gets the reply (see ``ActorRef/adapter(path:_:)`` for a reply that goes anywhere else).
    public var replyTo: ActorRef<Reply>?

    public init(_ command: Command, inputOffset: InputOffset? = nil, replyTo: ActorRef<Reply>? = nil) {
        self.command = command
        self.inputOffset = inputOffset
        self.replyTo = replyTo
    }
}

extension EventSourcedBehavior {
    /// This entity as an actor behaviour (for ``ActorSystem/spawn(_:name:mailboxCapacity:)`` or a shard region).
    ///
    /// The actor recovers in its setup, before its first message; a recovery failure is a setup failure, handled by
    /// the actor's supervision. The actor does not wait for its journal writes: a command's events are applied at
    /// once and written in the background (one write in flight per entity; commands that arrive meanwhile share the
    /// next one), and what others observe waits for durability — the reply, and the message's receipt
    /// (``ActorRef/send(_:onProcessed:)``), come only once its events are durable, in message order. So a receipt of
    /// ``MessageOutcome/processed`` means the input may be acknowledged. A failed write fails its message and every
    /// message queued behind it (``MessageOutcome/failed(_:)``: not acknowledged) and stops the actor (its state in
    /// memory is not what the journal holds; messages still in its mailbox are dropped); a shard region starts a new
    /// entity on the next message, which recovers from the journal. A recovery failure goes to supervision. The
    /// actor stops when an effect says so.
    ///
    /// - Parameters:
    ///   - onRecovered: called after each recovery (for metrics and logs).
    ///   - onResult: called after each command's events are durable (including commands skipped as already
    ///     applied).
    public func actorBehavior(
        journal: any Journal, onRecovered: @escaping @Sendable (RecoveryStatistics) -> Void = { _ in },
        onResult: @escaping @Sendable (CommandResult<Reply>) -> Void = { _ in }
    ) -> Behavior<EntityEnvelope<Command, Reply>> {
        let behavior = self
        return Behaviors.setup { context in
            let core = PersistentEntityCore(behavior, journal: journal, recoveryPageSize: 1000)
            onRecovered(try await core.recoverIfNeeded())
            // The actor does not wait for its writes: each message's receipt is released once its events are
            // durable (see PipelinedEntity), and the next message is handled meanwhile.
            let selfRef = context.selfRef
            let entity = PipelinedEntity(core: core, onResult: onResult, onFailure: { selfRef.stop() })
            return Behaviors.receiveMessage { envelope in
                try entity.receive(envelope, receipt: context.takeReceipt()) ? .stopped : .same
            }
        }
    }
}
