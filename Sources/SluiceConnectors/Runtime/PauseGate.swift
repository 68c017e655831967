import Synchronization

/// Holds a connector's records while it is paused (`POST /v1/connectors/{name}/pause`). Nothing is dropped: the
/// stream backs up behind the gate, its bounded buffers fill, and the consumer pauses the partitions.
final class PauseGate: Sendable {
    private let state = Mutex<(paused: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    var isPaused: Bool { state.withLock { $0.paused } }

    func pause() { state.withLock { $0.paused = true } }

    func resume() {
        let waiters = state.withLock { state in
            state.paused = false
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Returns at once when open; otherwise when resumed.
    func pass() async {
        guard isPaused else { return }
        await withCheckedContinuation { continuation in
            let open = state.withLock { state in
                if !state.paused { return true }
                state.waiters.append(continuation)
                return false
            }
            if open { continuation.resume() }
        }
    }
}
