import SluiceStreams
import Synchronization
import Testing

/// Stages that hand out several elements at a time (Kafka batches, sequences): what goes downstream must be exactly
/// what element-by-element iteration would give, in order, with errors after the elements before them.
@Suite("Chunked stages")
struct ChunkedElementsTests {
    final class Counter: Sendable {
        private let count = Atomic(0)
        func increment() { count.wrappingAdd(1, ordering: .relaxed) }
        var value: Int { count.load(ordering: .relaxed) }
    }

    /// A chunked source whose chunks are given, counting the chunks taken.
    func chunkedSource(_ chunks: [[Int]], taken: Counter = Counter()) -> Source<Int, Void> {
        Source<Int, Void> {
            let elements = StreamElements<Int>.makeChunked {
                var remaining = chunks[...]
                return {
                    guard let next = remaining.popFirst() else { return nil }
                    taken.increment()
                    return next
                }
            }
            return (elements, ())
        }
    }

    /// The integers from 0 on, counting how many were made.
    struct CountingSequence: Sequence, Sendable {
        let made: Counter
        func makeIterator() -> AnyIterator<Int> {
            var next = 0
            return AnyIterator {
                defer { next += 1 }
                made.increment()
                return next
            }
        }
    }

    @Test func elementsComeOutInOrderAcrossChunksAndThroughFusedStages() async throws {
        let taken = Counter()
        let chunks = [[1, 2, 3], [4], [5, 6, 7, 8, 9], [10]]
        let all = try await chunkedSource(chunks, taken: taken).runWith(Sink<Int, StreamCompletion<[Int]>>.collect()).value()
        #expect(all == Array(1...10))
        #expect(taken.value == 4, "one pull per chunk")

        // map, filter and compactMap over chunks; a chunk whose elements are all filtered out is skipped.
        let times10: @Sendable (Int) -> Int = { $0 * 10 }
        let notForty: @Sendable (Int) -> Bool = { $0 != 40 }
        let upTo80PlusOne: @Sendable (Int) -> Int? = { $0 > 80 ? nil : $0 + 1 }
        let mapped = try await chunkedSource(chunks).map(times10).filter(notForty).compactMap(upTo80PlusOne)
            .runWith(Sink<Int, StreamCompletion<[Int]>>.collect()).value()
        #expect(mapped == [11, 21, 31, 51, 61, 71, 81])
    }

    @Test func aTransformThatThrowsMidChunkPassesTheElementsBeforeItThenFails() async throws {
        struct Boom: Error, Equatable { let at: Int }
        let received = Mutex<[Int]>([])
        let completion = try chunkedSource([[1, 2], [3, 4, 5, 6]])
            .map { value -> Int in
                if value == 5 { throw Boom(at: value) }
                return value
            }
            .runWith(Sink.foreach { value in received.withLock { $0.append(value) } })
        await #expect(throws: Boom(at: 5)) { try await completion.value() }
        #expect(received.withLock { $0 } == [1, 2, 3, 4])
    }

    @Test func aStageThatPullsOneElementAtATimeGetsEveryElementOnce() async throws {
        // take(n) pulls element by element from a chunked upstream and stops in the middle of a chunk.
        let taken = Counter()
        let firstFive = try await chunkedSource([[1, 2, 3], [4, 5, 6], [7, 8, 9]], taken: taken)
            .take(5).runWith(Sink<Int, StreamCompletion<[Int]>>.collect()).value()
        #expect(firstFive == [1, 2, 3, 4, 5])
        #expect(taken.value == 2, "the third chunk is never taken")

        // An asynchronous stage between chunked stages.
        let viaAsync = try await Source(1...100).map { $0 + 1 }.mapAsync(parallelism: 4) { $0 * 2 }.map { $0 - 1 }
            .runWith(Sink.collect()).value()
        #expect(viaAsync == (1...100).map { ($0 + 1) * 2 - 1 })
    }

    @Test func aSequenceSourceIsBoundedByItsChunkSize() async throws {
        // A sequence source runs ahead of demand by at most one chunk (32 elements), however long the sequence.
        let made = Counter()
        let firstThree = try await Source(CountingSequence(made: made)).take(3).runWith(Sink.collect()).value()
        #expect(firstThree == [0, 1, 2])
        #expect(made.value <= 32)
    }
}

@Suite("AsyncWindow chunks")
struct AsyncWindowChunkTests {
    @Test func anOrderedWindowHandsOutTheReadyPrefixAndFreesThatManyPlaces() async throws {
        let window = AsyncWindow<Int>(capacity: 4, ordered: true)
        var slots: [UInt64] = []
        for _ in 0..<4 { slots.append(try #require(await window.reserve())) }
        // Filled out of order: 1 and 3 first; nothing is ready until 0 is.
        window.fill(slots[1], with: 1)
        window.fill(slots[3], with: 3)
        let waiting = Task { try await window.nextChunk(maxCount: 10) }
        window.fill(slots[0], with: 0)
        #expect(try await waiting.value == [0, 1], "0 and 1 are the ready prefix; 3 waits for 2")

        // Two places are free again: two reservations succeed without waiting, a third waits for a take.
        slots.append(try #require(await window.reserve()))
        slots.append(try #require(await window.reserve()))
        let third = Task { await window.reserve() }
        window.fill(slots[2], with: 2)
        #expect(try await window.nextChunk(maxCount: 1) == [2], "maxCount is respected")
        #expect(try #require(await third.value) == 6)
        window.fill(slots[4], with: 4)
        window.fill(slots[5], with: 5)
        window.fill(6, with: 6)
        window.finish()
        #expect(try await window.nextChunk(maxCount: 10) == [3, 4, 5, 6])
        #expect(try await window.nextChunk(maxCount: 10) == nil)
    }

    @Test func anUnorderedWindowHandsOutResultsAsTheyCame() async throws {
        let window = AsyncWindow<String>(capacity: 3, ordered: false)
        let a = try #require(await window.reserve())
        let b = try #require(await window.reserve())
        let c = try #require(await window.reserve())
        window.fill(c, with: "c")
        window.fill(a, with: "a")
        #expect(try await window.nextChunk(maxCount: 10) == ["c", "a"])
        window.fill(b, with: "b")
        window.finish()
        #expect(try await window.nextChunk(maxCount: 10) == ["b"])
        #expect(try await window.nextChunk(maxCount: 10) == nil)
    }

    @Test func aBatchFillFillsItsPlacesInOrderAndIgnoresPlacesNotReserved() async throws {
        let window = AsyncWindow<Int>(capacity: 5, ordered: true)
        let slots = try #require(await window.reserve(upTo: 5))
        #expect(slots == 0..<5)
        let waiting = Task { try await window.nextChunk(maxCount: 10) }
        // Places 3 and 1 plus one never reserved: the head is still empty, so nothing is ready yet.
        window.fill { place in
            place(3, 3)
            place(1, 1)
            place(99, 99)
        }
        window.fill { place in
            place(2, 2)
            place(0, 0)
        }
        #expect(try await waiting.value == [0, 1, 2, 3])
        window.fill { place in place(4, 4) }
        window.finish()
        #expect(try await window.nextChunk(maxCount: 10) == [4])
        #expect(try await window.nextChunk(maxCount: 10) == nil)
    }
}
