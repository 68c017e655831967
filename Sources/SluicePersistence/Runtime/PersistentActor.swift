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
    /// the actor's supervision. Each message is handled by a ``PersistentEntity``: when the handler returns, the
    /// events are durable and applied and the reply was sent, so a ``ActorRef/send(_:onProcessed:)`` receipt of
    /// ``MessageOutcome/processed`` means the input may be acknowledged. A failed journal write throws: the receipt
    /// is ``MessageOutcome/failed(_:)`` (the input is not acknowledged) and supervision decides: stop (the default),
    /// or restart, which recovers a fresh entity from the journal. The actor stops when an effect says so.
    ///
    /// - Parameters:
    ///   - onRecovered: called after each recovery (for metrics and logs).
    ///   - onResult: called after each command handled (including those skipped as already applied).
    public func actorBehavior(
        journal: any Journal, onRecovered: @escaping @Sendable (RecoveryStatistics) -> Void = { _ in },
        onResult: @escaping @Sendable (CommandResult<Reply>) -> Void = { _ in }
    ) -> Behavior<EntityEnvelope<Command, Reply>> {
        let behavior = self
        return Behaviors.setup { _ in
            // The core, not the PersistentEntity actor: this actor's message loop already takes one message at a
            // time, so a second actor would only add two hops per message.
            let entity = PersistentEntityCore(behavior, journal: journal, recoveryPageSize: 1000)
            onRecovered(try await entity.recoverIfNeeded())
            return Behaviors.receiveMessage { envelope in
                let result = try await entity.handle(envelope.command, inputOffset: envelope.inputOffset)
                onResult(result)
                if let reply = result.reply { envelope.replyTo?.tell(reply) }
                return result.stopped ? .stopped : .same
            }
        }
    }
}
