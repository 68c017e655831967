import Foundation
import Synchronization

/// A dedicated OS thread that runs a client's librdkafka poll loop, so polling never blocks Swift's
/// cooperative thread pool.
final class RDKafkaPollThread: Sendable {
    private struct State {
        var isStopRequested = false
        var hasExited = false
        var exitWaiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())

    /// Whether ``requestStop()`` was called; the loop checks it between polls.
    var isStopRequested: Bool { state.withLock { $0.isStopRequested } }

    /// Starts `body` on a new thread. `body` should return soon after ``isStopRequested`` turns true.
    func start(name: String, _ body: @escaping @Sendable () -> Void) {
        let thread = Thread { [self] in
            body()
            let waiters = state.withLock { state in
                state.hasExited = true
                defer { state.exitWaiters = [] }
                return state.exitWaiters
            }
            for waiter in waiters { waiter.resume() }
        }
        thread.name = name
        thread.stackSize = 1 << 20
        thread.start()
    }

    /// Asks the loop to finish.
    func requestStop() {
        state.withLock { $0.isStopRequested = true }
    }

    /// Waits until the loop has returned.
    func waitForExit() async {
        await withCheckedContinuation { continuation in
            let hasExited = state.withLock { state in
                if !state.hasExited { state.exitWaiters.append(continuation) }
                return state.hasExited
            }
            if hasExited { continuation.resume() }
        }
    }
}
