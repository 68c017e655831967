import Dispatch

/// Runs librdkafka calls that block (network round trips, close, flush) on Dispatch's threads, never on Swift's
/// cooperative pool, and resumes the awaiting task with their result.
enum RDKafkaBlocking {
    private static let queue = DispatchQueue(label: "sluice.kafka.blocking", qos: .userInitiated, attributes: .concurrent)

    static func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async { continuation.resume(with: Result { try body() }) }
        }
    }

    static func run<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            queue.async { continuation.resume(returning: body()) }
        }
    }
}
