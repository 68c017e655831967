public import Logging

/// What an actor can do besides handling its message: know itself, spawn and stop children, watch other actors,
/// schedule messages to itself, and log.
public final class ActorContext<Message: Sendable>: Sendable {
    // Unowned: the context lives inside its cell and is only used while the cell runs.
    private unowned let cell: ActorCell<Message>

    init(cell: ActorCell<Message>) { self.cell = cell }

    /// This actor's reference.
    public var selfRef: ActorRef<Message> { cell.ref }

    /// This actor's identity.
    public var identity: ActorIdentity { cell.identity }

    /// The actor system this actor lives in.
    public var system: ActorSystem { cell.system }

    /// A logger tagged with this actor's path.
    public var log: Logger { cell.logger }

    /// Timers that send messages to this actor; all are cancelled when it stops or restarts.
    public var timers: TimerScheduler<Message> { cell.timers }

    /// Starts a child actor. Stopping this actor stops its children first.
    /// - Throws: ``ActorError/duplicateName(_:)`` if a child of that name exists.
    @discardableResult
    public func spawn<Child: Sendable>(
        _ behavior: Behavior<Child>, name: String? = nil, mailboxCapacity: Int = 1000
    ) throws -> ActorRef<Child> {
        try cell.spawnChild(behavior, name: name, capacity: mailboxCapacity)
    }

    /// Stops a child (or any actor) by reference.
    public func stop<Other>(_ ref: ActorRef<Other>) { ref.stop() }

    /// Delivers ``ActorSignal/terminated(_:)`` to this actor when `ref` stops (at once if it has stopped).
    public func watch<Other>(_ ref: ActorRef<Other>) {
        if case .cell(let other) = ref.target { cell.watch(other) }
    }

    /// Stops watching `ref`.
    public func unwatch<Other>(_ ref: ActorRef<Other>) {
        if case .cell(let other) = ref.target { cell.unwatch(other) }
    }

    /// How many children this actor has.
    public var childCount: Int { cell.childCount }

    /// Takes the receipt of the message being handled (``ActorRef/send(_:onProcessed:)``), so that the handler can
    /// report the outcome later, for example once the message's effects are durable: the actor then goes on with its
    /// next message at once. The handler must call the receipt exactly once, also when it throws afterwards (the cell
    /// no longer does). Returns `nil` if the message came without a receipt, or outside a message handler.
    public func takeReceipt() -> MessageReceipt? {
        defer { cell.currentReceipt = nil }
        return cell.currentReceipt
    }
}
