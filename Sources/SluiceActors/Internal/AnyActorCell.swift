/// What a parent, a watcher or the system needs of an actor, whatever its message type.
protocol AnyActorCell: AnyObject, Sendable {
    var identity: ActorIdentity { get }
    func requestStop()
    func waitForTermination() async
    /// Registers `onTerminated` to run once when the actor has stopped (at once if it has already).
    func addWatcher(_ watcher: ActorIdentity, _ onTerminated: @escaping @Sendable (ActorIdentity) -> Void)
    func removeWatcher(_ watcher: ActorIdentity)
    /// A child gave up after its restarts and escalates `error` to this actor.
    func childEscalated(_ child: ActorIdentity, _ error: any Error)
    /// A child has stopped.
    func childStopped(_ child: ActorIdentity)
}
