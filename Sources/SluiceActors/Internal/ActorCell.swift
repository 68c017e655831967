import DequeModule
import Logging
import Synchronization

/// The runtime of one actor: its bounded mailbox, current behaviour, children, watchers and timers.
///
/// An idle actor is only this object: no task, no thread. When a message arrives in an empty mailbox, one task is
/// started to drain it and ends when the mailbox is empty, so millions of idle actors cost only their memory.
///
/// `@unchecked Sendable`: the mutable fields outside `state` (`behavior`, `strategy`, `restartTimes`,
/// `timerScheduler`) are touched
/// only by the draining task, and at most one draining task exists at a time: `state.isScheduled` is set (under
/// the lock) before a task is started and cleared (under the lock) only by that task as its last access, so the
/// lock orders every access of one drain before the next.
final class ActorCell<Message: Sendable>: AnyActorCell, @unchecked Sendable {
    enum SystemMessage {
        case stop
        case terminated(ActorIdentity)
        case childEscalated(ActorIdentity, any Error)
        case childStopped(ActorIdentity)
    }

    enum Lifecycle {
        case running, stopping, stopped
    }

    /// A message with the optional receipt to call once it was handled (or failed, or dropped).
    struct Envelope {
        let message: Message
        let receipt: MessageReceipt?
    }

    struct State {
        var mailbox = Deque<Envelope>()
        var systemMessages = Deque<SystemMessage>()
        var isScheduled = false
        var lifecycle = Lifecycle.running
        var roomWaiters = Deque<CheckedContinuation<Bool, Never>>()
        var children: [String: any AnyActorCell] = [:]
        var watchers: [ActorIdentity: @Sendable (ActorIdentity) -> Void] = [:]
        var watching: [ActorIdentity: any AnyActorCell] = [:]
        var terminationWaiters: [CheckedContinuation<Void, Never>] = []
        var childNameCounter = 0
    }

    let identity: ActorIdentity
    let capacity: Int
    let system: ActorSystem
    private weak var parentCell: (any AnyActorCell)?
    private let initialBehavior: Behavior<Message>
    let state = Mutex(State())
    private(set) lazy var context = ActorContext(cell: self)
    /// This actor's timers, made on first use (most entities never use one). Touched only by the draining task.
    private var timerScheduler: TimerScheduler<Message>?
    var timers: TimerScheduler<Message> {
        if let timerScheduler { return timerScheduler }
        let created = TimerScheduler<Message>(clock: system.clock)
        created.attach(ref)
        timerScheduler = created
        return created
    }

    /// The receipt of the message being handled, until the handler takes it (``ActorContext/takeReceipt()``).
    /// Touched only by the draining task.
    var currentReceipt: MessageReceipt?

    /// A logger tagged with this actor's path (made when needed: a tagged logger costs an allocation per actor).
    var logger: Logger {
        var logger = system.logger
        logger[metadataKey: "sluice.actor"] = .string(identity.path)
        return logger
    }

    // Touched only by the draining task (see the type's comment).
    private var behavior: Behavior<Message>?
    private var strategy = SupervisorStrategy.stop
    private var restartTimes: [ContinuousClock.Instant] = []

    init(
        identity: ActorIdentity, behavior: Behavior<Message>, capacity: Int, system: ActorSystem,
        parent: (any AnyActorCell)?
    ) {
        self.identity = identity
        self.initialBehavior = behavior
        self.capacity = max(capacity, 1)
        self.system = system
        self.parentCell = parent
    }

    var ref: ActorRef<Message> { ActorRef(target: .cell(self)) }

    var mailboxCount: Int { state.withLock { $0.mailbox.count } }

    /// Starts the actor: its setup runs in the first drain.
    func start() {
        state.withLock { $0.isScheduled = true }
        startDrain()
    }

    // MARK: Sending

    func tell(_ message: Message) -> Bool {
        let (accepted, schedule) = state.withLock { state -> (Bool, Bool) in
            guard state.lifecycle == .running, state.mailbox.count < capacity else { return (false, false) }
            state.mailbox.append(Envelope(message: message, receipt: nil))
            return (true, scheduleLocked(&state))
        }
        if !accepted { system.recordDeadLetter(to: identity) }
        if schedule { startDrain() }
        return accepted
    }

    func send(_ message: consuming Message, receipt: MessageReceipt? = nil) async -> Bool {
        // Moved into the mailbox, not copied (a copy retains every reference the message holds).
        var pending: Message? = consume message
        while true {
            let (outcome, schedule) = state.withLock { state -> (Bool?, Bool) in
                guard state.lifecycle == .running else { return (false, false) }
                guard state.mailbox.count < capacity else { return (nil, false) }
                state.mailbox.append(Envelope(message: pending.take()!, receipt: receipt))
                return (true, scheduleLocked(&state))
            }
            if schedule { startDrain() }
            if let outcome {
                if !outcome { system.recordDeadLetter(to: identity) }
                return outcome
            }
            let proceed = await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                let resumeNow: Bool? = state.withLock { state in
                    if state.lifecycle != .running { return false }
                    if state.mailbox.count < capacity { return true }
                    state.roomWaiters.append(continuation)
                    return nil
                }
                if let resumeNow { continuation.resume(returning: resumeNow) }
            }
            if !proceed {
                system.recordDeadLetter(to: identity)
                return false
            }
        }
    }

    func enqueueSystem(_ message: SystemMessage) {
        let schedule = state.withLock { state -> Bool in
            guard state.lifecycle != .stopped else { return false }
            state.systemMessages.append(message)
            return scheduleLocked(&state)
        }
        if schedule { startDrain() }
    }

    private func scheduleLocked(_ state: inout State) -> Bool {
        guard !state.isScheduled else { return false }
        state.isScheduled = true
        return true
    }

    private func startDrain() {
        Task { await self.drain() }
    }

    // MARK: Draining

    private enum Work {
        case system(SystemMessage)
        case message(Envelope, CheckedContinuation<Bool, Never>?)
    }

    private func drain() async {
        if behavior == nil && state.withLock({ $0.lifecycle == .running }) {
            await startBehavior(initialBehavior)
        }
        var processed = 0
        while true {
            let work: Work? = state.withLock { state in
                if let system = state.systemMessages.popFirst() { return .system(system) }
                if state.lifecycle == .running, let message = state.mailbox.popFirst() {
                    return .message(message, state.roomWaiters.popFirst())
                }
                // Going idle: give the mailbox's storage back, so an idle actor costs only the cell itself.
                if state.mailbox.isEmpty { state.mailbox = Deque() }
                state.isScheduled = false
                return nil
            }
            // Consumed, and not unwrapped first (`guard let` makes a copy): the message moves out of the work item.
            // A copy would retain each of its references, and release them again, per message.
            switch consume work {
            case nil:
                return
            case .system(let message)?:
                await handleSystem(message)
            case .message(let envelope, let waiter)?:
                waiter?.resume(returning: true)
                await handle(envelope)
            }
            processed += 1
            // Be fair to other actors sharing the cooperative pool.
            if processed % 64 == 0 { await Task.yield() }
        }
    }

    /// Resolves setup and supervision wrappers into a receiving behaviour (or stopped).
    private func canonicalize(_ behavior: Behavior<Message>) async throws -> Behavior<Message> {
        var current = behavior
        while true {
            switch current.kind {
            case .setup(let factory): current = try await factory(context)
            case .supervised(let inner, let strategy):
                self.strategy = strategy
                current = inner
            default: return current
            }
        }
    }

    private func startBehavior(_ initial: Behavior<Message>) async {
        do {
            let started = try await canonicalize(initial)
            if case .stopped = started.kind {
                await stopSelf(failure: nil)
            } else {
                behavior = started
            }
        } catch {
            await handleFailure(error)
        }
    }

    private func handle(_ envelope: Envelope) async {
        guard let current = behavior, case .receive(let onMessage, _) = current.kind else {
            envelope.receipt?(.dropped)
            return
        }
        currentReceipt = envelope.receipt
        do {
            let next = try await onMessage(context, envelope.message)
            currentReceipt?(.processed)
            currentReceipt = nil
            await become(next, from: current)
        } catch {
            currentReceipt?(.failed(error))
            currentReceipt = nil
            await handleFailure(error)
        }
    }

    private func become(_ next: Behavior<Message>, from current: Behavior<Message>) async {
        switch next.kind {
        case .same:
            return
        case .unhandled:
            system.recordDeadLetter(to: identity)
        case .stopped:
            await stopSelf(failure: nil)
        default:
            do {
                let resolved = try await canonicalize(next)
                if case .stopped = resolved.kind { await stopSelf(failure: nil) } else { behavior = resolved }
            } catch {
                await handleFailure(error)
            }
        }
    }

    private func signal(_ signal: ActorSignal) async {
        guard let current = behavior, case .receive(_, let onSignal?) = current.kind else { return }
        let next = await onSignal(context, signal)
        if case .postStop = signal { return }
        await become(next, from: current)
    }

    // MARK: Supervision

    private func handleFailure(_ error: any Error) async {
        switch strategy.kind {
        case .resume:
            logger.warning("message handling failed, resuming with the same state: \(error)")
        case .stop:
            logger.error("actor failed and stops: \(error)")
            await stopSelf(failure: error)
        case .restart(let settings):
            let now = ContinuousClock.now
            restartTimes.removeAll { now - $0 > settings.window }
            guard restartTimes.count < settings.maxRestarts else {
                logger.error("actor failed \(restartTimes.count + 1) times within \(settings.window): giving up: \(error)")
                if settings.escalate, let parent = parentCell {
                    parent.childEscalated(identity, error)
                }
                await stopSelf(failure: error)
                return
            }
            restartTimes.append(now)
            let backoff = settings.backoff(attempt: restartTimes.count, random: Double.random(in: 0...1))
            logger.warning("actor failed, restarting (attempt \(restartTimes.count)) after \(backoff): \(error)")
            await signal(.preRestart)
            timerScheduler?.cancelAll()
            await stopChildren()
            if backoff > .zero { try? await system.clock.sleep(for: backoff) }
            behavior = nil
            await startBehavior(initialBehavior)
        }
    }

    // MARK: System messages

    private func handleSystem(_ message: SystemMessage) async {
        switch message {
        case .stop:
            await stopSelf(failure: nil)
        case .terminated(let watched):
            let wasWatching = state.withLock { $0.watching.removeValue(forKey: watched) != nil }
            if wasWatching { await signal(.terminated(watched)) }
        case .childEscalated(_, let error):
            await handleFailure(error)
        case .childStopped(let child):
            // A child's path is this actor's path, a slash and its name: find it in O(1), not by scanning (a shard
            // region's guardian has a child per live entity, and stopping a shard stops many at once).
            let name = String(child.path.dropFirst(identity.path.count + 1))
            state.withLock { state in
                if state.children[name]?.identity == child { state.children[name] = nil }
            }
        }
    }

    // MARK: Stopping

    func requestStop() { enqueueSystem(.stop) }

    private func stopChildren() async {
        let children = state.withLock { state in
            defer { state.children = [:] }
            return Array(state.children.values)
        }
        for child in children { child.requestStop() }
        for child in children { await child.waitForTermination() }
    }

    private func stopSelf(failure: (any Error)?) async {
        let alreadyStopping = state.withLock { state -> Bool in
            guard state.lifecycle == .running else { return true }
            state.lifecycle = .stopping
            return false
        }
        guard !alreadyStopping else { return }
        timerScheduler?.cancelAll()
        await stopChildren()
        await signal(.postStop)
        behavior = nil
        let (dropped, roomWaiters, watchers, watching, terminationWaiters) = state.withLock { state in
            state.lifecycle = .stopped
            defer {
                state.mailbox.removeAll()
                state.roomWaiters.removeAll()
                state.watchers = [:]
                state.watching = [:]
                state.terminationWaiters = []
            }
            return (
                Array(state.mailbox), Array(state.roomWaiters), Array(state.watchers.values), Array(state.watching.values),
                state.terminationWaiters
            )
        }
        for envelope in dropped {
            system.recordDeadLetter(to: identity)
            envelope.receipt?(.dropped)
        }
        for waiter in roomWaiters { waiter.resume(returning: false) }
        for watched in watching { watched.removeWatcher(identity) }
        for watcher in watchers { watcher(identity) }
        parentCell?.childStopped(identity)
        if parentCell == nil { system.topLevelStopped(identity) }
        for waiter in terminationWaiters { waiter.resume() }
    }

    func waitForTermination() async {
        await withCheckedContinuation { continuation in
            let stopped = state.withLock { state in
                if state.lifecycle != .stopped { state.terminationWaiters.append(continuation) }
                return state.lifecycle == .stopped
            }
            if stopped { continuation.resume() }
        }
    }

    var isStopped: Bool { state.withLock { $0.lifecycle == .stopped } }

    // MARK: Watching and children

    func addWatcher(_ watcher: ActorIdentity, _ onTerminated: @escaping @Sendable (ActorIdentity) -> Void) {
        let stopped = state.withLock { state in
            if state.lifecycle != .stopped { state.watchers[watcher] = onTerminated }
            return state.lifecycle == .stopped
        }
        if stopped { onTerminated(identity) }
    }

    func removeWatcher(_ watcher: ActorIdentity) {
        state.withLock { _ = $0.watchers.removeValue(forKey: watcher) }
    }

    func childEscalated(_ child: ActorIdentity, _ error: any Error) {
        enqueueSystem(.childEscalated(child, error))
    }

    func childStopped(_ child: ActorIdentity) {
        enqueueSystem(.childStopped(child))
    }

    func spawnChild<Child: Sendable>(_ behavior: Behavior<Child>, name: String?, capacity: Int) throws -> ActorRef<Child> {
        let child: ActorCell<Child> = try state.withLock { state in
            guard state.lifecycle == .running else { throw ActorError.stopping(identity.path) }
            let childName: String
            if let name {
                childName = name
            } else {
                state.childNameCounter += 1
                childName = "$\(state.childNameCounter)"
            }
            guard state.children[childName] == nil else { throw ActorError.duplicateName(childName) }
            let cell = ActorCell<Child>(
                identity: ActorIdentity(path: "\(identity.path)/\(childName)", uid: ActorUID.next()),
                behavior: behavior, capacity: capacity, system: system, parent: self)
            state.children[childName] = cell
            return cell
        }
        child.start()
        return child.ref
    }

    func watch(_ other: any AnyActorCell) {
        let me = identity
        state.withLock { $0.watching[other.identity] = other }
        other.addWatcher(me) { [weak self] stopped in self?.enqueueSystem(.terminated(stopped)) }
    }

    func unwatch(_ other: any AnyActorCell) {
        state.withLock { _ = $0.watching.removeValue(forKey: other.identity) }
        other.removeWatcher(identity)
    }

    var childCount: Int { state.withLock { $0.children.count } }

    /// Starts a child with an explicit name and returns its cell (for the sharding guardian).
    func spawnChildCell<Child: Sendable>(_ behavior: Behavior<Child>, name: String, capacity: Int) throws -> ActorCell<Child> {
        let child: ActorCell<Child> = try state.withLock { state in
            guard state.lifecycle == .running else { throw ActorError.stopping(identity.path) }
            guard state.children[name] == nil else { throw ActorError.duplicateName(name) }
            let cell = ActorCell<Child>(
                identity: ActorIdentity(path: "\(identity.path)/\(name)", uid: ActorUID.next()),
                behavior: behavior, capacity: capacity, system: system, parent: self)
            state.children[name] = cell
            return cell
        }
        child.start()
        return child
    }
}
