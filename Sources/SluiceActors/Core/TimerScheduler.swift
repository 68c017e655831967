import Synchronization

/// Timers that send messages to their actor: single or periodic, keyed so that starting a timer with a key in use
/// replaces it. All of an actor's timers are cancelled when it stops or restarts.
public final class TimerScheduler<Message: Sendable>: Sendable {
    private let timers = Mutex<[String: Task<Void, Never>]>([:])
    private let target = Mutex<ActorRef<Message>?>(nil)
    private let clock: any Clock<Duration>

    init(clock: any Clock<Duration>) { self.clock = clock }

    func attach(_ ref: ActorRef<Message>) { target.withLock { $0 = ref } }

    /// Sends `message` to the actor once, after `delay`.
    public func startSingleTimer(key: String, message: Message, delay: Duration) {
        start(key: key) { [clock] in
            try await clock.sleep(for: delay)
            return false
        } message: { message }
    }

    /// Sends `message` to the actor every `interval`.
    public func startPeriodicTimer(key: String, message: Message, interval: Duration) {
        start(key: key) { [clock] in
            try await clock.sleep(for: interval)
            return true
        } message: { message }
    }

    /// Cancels the timer with this key; its message will not be sent.
    public func cancel(key: String) {
        timers.withLock { $0.removeValue(forKey: key) }?.cancel()
    }

    /// Cancels every timer.
    public func cancelAll() {
        let all = timers.withLock { timers in
            defer { timers = [:] }
            return Array(timers.values)
        }
        for task in all { task.cancel() }
    }

    /// Whether a timer with this key is running.
    public func isActive(key: String) -> Bool { timers.withLock { $0[key] != nil } }

    private func start(
        key: String, wait: @escaping @Sendable () async throws -> Bool, message: @escaping @Sendable () -> Message
    ) {
        let target = self.target.withLock { $0 }
        let task = Task { [weak self] in
            repeat {
                do {
                    let repeats = try await wait()
                    guard !Task.isCancelled else { return }
                    target?.tell(message())
                    if !repeats {
                        self?.timers.withLock { timers in
                            if timers[key] != nil { timers[key] = nil }
                        }
                        return
                    }
                } catch {
                    return
                }
            } while !Task.isCancelled
        }
        timers.withLock { $0.updateValue(task, forKey: key) }?.cancel()
    }
}
