public import Logging
import Synchronization

/// The home of a tree of actors: starts top-level actors, counts dead letters, and stops everything on shutdown.
public final class ActorSystem: Sendable {
    /// The system's name (the root of actor paths).
    public let name: String
    /// The clock timers and restart backoffs use (a manual clock in tests).
    public let clock: any Clock<Duration>
    let logger: Logger
    private let topLevel = Mutex<[String: any AnyActorCell]>([:])
    private let deadLetterCount = Atomic<Int>(0)
    private let isStopping = Mutex(false)

    /// Creates an actor system.
    public init(name: String, clock: any Clock<Duration> = ContinuousClock(), logger: Logger = Logger(label: "sluice.actors")) {
        self.name = name
        self.clock = clock
        self.logger = logger
    }

    /// Starts a top-level actor.
    /// - Parameters:
    ///   - mailboxCapacity: at most this many messages wait in its mailbox (``ActorRef/tell(_:)`` fails beyond it,
    ///     ``ActorRef/send(_:)`` waits).
    /// - Throws: ``ActorError/duplicateName(_:)``, or ``ActorError/stopping(_:)`` during shutdown.
    @discardableResult
    public func spawn<Message: Sendable>(
        _ behavior: Behavior<Message>, name: String, mailboxCapacity: Int = 1000
    ) throws -> ActorRef<Message> {
        let cell: ActorCell<Message> = try topLevel.withLock { topLevel in
            if isStopping.withLock({ $0 }) { throw ActorError.stopping("/\(self.name)") }
            guard topLevel[name] == nil else { throw ActorError.duplicateName(name) }
            let cell = ActorCell(
                identity: ActorIdentity(path: "/\(self.name)/\(name)", uid: ActorUID.next()), behavior: behavior,
                capacity: mailboxCapacity, system: self, parent: nil)
            topLevel[name] = cell
            return cell
        }
        cell.start()
        return cell.ref
    }

    /// Starts a top-level actor that only parents other actors (sharding regions' entities).
    func spawnGuardian(name: String) throws -> ActorCell<GuardianCommand> {
        let cell: ActorCell<GuardianCommand> = try topLevel.withLock { topLevel in
            if isStopping.withLock({ $0 }) { throw ActorError.stopping("/\(self.name)") }
            guard topLevel[name] == nil else { throw ActorError.duplicateName(name) }
            let cell = ActorCell<GuardianCommand>(
                identity: ActorIdentity(path: "/\(self.name)/\(name)", uid: ActorUID.next()),
                behavior: Behaviors.receiveMessage { _ in .same }, capacity: 1, system: self, parent: nil)
            topLevel[name] = cell
            return cell
        }
        cell.start()
        return cell
    }

    /// Messages that could not be delivered (mailbox full, actor stopped, unhandled).
    public var deadLetters: Int { deadLetterCount.load(ordering: .relaxed) }

    func recordDeadLetter(to identity: ActorIdentity) {
        deadLetterCount.wrappingAdd(1, ordering: .relaxed)
    }

    func topLevelStopped(_ identity: ActorIdentity) {
        let name = String(identity.path.dropFirst(self.name.count + 2))
        topLevel.withLock { topLevel in
            if topLevel[name]?.identity == identity { topLevel[name] = nil }
        }
    }

    /// Stops every actor (children before parents) and waits until all have stopped.
    public func shutdown() async {
        isStopping.withLock { $0 = true }
        let all = topLevel.withLock { Array($0.values) }
        for cell in all { cell.requestStop() }
        for cell in all { await cell.waitForTermination() }
    }
}
