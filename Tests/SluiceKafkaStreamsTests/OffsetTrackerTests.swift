@testable import SluiceKafkaStreams
import SluiceTesting
import Testing

/// The offset tracker against a simple reference model, over thousands of seeded random acknowledgement orders.
/// Out-of-order committers are where other libraries skipped offsets (Confluent Parallel Consumer #826, #875).
@Suite("Offset tracker: committable position under out-of-order acknowledgements")
struct OffsetTrackerTests {
    /// The obviously-correct model: the lowest registered offset not acknowledged, or one past the highest
    /// registered offset when all are acknowledged.
    struct ReferenceModel {
        var registered: [Int64] = []
        var acknowledged: Set<Int64> = []
        var committable: Int64? {
            guard let last = registered.last else { return nil }
            return registered.first { !acknowledged.contains($0) } ?? last + 1
        }
    }

    @Test("5,000 random cases: registrations with gaps, acknowledgements in random order, duplicates and unknown offsets")
    func randomizedAgainstModel() {
        for seed in UInt64(1)...5000 {
            var random = SeededGenerator(seed: seed)
            var tracker = OffsetTracker()
            var model = ReferenceModel()
            var nextOffset = Int64.random(in: 0...1000, using: &random)
            var unacknowledged: [Int64] = []
            let steps = Int.random(in: 1...200, using: &random)
            for _ in 0..<steps {
                switch Int.random(in: 0..<10, using: &random) {
                case 0..<4:
                    // Register the next offset, sometimes after a gap (compaction, transaction markers).
                    nextOffset += Int64.random(in: 0...10, using: &random) < 8 ? 1 : Int64.random(in: 2...5, using: &random)
                    let registered = tracker.register(nextOffset)
                    #expect(registered)
                    model.registered.append(nextOffset)
                    unacknowledged.append(nextOffset)
                case 4..<9 where !unacknowledged.isEmpty:
                    // Acknowledge a random outstanding offset.
                    let offset = unacknowledged.remove(at: Int.random(in: 0..<unacknowledged.count, using: &random))
                    let isNew = tracker.acknowledge(offset)
                    #expect(isNew)
                    model.acknowledged.insert(offset)
                default:
                    // A repeated or unknown acknowledgement changes nothing.
                    let bogus = model.acknowledged.randomElement(using: &random) ?? (nextOffset + 100)
                    let before = tracker.committable
                    let isNew = tracker.acknowledge(bogus)
                    #expect(!isNew)
                    #expect(tracker.committable == before)
                }
                #expect(tracker.committable == model.committable, "seed \(seed)")
                #expect(tracker.outstanding == unacknowledged.count, "seed \(seed)")
                // The safety property itself: nothing below the committable position is unacknowledged.
                if let committable = tracker.committable {
                    #expect(unacknowledged.allSatisfy { $0 >= committable }, "seed \(seed) committed past an unacknowledged offset")
                }
            }
        }
    }

    @Test("registering an offset at or below one already registered is refused")
    func monotonicRegistration() {
        var tracker = OffsetTracker()
        let first = tracker.register(10)
        let again = tracker.register(10)
        let lower = tracker.register(5)
        #expect(first)
        #expect(!again)
        #expect(!lower)
        #expect(tracker.committable == 10)
        tracker.acknowledge(10)
        #expect(tracker.committable == 11)
    }
}
