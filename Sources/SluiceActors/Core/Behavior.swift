/// What an actor does with its next message: a message handler that returns the behaviour for the message after
/// (so an actor is a state machine whose states are behaviours), plus how it reacts to lifecycle signals.
public struct Behavior<Message: Sendable>: Sendable {
    indirect enum Kind: Sendable {
        case receive(
            onMessage: @Sendable (ActorContext<Message>, Message) async throws -> Behavior<Message>,
            onSignal: (@Sendable (ActorContext<Message>, ActorSignal) async -> Behavior<Message>)?)
        case setup(@Sendable (ActorContext<Message>) async throws -> Behavior<Message>)
        case same
        case stopped
        case unhandled
        case supervised(Behavior<Message>, SupervisorStrategy)
    }

    let kind: Kind

    init(_ kind: Kind) { self.kind = kind }

    /// Reacts to lifecycle signals (``ActorSignal``) as well as messages; returns the behaviour after the signal.
    public func receiveSignal(
        _ onSignal: @escaping @Sendable (ActorContext<Message>, ActorSignal) async -> Behavior<Message>
    ) -> Behavior<Message> {
        switch kind {
        case .receive(let onMessage, _): Behavior(.receive(onMessage: onMessage, onSignal: onSignal))
        default: self
        }
    }
}

/// Lifecycle signals an actor can react to with ``Behavior/receiveSignal(_:)``.
public enum ActorSignal: Sendable {
    /// The actor is about to restart after a failure: release what the failed incarnation held.
    case preRestart
    /// The actor has stopped (its children stopped first): release its resources.
    case postStop
    /// A watched actor stopped.
    case terminated(ActorIdentity)
}

/// Builders of behaviours.
public enum Behaviors {
    /// Handles each message with `onMessage`, which returns the next behaviour (often `.same`).
    public static func receive<Message: Sendable>(
        _ onMessage: @escaping @Sendable (ActorContext<Message>, Message) async throws -> Behavior<Message>
    ) -> Behavior<Message> {
        Behavior(.receive(onMessage: onMessage, onSignal: nil))
    }

    /// Handles each message without needing the context.
    public static func receiveMessage<Message: Sendable>(
        _ onMessage: @escaping @Sendable (Message) async throws -> Behavior<Message>
    ) -> Behavior<Message> {
        Behavior(.receive(onMessage: { _, message in try await onMessage(message) }, onSignal: nil))
    }

    /// Runs `factory` when the actor starts (and again on each restart) to make its first behaviour: the place to
    /// create state, spawn children and start timers.
    public static func setup<Message: Sendable>(
        _ factory: @escaping @Sendable (ActorContext<Message>) async throws -> Behavior<Message>
    ) -> Behavior<Message> {
        Behavior(.setup(factory))
    }

    /// Keep the current behaviour.
    public static func same<Message: Sendable>() -> Behavior<Message> { Behavior(.same) }

    /// Stop the actor (its children first, then `postStop`).
    public static func stopped<Message: Sendable>() -> Behavior<Message> { Behavior(.stopped) }

    /// The message was not handled: it is recorded as a dead letter; the behaviour stays the same.
    public static func unhandled<Message: Sendable>() -> Behavior<Message> { Behavior(.unhandled) }

    /// Wraps `behavior` so that failures thrown while handling a message are handled by `strategy`.
    public static func supervise<Message: Sendable>(
        _ behavior: Behavior<Message>, onFailure strategy: SupervisorStrategy
    ) -> Behavior<Message> {
        Behavior(.supervised(behavior, strategy))
    }
}

extension Behavior {
    /// Shorthand for `Behaviors.same()`.
    public static var same: Behavior { Behavior(.same) }
    /// Shorthand for `Behaviors.stopped()`.
    public static var stopped: Behavior { Behavior(.stopped) }
    /// Shorthand for `Behaviors.unhandled()`.
    public static var unhandled: Behavior { Behavior(.unhandled) }
}
