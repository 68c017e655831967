import SluiceStreams
import SluiceTesting
import Synchronization
import Testing

/// A failing stage fails the whole stream at once, even while upstream has nothing to give (a quiet Kafka topic).
@Suite struct FailurePropagationTests {
    struct Boom: Error {}

    /// A source that emits `count` elements, then waits (cancellably) forever, like a consumer with nothing new.
    static func quietAfter(_ count: Int) -> Source<Int, Void> {
        Source.unfold(0) { next -> (Int, Int)? in
            if next >= count { try await Task.sleep(for: .seconds(3600)) }
            return (next + 1, next)
        }
    }

    @Test(arguments: ["mapAsync", "mapAsyncUnordered", "mapAsyncPartitioned", "mapAsyncPartitionedUnordered", "map", "twoPartitionedStages"])
    func aFailingStageFailsTheStreamWhileUpstreamIsQuiet(_ kind: String) async throws {
        let failAt = 3
        let transform: @Sendable (Int) async throws -> Int = { value in
            if value == failAt { throw Boom() }
            return value
        }
        let source = Self.quietAfter(10)
        let flowed: Source<Int, Void> =
            switch kind {
            case "mapAsync": source.mapAsync(parallelism: 4, transform)
            case "mapAsyncUnordered": source.mapAsyncUnordered(parallelism: 4, transform)
            case "mapAsyncPartitioned": source.mapAsyncPartitioned(parallelism: 4, partitionKey: { _ in 0 }, transform)
            case "mapAsyncPartitionedUnordered": source.mapAsyncPartitionedUnordered(parallelism: 4, bufferSize: 8, partitionKey: { _ in 0 }, transform)
            case "map": source.map(transform)
            default:
                source.mapAsyncPartitioned(parallelism: 1, partitionKey: { $0 % 2 }) { $0 }
                    .mapAsyncPartitioned(parallelism: 16, partitionKey: { _ in "k" }, transform)
            }
        let completion = try flowed.runWith(Sink.ignore())
        try await Eventually.require(timeout: .seconds(60), "the stream fails") { completion.isCompleted }
        #expect(throws: Boom.self) { try completion.result?.get() }
    }
}
