import Synchronization

/// The eventual outcome of a running stream (or of a sink): await ``value()`` to learn it.
public final class StreamCompletion<Value: Sendable>: Sendable {
    private enum State {
        case pending([CheckedContinuation<Value, any Error>])
        case done(Result<Value, any Error>)
    }
    private let state = Mutex(State.pending([]))

    /// Creates a pending completion.
    public init() {}

    /// Completes with a value or an error. Later calls are ignored.
    public func complete(_ result: Result<Value, any Error>) {
        let waiters: [CheckedContinuation<Value, any Error>] = state.withLock { state in
            guard case .pending(let waiters) = state else { return [] }
            state = .done(result)
            return waiters
        }
        for waiter in waiters { waiter.resume(with: result) }
    }

    /// Whether the stream has completed (with a value or an error).
    public var isCompleted: Bool {
        state.withLock { if case .done = $0 { return true } else { return false } }
    }

    /// The result, if completed.
    public var result: Result<Value, any Error>? {
        state.withLock { if case .done(let result) = $0 { return result } else { return nil } }
    }

    /// Waits for the outcome: the value, or the error the stream failed with.
    public func value() async throws -> Value {
        try await withCheckedThrowingContinuation { continuation in
            let result: Result<Value, any Error>? = state.withLock { state in
                switch state {
                case .done(let result): return result
                case .pending(var waiters):
                    waiters.append(continuation)
                    state = .pending(waiters)
                    return nil
                }
            }
            if let result { continuation.resume(with: result) }
        }
    }
}

/// How to combine the materialized values of two joined stages.
public enum Keep {
    /// Keep the left (upstream) value.
    public static func left<L, R>(_ left: L, _ right: R) -> L { left }
    /// Keep the right (downstream) value.
    public static func right<L, R>(_ left: L, _ right: R) -> R { right }
    /// Keep both.
    public static func both<L, R>(_ left: L, _ right: R) -> (L, R) { (left, right) }
    /// Keep neither.
    public static func none<L, R>(_ left: L, _ right: R) {}
}
