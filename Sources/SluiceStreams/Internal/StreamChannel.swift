import DequeModule
import Synchronization

/// A building block for custom stages.
///
/// A bounded multi-producer, single-consumer channel: the decoupling point of stages that run their upstream in a
/// task of their own (buffer, merge, mapAsync, groupedWithin, kill switch).
///
/// `send` waits while the channel holds `capacity` elements (that is how backpressure reaches upstream);
/// `receive` waits while it is empty. Finishing lets the receiver drain what is buffered first; failing does too,
/// then throws. Both sides are cancellation-aware and never lose an element that was accepted.
public final class StreamChannel<Element: Sendable>: Sendable {
    /// What ``receive(until:clock:)`` returns.
    public enum ReceiveResult: Sendable {
        case element(Element)
        case finished
        case timedOut
    }

    private struct State {
        var buffer = Deque<Element>()
        var completion: Result<Void, any Error>?
        var receiver: CheckedContinuation<ReceiveResult, any Error>?
        var receiverToken: UInt64 = 0
        var senders: Deque<(id: UInt64, continuation: CheckedContinuation<Bool, Never>)> = []
        var nextID: UInt64 = 0
    }

    /// At most this many elements are buffered.
    public let capacity: Int
    private let state = Mutex(State())

    private enum SendAction { case delivered(CheckedContinuation<ReceiveResult, any Error>?), closed, wait }
    private enum ReceiveAction { case resume(ReceiveResult), fail(any Error), wait }

    /// Creates a channel buffering at most `capacity` elements.
    public init(capacity: Int) {
        self.capacity = max(capacity, 1)
    }

    /// Elements buffered now.
    public var count: Int { state.withLock { $0.buffer.count } }

    // MARK: Sending

    /// Sends elements in order: as many as there is room for under one lock (the first straight to a waiting
    /// receiver), the rest one by one as room comes. Returns `false` as ``send(_:)`` does, for the first element not
    /// accepted (it and those after it are dropped).
    @discardableResult
    public func send(contentsOf elements: [Element]) async -> Bool {
        var next = 0
        while next < elements.count {
            let (receiver, accepted, closed) = state.withLock {
                state -> (CheckedContinuation<ReceiveResult, any Error>?, Int, Bool) in
                if state.completion != nil { return (nil, 0, true) }
                var index = next
                var receiver: CheckedContinuation<ReceiveResult, any Error>?
                if let waiting = state.receiver.take() {
                    receiver = waiting  // it waits only on an empty buffer: handing it the first keeps the order
                    index += 1
                }
                while index < elements.count, state.buffer.count < capacity {
                    state.buffer.append(elements[index])
                    index += 1
                }
                return (receiver, index - next, false)
            }
            if closed { return false }
            receiver?.resume(returning: .element(elements[next]))
            next += accepted
            if next < elements.count {
                // Full: wait for room with the next element, then go on in bulk.
                guard await send(elements[next]) else { return false }
                next += 1
            }
        }
        return true
    }

    /// Sends an element, waiting for room. Returns `false` if the channel was finished (the element is dropped:
    /// nobody will read it) or the sending task was cancelled.
    @discardableResult
    public func send(_ element: Element) async -> Bool {
        while true {
            let action: SendAction = state.withLock { state in
                if state.completion != nil { return .closed }
                if let receiver = state.receiver.take() {
                    return .delivered(receiver)
                }
                if state.buffer.count < capacity {
                    state.buffer.append(element)
                    return .delivered(nil)
                }
                return .wait
            }
            switch action {
            case .delivered(let receiver?):
                receiver.resume(returning: .element(element))
                return true
            case .delivered(nil):
                return true
            case .closed:
                return false
            case .wait:
                if Task.isCancelled { return false }
                let id = state.withLock { state -> UInt64 in
                    state.nextID += 1
                    return state.nextID
                }
                let proceed = await withTaskCancellationHandler {
                    await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                        let resumeNow: Bool? = state.withLock { state in
                            if state.completion != nil { return false }
                            if state.buffer.count < capacity || state.receiver != nil { return true }
                            state.senders.append((id, continuation))
                            return nil
                        }
                        if let resumeNow { continuation.resume(returning: resumeNow) }
                    }
                } onCancel: {
                    let waiter = state.withLock { state -> CheckedContinuation<Bool, Never>? in
                        guard let index = state.senders.firstIndex(where: { $0.id == id }) else { return nil }
                        return state.senders.remove(at: index).continuation
                    }
                    waiter?.resume(returning: false)
                }
                if !proceed { return false }
            }
        }
    }

    /// Sends without waiting. Returns `false` when the channel is full or finished.
    public func trySend(_ element: Element) -> Bool {
        let (accepted, receiver): (Bool, CheckedContinuation<ReceiveResult, any Error>?) = state.withLock { state in
            if state.completion != nil { return (false, nil) }
            if let receiver = state.receiver.take() { return (true, receiver) }
            if state.buffer.count < capacity {
                state.buffer.append(element)
                return (true, nil)
            }
            return (false, nil)
        }
        receiver?.resume(returning: .element(element))
        return accepted
    }

    /// Applies `body` to the buffer under the lock (for overflow strategies that drop elements). If the buffer
    /// was empty and a receiver waits, the first element is handed to it.
    func withBuffer(_ body: (inout Deque<Element>) -> Void) {
        let handoff: (CheckedContinuation<ReceiveResult, any Error>, Element)? = state.withLock { state in
            if state.completion != nil { return nil }
            body(&state.buffer)
            if state.receiver != nil, let first = state.buffer.popFirst() {
                return (state.receiver.take()!, first)
            }
            return nil
        }
        if let (receiver, element) = handoff { receiver.resume(returning: .element(element)) }
    }

    /// Ends the stream: the receiver gets the buffered elements, then the end (`nil`).
    public func finish() { complete(.success(())) }

    /// Fails the stream: the receiver gets the buffered elements, then `error`.
    public func fail(_ error: any Error) { complete(.failure(error)) }

    private func complete(_ result: Result<Void, any Error>) {
        let (receiver, senders): (CheckedContinuation<ReceiveResult, any Error>?, [CheckedContinuation<Bool, Never>]) =
            state.withLock { state in
                guard state.completion == nil else { return (nil, []) }
                state.completion = result
                let senders = state.senders.map(\.continuation)
                state.senders.removeAll()
                return (state.buffer.isEmpty ? state.receiver.take() : nil, senders)
            }
        for sender in senders { sender.resume(returning: false) }
        if let receiver {
            switch result {
            case .success: receiver.resume(returning: .finished)
            case .failure(let error): receiver.resume(throwing: error)
            }
        }
    }

    // MARK: Receiving

    /// Receives the next element; `nil` when the channel finished.
    /// - Throws: the channel's failure, or `CancellationError` when the receiving task was cancelled.
    public func receive() async throws -> Element? {
        switch try await receive(until: nil as ContinuousClock.Instant?, clock: nil as ContinuousClock?) {
        case .element(let element): return element
        case .finished, .timedOut:
            try Task.checkCancellation()
            return nil
        }
    }

    /// Ends the stream at once, discarding buffered elements (a kill switch's shutdown).
    public func finishDiscarding() {
        state.withLock { $0.buffer.removeAll() }
        finish()
    }

    /// Fails the stream at once, discarding buffered elements (a kill switch's abort).
    public func failDiscarding(_ error: any Error) {
        state.withLock { $0.buffer.removeAll() }
        fail(error)
    }

    /// Receives the next element, or `.timedOut` once `deadline` passes on `clock` (no deadline when `nil`).
    public func receive<C: Clock>(until deadline: C.Instant?, clock: C?) async throws -> ReceiveResult where C.Duration == Duration {
        if let immediate = try takeImmediately() { return immediate }
        let token = state.withLock { state -> UInt64 in
            state.receiverToken += 1
            return state.receiverToken
        }
        var timer: Task<Void, Never>?
        defer { timer?.cancel() }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<ReceiveResult, any Error>) in
                var senderToWake: CheckedContinuation<Bool, Never>?
                let action: ReceiveAction = state.withLock { state in
                    if let element = state.buffer.popFirst() {
                        senderToWake = state.senders.popFirst()?.continuation
                        return .resume(.element(element))
                    }
                    switch state.completion {
                    case .success?: return .resume(.finished)
                    case .failure(let error)?: return .fail(error)
                    case nil: break
                    }
                    if Task.isCancelled { return .resume(.finished) }
                    precondition(state.receiver == nil, "a stream stage was pulled from two tasks at once")
                    state.receiver = continuation
                    // A sender waiting for room can now hand its element straight over.
                    senderToWake = state.senders.popFirst()?.continuation
                    return .wait
                }
                senderToWake?.resume(returning: true)
                switch action {
                case .resume(let result): continuation.resume(returning: result)
                case .fail(let error): continuation.resume(throwing: error)
                case .wait:
                    if let deadline, let clock {
                        timer = Task { [weak self] in
                            try? await clock.sleep(until: deadline, tolerance: nil)
                            guard !Task.isCancelled else { return }
                            self?.resumeReceiver(token: token, with: .timedOut)
                        }
                    }
                }
            }
        } onCancel: {
            resumeReceiver(token: token, with: .finished)
        }
    }

    private func resumeReceiver(token: UInt64, with result: ReceiveResult) {
        let receiver = state.withLock { state -> CheckedContinuation<ReceiveResult, any Error>? in
            guard state.receiverToken == token else { return nil }
            return state.receiver.take()
        }
        receiver?.resume(returning: result)
    }

    /// Takes up to `maxCount` elements that are buffered now, without waiting, under one lock (a chunked
    /// receive: a stage that handles elements in groups pays one lock and at most one wake-up per chunk instead of
    /// per element). Senders waiting for room are woken, one per element taken. Returns an empty array when
    /// nothing is buffered; the end or a failure is left for the next ``receive()``.
    public func drain(maxCount: Int) -> [Element] {
        guard maxCount > 0 else { return [] }
        var sendersToWake: [CheckedContinuation<Bool, Never>] = []
        let taken: [Element] = state.withLock { state in
            let count = min(maxCount, state.buffer.count)
            guard count > 0 else { return [] }
            var taken: [Element] = []
            taken.reserveCapacity(count)
            while taken.count < count, let element = state.buffer.popFirst() { taken.append(element) }  // moved, not copied
            while sendersToWake.count < count, let sender = state.senders.popFirst() {
                sendersToWake.append(sender.continuation)
            }
            return taken
        }
        for sender in sendersToWake { sender.resume(returning: true) }
        return taken
    }

    private func takeImmediately() throws -> ReceiveResult? {
        var senderToWake: CheckedContinuation<Bool, Never>?
        let result: ReceiveResult? = try state.withLock { state in
            if let element = state.buffer.popFirst() {
                senderToWake = state.senders.popFirst()?.continuation
                return .element(element)
            }
            switch state.completion {
            case .success?: return .finished
            case .failure(let error)?: throw error
            case nil: return nil
            }
        }
        senderToWake?.resume(returning: true)
        return result
    }
}
