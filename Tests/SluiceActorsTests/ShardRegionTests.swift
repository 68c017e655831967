import SluiceActors
import SluiceTesting
import Synchronization
import Testing

/// Records, per entity, the messages it handled in order, and the peak number of entities busy at once.
final class EntityRecorder: Sendable {
    private let state = Mutex<(seen: [String: [Int]], busy: Int, peak: Int, overlapping: Bool, active: Set<String>)>(([:], 0, 0, false, []))

    func begin(_ id: String) {
        state.withLock { state in
            if state.active.contains(id) { state.overlapping = true }
            state.active.insert(id)
            state.busy += 1
            state.peak = max(state.peak, state.busy)
        }
    }

    func end(_ id: String, _ value: Int) {
        state.withLock { state in
            state.active.remove(id)
            state.busy -= 1
            state.seen[id, default: []].append(value)
        }
    }

    var seen: [String: [Int]] { state.withLock { $0.seen } }
    var peak: Int { state.withLock { $0.peak } }
    var overlapping: Bool { state.withLock { $0.overlapping } }
    var total: Int { state.withLock { $0.seen.values.map(\.count).reduce(0, +) } }
}

func recordingEntity(_ id: String, _ recorder: EntityRecorder) -> Behavior<Int> {
    Behaviors.receiveMessage { value in
        recorder.begin(id)
        await Task.yield()
        recorder.end(id, value)
        return .same
    }
}

@Suite("Shard regions: entities by id, order, parallelism, passivation, shards", .timeLimit(.minutes(1)))
struct ShardRegionTests {
    @Test("each entity handles its messages in order, one at a time; entities run in parallel")
    func orderAndParallelism() async throws {
        let system = ActorSystem(name: "test")
        let recorder = EntityRecorder()
        let region = try ShardRegion(system: system, typeKey: EntityTypeKey<Int>("counter")) { id in
            recordingEntity(id, recorder)
        }
        let outcomes = Mutex(0)
        for value in 0..<2000 {
            let id = "e\(value % 50)"
            await region.deliver(value, to: id, shard: Int32(value % 4)) { outcome in
                if case .processed = outcome { outcomes.withLock { $0 += 1 } }
            }
        }
        try await Eventually.require("every message is processed") { outcomes.withLock { $0 } == 2000 }
        for (id, values) in recorder.seen {
            let index = Int(id.dropFirst())!
            #expect(values == Array(stride(from: index, to: 2000, by: 50)), "entity \(id) out of order")
        }
        #expect(!recorder.overlapping, "an entity handled two messages at once")
        #expect(recorder.peak > 1, "entities did not run in parallel")
        #expect(region.liveEntityCount == 50)
        await region.shutdown()
        await system.shutdown()
    }

    @Test("a full region passivates its least recently used idle entity; passivated entities come back on demand")
    func maxLiveEntities() async throws {
        let system = ActorSystem(name: "test")
        let recorder = EntityRecorder()
        var settings = ShardRegionSettings()
        settings.maxLiveEntities = 10
        settings.idleTimeout = nil
        let region = try ShardRegion(system: system, typeKey: EntityTypeKey<Int>("lru"), settings: settings) { id in
            recordingEntity(id, recorder)
        }
        let processed = Mutex(0)
        for round in 0..<3 {
            for entity in 0..<30 {
                await region.deliver(round, to: "e\(entity)", shard: 0) { _ in processed.withLock { $0 += 1 } }
                #expect(region.liveEntityCount <= 10)
            }
        }
        try await Eventually.require("all processed") { processed.withLock { $0 } == 90 }
        #expect(region.liveEntityCount <= 10)
        #expect(region.passivationCount >= 80)
        #expect(recorder.seen.values.allSatisfy { $0 == [0, 1, 2] })
        await region.shutdown()
        await system.shutdown()
    }

    @Test("idle entities are passivated after the idle timeout")
    func idleTimeout() async throws {
        let system = ActorSystem(name: "test")
        var settings = ShardRegionSettings()
        settings.idleTimeout = .milliseconds(100)
        settings.passivationInterval = .milliseconds(20)
        let region = try ShardRegion(system: system, typeKey: EntityTypeKey<Int>("idle"), settings: settings) { _ in
            Behaviors.receiveMessage { _ in .same }
        }
        for entity in 0..<20 { await region.deliver(1, to: "e\(entity)", shard: 0) { _ in } }
        try await Eventually.require("idle entities are passivated") { region.liveEntityCount == 0 }
        #expect(region.passivationCount == 20)
        await region.shutdown()
        await system.shutdown()
    }

    @Test("stopping a shard stops its entities and refuses its messages until it starts again")
    func stopShard() async throws {
        let system = ActorSystem(name: "test")
        let region = try ShardRegion(system: system, typeKey: EntityTypeKey<Int>("shards")) { _ in
            Behaviors.receiveMessage { _ in .same }
        }
        for entity in 0..<10 { await region.deliver(1, to: "e\(entity)", shard: Int32(entity % 2)) { _ in } }
        #expect(region.liveEntityCount == 10)
        await region.stopShard(0)
        #expect(region.liveEntityCount == 5)
        let dropped = Mutex<MessageOutcome?>(nil)
        let accepted = await region.deliver(1, to: "e0", shard: 0) { outcome in dropped.withLock { $0 = outcome } }
        #expect(!accepted)
        if case .dropped? = dropped.withLock({ $0 }) {} else { Issue.record("expected a dropped outcome") }
        region.startShard(0)
        #expect(await region.deliver(1, to: "e0", shard: 0) { _ in })
        await region.shutdown()
        await system.shutdown()
    }

    @Test("a failing entity reports the failure for that message and restarts for the next")
    func entityFailure() async throws {
        let system = ActorSystem(name: "test")
        var settings = ShardRegionSettings()
        settings.supervision = .restartImmediately(maxRestarts: 5)
        let region = try ShardRegion(system: system, typeKey: EntityTypeKey<Int>("poison"), settings: settings) { _ in
            Behaviors.receiveMessage { value in
                if value < 0 { throw TestFailure(value: value) }
                return .same
            }
        }
        let outcomes = Mutex<[String]>([])
        for value in [1, -1, 2] {
            await region.deliver(value, to: "e", shard: 0) { outcome in
                let text: String
                switch outcome {
                case .processed: text = "processed"
                case .failed: text = "failed"
                case .dropped: text = "dropped"
                }
                outcomes.withLock { $0.append(text) }
            }
        }
        try await Eventually.require("three outcomes") { outcomes.withLock { $0.count } == 3 }
        #expect(outcomes.withLock { $0 } == ["processed", "failed", "processed"])
        await region.shutdown()
        await system.shutdown()
    }
}
