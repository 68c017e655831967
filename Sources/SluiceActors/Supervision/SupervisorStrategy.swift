/// What happens when an actor's message handler throws ("let it crash").
public struct SupervisorStrategy: Sendable {
    enum Kind: Sendable {
        case stop
        case resume
        case restart(RestartSettings)
    }

    let kind: Kind

    /// Stop the actor (the default without supervision).
    public static let stop = SupervisorStrategy(kind: .stop)

    /// Keep the actor and its state; drop the message that failed.
    public static let resume = SupervisorStrategy(kind: .resume)

    /// Restart the actor with fresh state (its setup runs again), after an exponential backoff with jitter. After
    /// `maxRestarts` restarts within `window`, give up: stop the actor, or escalate the failure to its parent.
    public static func restart(
        minBackoff: Duration = .milliseconds(100), maxBackoff: Duration = .seconds(10), jitter: Double = 0.2,
        maxRestarts: Int = 10, within window: Duration = .seconds(60), escalate: Bool = false
    ) -> SupervisorStrategy {
        SupervisorStrategy(
            kind: .restart(
                RestartSettings(
                    minBackoff: minBackoff, maxBackoff: maxBackoff, jitter: jitter, maxRestarts: maxRestarts,
                    window: window, escalate: escalate)))
    }

    /// Restart at once (no backoff), at most `maxRestarts` times within `window`.
    public static func restartImmediately(maxRestarts: Int = 10, within window: Duration = .seconds(60)) -> SupervisorStrategy {
        restart(minBackoff: .zero, maxBackoff: .zero, jitter: 0, maxRestarts: maxRestarts, within: window)
    }
}

struct RestartSettings: Sendable {
    var minBackoff: Duration
    var maxBackoff: Duration
    var jitter: Double
    var maxRestarts: Int
    var window: Duration
    var escalate: Bool

    /// The backoff before restart number `attempt` (1-based): `minBackoff * 2^(attempt-1)`, capped, plus up to
    /// `jitter` of itself at random.
    func backoff(attempt: Int, random: Double) -> Duration {
        guard minBackoff > .zero else { return .zero }
        let exponent = Double(max(attempt - 1, 0))
        let base = min(Double(minBackoff.components.seconds) + Double(minBackoff.components.attoseconds) / 1e18, 1e9)
            * pow2(exponent)
        let cap = Double(maxBackoff.components.seconds) + Double(maxBackoff.components.attoseconds) / 1e18
        let seconds = min(base, cap) * (1 + jitter * random)
        return .nanoseconds(Int64(seconds * 1e9))
    }

    private func pow2(_ exponent: Double) -> Double {
        var result = 1.0
        for _ in 0..<Int(min(exponent, 60)) { result *= 2 }
        return result
    }
}
