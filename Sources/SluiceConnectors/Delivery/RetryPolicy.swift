public import SluiceConnectorConfig

/// Exponential backoff with jitter, and the retry loop every delivery goes through.
public struct RetryPolicy: Sendable {
    public var maxAttempts: Int?
    public var initialBackoff: Duration
    public var maxBackoff: Duration
    public var jitter: Double

    public init(maxAttempts: Int?, initialBackoff: Duration, maxBackoff: Duration, jitter: Double) {
        self.maxAttempts = maxAttempts
        self.initialBackoff = initialBackoff
        self.maxBackoff = maxBackoff
        self.jitter = jitter
    }

    public init(_ configuration: ErrorHandlingConfiguration) {
        self.init(
            maxAttempts: configuration.maxAttempts, initialBackoff: configuration.initialBackoff,
            maxBackoff: configuration.maxBackoff, jitter: configuration.jitter)
    }

    /// The wait after failed attempt number `attempt` (1-based): initial × 2^(attempt-1), capped, with up to
    /// `jitter` of it randomized downwards so that retries of many records spread out.
    public func backoff(afterAttempt attempt: Int, randomUnit: Double = Double.random(in: 0..<1)) -> Duration {
        let base = initialBackoff * Int(1 << min(max(attempt, 1) - 1, 30))
        let capped = min(base, maxBackoff)
        return capped * (1 - jitter * randomUnit)
    }

    /// How a retried operation ended.
    public enum Outcome<T: Sendable>: Sendable {
        case success(T, attempts: Int)
        /// Gave up: attempts exhausted or a permanent failure.
        case failed(RecordFailure, attempts: Int)
        /// The operation reported a drop.
        case dropped(RecordFailure, attempts: Int)
    }

    /// Runs `operation` until it succeeds, reports a permanent failure or a drop, or the attempts are used up.
    /// With `maxAttempts == nil` a retryable failure is retried for as long as the task lives: cancellation (a
    /// drain running out of time) is the only other way out, and then the record stays unacknowledged.
    ///
    /// - Parameter onRetry: called before each wait with the failure and the attempt number that failed.
    public func run<T: Sendable>(
        onRetry: (RecordFailure, Int) -> Void = { _, _ in },
        _ operation: () async -> Result<T, RecordFailure>
    ) async throws -> Outcome<T> {
        var attempt = 0
        while true {
            attempt += 1
            switch await operation() {
            case .success(let value): return .success(value, attempts: attempt)
            case .failure(let failure):
                switch failure.disposition {
                case .drop: return .dropped(failure, attempts: attempt)
                case .permanent: return .failed(failure, attempts: attempt)
                case .retryable:
                    if let maxAttempts, attempt >= maxAttempts { return .failed(failure, attempts: attempt) }
                    onRetry(failure, attempt)
                    var wait = backoff(afterAttempt: attempt)
                    if let retryAfter = failure.retryAfter { wait = max(wait, min(retryAfter, maxBackoff)) }
                    try await Task.sleep(for: wait)
                }
            }
        }
    }
}
