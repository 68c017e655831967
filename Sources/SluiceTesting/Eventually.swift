/// Waiting for a condition by polling it with a deadline: the tests' only way to wait (never a bare sleep).
public enum Eventually {
    /// Polls `condition` every `interval` until it is true; throws if it is still false after `timeout`.
    public static func require(
        timeout: Duration = .seconds(30), interval: Duration = .milliseconds(20), _ what: String,
        _ condition: () async throws -> Bool
    ) async throws {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while true {
            if try await condition() { return }
            if clock.now >= deadline {
                throw TestSupportError("timed out after \(timeout) waiting until \(what)")
            }
            try await Task.sleep(for: interval)
        }
    }

    /// Polls `produce` until it returns a value; throws if it is still `nil` after `timeout`.
    public static func value<T>(
        timeout: Duration = .seconds(30), interval: Duration = .milliseconds(20), _ what: String,
        _ produce: () async throws -> T?
    ) async throws -> T {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while true {
            if let value = try await produce() { return value }
            if clock.now >= deadline {
                throw TestSupportError("timed out after \(timeout) waiting for \(what)")
            }
            try await Task.sleep(for: interval)
        }
    }
}
