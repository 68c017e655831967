import Synchronization

/// Stops a running stream from outside: ``shutdown()`` completes it (downstream sees the end, upstream is
/// cancelled), ``abort(_:)`` fails it with an error. Materialized by ``KillSwitches/single()``.
public final class UniqueKillSwitch: Sendable {
    private enum State {
        case running
        case attached(@Sendable (Result<Void, any Error>) -> Void)
        case triggered(Result<Void, any Error>)
    }
    private let state = Mutex(State.running)

    init() {}

    /// Completes the stream: elements not yet passed on are discarded, upstream is cancelled.
    public func shutdown() { trigger(.success(())) }

    /// Fails the stream with `error`.
    public func abort(_ error: any Error) { trigger(.failure(error)) }

    /// Whether ``shutdown()`` or ``abort(_:)`` was called.
    public var isTriggered: Bool {
        state.withLock { if case .triggered = $0 { return true } else { return false } }
    }

    private func trigger(_ result: Result<Void, any Error>) {
        let action: (@Sendable (Result<Void, any Error>) -> Void)? = state.withLock { state in
            switch state {
            case .running:
                state = .triggered(result)
                return nil
            case .attached(let action):
                state = .triggered(result)
                return action
            case .triggered:
                return nil
            }
        }
        action?(result)
    }

    /// Connects the switch to a materialized stage; runs `action` now if the switch was already triggered.
    func attach(_ action: @escaping @Sendable (Result<Void, any Error>) -> Void) {
        let early: Result<Void, any Error>? = state.withLock { state in
            switch state {
            case .running:
                state = .attached(action)
                return nil
            case .triggered(let result):
                return result
            case .attached:
                return nil
            }
        }
        if let early { action(early) }
    }
}

/// Kill switches: flows whose materialized value stops the stream.
public enum KillSwitches {
    /// A flow that passes elements through until its ``UniqueKillSwitch`` is triggered.
    public static func single<Element: Sendable>() -> Flow<Element, Element, UniqueKillSwitch> {
        Flow { upstream in
            let killSwitch = UniqueKillSwitch()
            let elements = StreamElements<Element>.make {
                let pump = Pump<Element>(capacity: 1) { channel in
                    for try await element in upstream {
                        guard await channel.send(element) else { return }
                    }
                }
                killSwitch.attach { result in
                    switch result {
                    case .success: pump.channel.finishDiscarding()
                    case .failure(let error): pump.channel.failDiscarding(error)
                    }
                    pump.cancel()
                }
                return { try await pump.next() }
            }
            return (elements, killSwitch)
        }
    }
}

/// Observes how a stream ends: completes when the stage completes, fails when it fails or is cancelled.
enum TerminationWatch {
    static func watch<Element: Sendable>(
        _ upstream: StreamElements<Element>, _ completion: StreamCompletion<Void>
    ) -> StreamElements<Element> {
        .make {
            let guardian = TerminationGuardian(completion)
            var iterator = upstream.makeAsyncIterator()
            return {
                do {
                    guard let element = try await iterator.next() else {
                        guardian.complete(.success(()))
                        return nil
                    }
                    return element
                } catch {
                    guardian.complete(.failure(error))
                    throw error
                }
            }
        }
    }
}

/// Completes a termination watch with `CancellationError` if the stream is dropped before it ended.
final class TerminationGuardian: Sendable {
    let completion: StreamCompletion<Void>
    init(_ completion: StreamCompletion<Void>) { self.completion = completion }
    func complete(_ result: Result<Void, any Error>) { completion.complete(result) }
    deinit { completion.complete(.failure(CancellationError())) }
}
