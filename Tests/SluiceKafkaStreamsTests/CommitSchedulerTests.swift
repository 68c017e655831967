@testable import SluiceKafkaStreams
import SluiceTesting
import Synchronization
import Testing

@Suite("CommitScheduler: commits in the background, coalesced while in flight")
struct CommitSchedulerTests {
    /// A commit target that counts its commits; each commit waits for the gate given for it, if any.
    final class Target: Sendable {
        let name: String
        private let commits = Mutex<(done: Int, started: Int)>((0, 0))
        init(_ name: String) { self.name = name }
        var done: Int { commits.withLock { $0.done } }
        var started: Int { commits.withLock { $0.started } }
        func commit(gate: TestGate?, failure: (any Error)?) async throws {
            commits.withLock { $0.started += 1 }
            await gate?.wait()
            if let failure { throw failure }
            commits.withLock { $0.done += 1 }
        }
    }

    struct CommitFailed: Error {}

    @Test("commits asked for while the one allowed commit runs coalesce into one commit after it")
    func coalescesWhileInFlight() async throws {
        let gate = TestGate()
        let first = Target("first")
        let second = Target("second")
        let scheduler = CommitScheduler<Target>(limit: 1) { target in
            // Only the first commit of `first` is held back.
            try await target.commit(gate: target === first && target.started == 0 ? gate : nil, failure: nil)
        }
        try scheduler.request([first])
        try await Eventually.require("the first commit waits at the gate") { gate.waiting == 1 }
        for _ in 0..<5 { try scheduler.request([first]) }
        try scheduler.request([second, first])
        // Nothing else started while the first commit is in flight: the six requests wait as one.
        #expect(first.started == 1)
        #expect(second.started == 0)
        gate.open()
        try await scheduler.waitForAll()
        #expect(first.done == 2)
        #expect(second.done == 1)
    }

    @Test("up to the limit, commits run at once; beyond it they wait as one")
    func runsUpToTheLimit() async throws {
        let gate = TestGate()
        let targets = (0..<3).map { Target("t\($0)") }
        let scheduler = CommitScheduler<Target>(limit: 2) { target in
            try await target.commit(gate: target.started == 0 ? gate : nil, failure: nil)
        }
        try scheduler.request([targets[0]])
        try scheduler.request([targets[1]])
        try await Eventually.require("two commits wait at the gate") { gate.waiting == 2 }
        try scheduler.request([targets[2]])
        try scheduler.request([targets[2]])
        #expect(targets[2].started == 0)
        gate.open()
        try await scheduler.waitForAll()
        #expect(targets.map(\.done) == [1, 1, 1])
    }

    @Test("a failed commit is rethrown by the next request and by waitForAll, and nothing pending starts after it")
    func failureSurfaces() async throws {
        let gate = TestGate()
        let failing = Target("failing")
        let other = Target("other")
        let scheduler = CommitScheduler<Target>(limit: 1) { target in
            try await target.commit(gate: gate, failure: target === failing ? CommitFailed() : nil)
        }
        try scheduler.request([failing])
        try await Eventually.require("the failing commit waits at the gate") { gate.waiting == 1 }
        try scheduler.request([other])
        gate.open()
        await #expect(throws: CommitFailed.self) { try await scheduler.waitForAll() }
        #expect(throws: CommitFailed.self) { try scheduler.request([other]) }
        #expect(other.started == 0)
    }

    @Test("waitForAll with nothing asked for returns at once")
    func nothingToWaitFor() async throws {
        let scheduler = CommitScheduler<Target>(limit: 1) { _ in }
        try await scheduler.waitForAll()
    }
}
