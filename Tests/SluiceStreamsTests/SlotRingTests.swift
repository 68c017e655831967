@testable import SluiceStreams
import SluiceTesting
import Testing

@Suite("SlotRing: the ordered window's slots")
struct SlotRingTests {
    /// A reference-counted payload: uniqueness shows whether the ring kept a copy.
    final class Payload {
        let value: Int
        init(_ value: Int) { self.value = value }
    }

    @Test("random appends, puts and removals match a plain array, across wrap-arounds and growth (seeded)")
    func matchesReferenceModel() {
        for seed in UInt64(1)...200 {
            var generator = SeededGenerator(seed: seed)
            var ring = SlotRing<Int>()
            var model: [Int?] = []
            for step in 0..<400 {
                switch Int.random(in: 0..<10, using: &generator) {
                case 0..<4:
                    let element: Int? = Bool.random(using: &generator) ? step : nil
                    ring.append(element)
                    model.append(element)
                case 4..<7 where !model.isEmpty:
                    let offset = Int.random(in: 0..<model.count, using: &generator)
                    ring.put(step, at: offset)
                    model[offset] = step
                default:
                    #expect(ring.isFirstFilled == (model.first.map { $0 != nil } ?? false), "seed \(seed) step \(step)")
                    let removed = ring.removeFirst()
                    let expected = model.isEmpty ? nil : model.removeFirst()
                    #expect(removed == expected, "seed \(seed) step \(step)")
                }
                #expect(ring.count == model.count, "seed \(seed) step \(step)")
            }
            while let expected = model.first {
                #expect(ring.removeFirst() == expected, "seed \(seed), draining")
                model.removeFirst()
            }
            #expect(ring.isEmpty)
        }
    }

    @Test("elements are moved in and out: the ring keeps no copy, through growth and wrap-around")
    func keepsNoCopies() {
        var ring = SlotRing<Payload>()
        for round in 0..<5 {
            for _ in 0..<37 { ring.append(nil) }
            for offset in stride(from: 36, through: 0, by: -1) { ring.put(Payload(round * 100 + offset), at: offset) }
            for offset in 0..<37 {
                guard var payload = ring.removeFirst() else {
                    Issue.record("round \(round): slot \(offset) was empty")
                    return
                }
                #expect(payload.value == round * 100 + offset)
                #expect(isKnownUniquelyReferenced(&payload), "round \(round): the ring still holds slot \(offset)")
            }
            #expect(ring.isEmpty)
        }
    }
}
