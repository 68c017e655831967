import Synchronization

/// A value behind a lock, as a class so that escaping closures (receipts, watchers, sweeper tasks) can share it.
final class Locked<Value>: @unchecked Sendable {
    // @unchecked Sendable: `value` is only reached through `mutex`, which serialises every access.
    private let mutex: Mutex<Void> = Mutex(())
    private var value: Value

    init(_ value: Value) { self.value = value }

    func withLock<Result>(_ body: (inout Value) throws -> Result) rethrows -> Result {
        try mutex.withLock { _ in try body(&value) }
    }
}

/// The message type of guardian actors, which only parent other actors.
enum GuardianCommand: Sendable {
    case noop
}
