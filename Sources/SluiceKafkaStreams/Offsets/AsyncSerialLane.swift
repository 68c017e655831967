import DequeModule
import Synchronization

/// A first-in, first-out async lock: callers run their critical sections one at a time, in arrival order,
/// suspending (never blocking a thread) while another holds it.
final class AsyncSerialLane: Sendable {
    private let state = Mutex<(busy: Bool, waiters: Deque<CheckedContinuation<Void, Never>>)>((false, []))

    func run<T: Sendable>(_ body: () async throws -> T) async rethrows -> T {
        await acquire()
        defer { release() }
        return try await body()
    }

    private func acquire() async {
        await withCheckedContinuation { continuation in
            let acquired = state.withLock { state in
                if state.busy {
                    state.waiters.append(continuation)
                    return false
                }
                state.busy = true
                return true
            }
            if acquired { continuation.resume() }
        }
    }

    private func release() {
        let next = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if let next = state.waiters.popFirst() { return next }
            state.busy = false
            return nil
        }
        next?.resume()
    }
}
