/// Who an actor is: its path in the hierarchy and a unique number (a restarted actor keeps both; a new actor with
/// the same name gets a new number).
public struct ActorIdentity: Hashable, Sendable, CustomStringConvertible {
    /// The actor's path, for example `/user/orders/order-42`.
    public let path: String
    /// A number unique within the actor system.
    public let uid: UInt64

    public var description: String { "\(path)#\(uid)" }
}

/// A typed reference to an actor: the only way to talk to it.
public struct ActorRef<Message: Sendable>: Sendable, Hashable, CustomStringConvertible {
    enum Target: Sendable {
        case cell(ActorCell<Message>)
        case function(ActorIdentity, @Sendable (Message) -> Bool)
    }

    let target: Target

    /// The actor's identity.
    public var identity: ActorIdentity {
        switch target {
        case .cell(let cell): cell.identity
        case .function(let identity, _): identity
        }
    }

    /// A reference that is not an actor: each message sent to it is handed to `deliver` at once, on the sender's
    /// task (it must not block). Pekko calls this a message adapter; use it to send an actor's reply somewhere else,
    /// for example onto a Kafka topic.
    /// - Parameter path: names the reference in logs and errors, for example `/kafka/replies/instance-1`.
    public static func adapter(path: String, _ deliver: @escaping @Sendable (Message) -> Void) -> ActorRef {
        ActorRef(target: .function(ActorIdentity(path: path, uid: ActorUID.next())) { message in
            deliver(message)
            return true
        })
    }

    /// Sends a message without waiting. When the mailbox is full (or the actor stopped) the message is not
    /// enqueued: it is counted as a dead letter and `false` is returned. Use ``send(_:)`` to wait for room instead.
    @discardableResult
    public func tell(_ message: Message) -> Bool {
        switch target {
        case .cell(let cell): cell.tell(message)
        case .function(_, let deliver): deliver(message)
        }
    }

    /// Sends a message, waiting while the mailbox is full: this is how backpressure reaches an actor from a stream.
    /// - Returns: `false` if the actor stopped (the message is a dead letter).
    @discardableResult
    public func send(_ message: consuming Message) async -> Bool {
        switch target {
        case .cell(let cell): await cell.send(message)
        case .function(_, let deliver): deliver(message)
        }
    }

    /// Sends a message, waiting for room, and calls `onProcessed` once the actor has handled it (or failed on it,
    /// or stopped before handling it). This is how a stream stage acknowledges a message only when its actor is done.
    /// - Returns: `false` if the actor stopped before taking the message (`onProcessed` is not called then).
    @discardableResult
    public func send(_ message: consuming Message, onProcessed: @escaping MessageReceipt) async -> Bool {
        switch target {
        case .cell(let cell): return await cell.send(message, receipt: onProcessed)
        case .function(_, let deliver):
            let delivered = deliver(message)
            if delivered { onProcessed(.processed) }
            return delivered
        }
    }

    /// Asks the actor: `makeMessage` builds a message carrying a reply-to reference; the reply returns.
    /// - Throws: ``ActorError/askTimedOut(_:timeout:)`` when no reply arrives within `timeout`,
    ///   ``ActorError/deadLetter(_:)`` when the actor could not take the message.
    public func ask<Reply: Sendable>(
        timeout: Duration, _ makeMessage: (ActorRef<Reply>) -> Message
    ) async throws -> Reply {
        let promise = AskPromise<Reply>()
        let replyTo = ActorRef<Reply>(
            target: .function(ActorIdentity(path: "\(identity.path)/$ask", uid: ActorUID.next())) { reply in
                promise.complete(.success(reply))
            })
        guard await send(makeMessage(replyTo)) else { throw ActorError.deadLetter(identity) }
        return try await promise.value(timeout: timeout, asking: identity)
    }

    /// Asks the actor to stop (its children first, then `postStop`). Messages already queued are dropped.
    public func stop() {
        if case .cell(let cell) = target { cell.requestStop() }
    }

    /// Waits until the actor has stopped.
    public func waitForTermination() async {
        if case .cell(let cell) = target { await cell.waitForTermination() }
    }

    /// Messages waiting in the actor's mailbox.
    public var mailboxCount: Int {
        if case .cell(let cell) = target { return cell.mailboxCount }
        return 0
    }

    public static func == (lhs: ActorRef, rhs: ActorRef) -> Bool { lhs.identity == rhs.identity }
    public func hash(into hasher: inout Hasher) { hasher.combine(identity) }
    public var description: String { "ActorRef(\(identity))" }
}

/// What became of a message sent with ``ActorRef/send(_:onProcessed:)``.
public enum MessageOutcome: Sendable {
    /// The actor's handler returned normally.
    case processed
    /// The actor's handler threw; supervision decides what happens to the actor.
    case failed(any Error)
    /// The actor stopped before handling the message.
    case dropped
}

/// Called once with what became of a message.
public typealias MessageReceipt = @Sendable (MessageOutcome) -> Void

/// Errors of the actor layer.
public enum ActorError: Error, Sendable, CustomStringConvertible, Equatable {
    /// No reply arrived within the ask's timeout.
    case askTimedOut(ActorIdentity, timeout: Duration)
    /// The actor stopped or its mailbox was full: the message went to the dead letters.
    case deadLetter(ActorIdentity)
    /// A sibling with this name exists already.
    case duplicateName(String)
    /// The actor system (or parent) is stopping: no new actors.
    case stopping(String)

    public var description: String {
        switch self {
        case .askTimedOut(let identity, let timeout):
            "no reply from \(identity) within \(timeout): the actor is slow, stopped, or dropped the request"
        case .deadLetter(let identity):
            "the message to \(identity) was not delivered: the actor has stopped or its mailbox is full"
        case .duplicateName(let name): "an actor named '\(name)' already exists here: choose another name"
        case .stopping(let path): "\(path) is stopping: no new actors can be started under it"
        }
    }
}

import Synchronization

/// Unique actor numbers.
enum ActorUID {
    private static let counter = Atomic<UInt64>(0)
    static func next() -> UInt64 { counter.wrappingAdd(1, ordering: .relaxed).newValue }
}

/// The reply of one ask.
final class AskPromise<Reply: Sendable>: Sendable {
    private enum State {
        case pending(CheckedContinuation<Reply, any Error>?)
        case done(Result<Reply, any Error>)
    }
    private let state = Mutex(State.pending(nil))

    func complete(_ result: Result<Reply, any Error>) -> Bool {
        let waiter: CheckedContinuation<Reply, any Error>?? = state.withLock { state in
            guard case .pending(let waiter) = state else { return .none }
            state = .done(result)
            return .some(waiter)
        }
        guard let waiter else { return false }
        waiter?.resume(with: result)
        return true
    }

    func value(timeout: Duration, asking identity: ActorIdentity) async throws -> Reply {
        let timer = Task {
            try? await Task.sleep(for: timeout)
            if !Task.isCancelled { _ = self.complete(.failure(ActorError.askTimedOut(identity, timeout: timeout))) }
        }
        defer { timer.cancel() }
        return try await withCheckedThrowingContinuation { continuation in
            let result: Result<Reply, any Error>? = state.withLock { state in
                switch state {
                case .done(let result): return result
                case .pending:
                    state = .pending(continuation)
                    return nil
                }
            }
            if let result { continuation.resume(with: result) }
        }
    }
}
