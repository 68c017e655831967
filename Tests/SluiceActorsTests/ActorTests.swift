import SluiceActors
import SluiceTesting
import Synchronization
import Testing

/// A thread-safe log of events, in order.
final class EventLog: Sendable {
    private let events = Mutex<[String]>([])
    func append(_ event: String) { events.withLock { $0.append(event) } }
    var all: [String] { events.withLock { $0 } }
}

enum CounterMessage: Sendable {
    case increment
    case get(ActorRef<Int>)
    case fail
    case stop
}

/// A counter whose state lives in its behaviour: each increment returns a new behaviour.
func counter(_ value: Int = 0, log: EventLog? = nil) -> Behavior<CounterMessage> {
    Behaviors.receive { context, message in
        switch message {
        case .increment: return counter(value + 1, log: log)
        case .get(let replyTo):
            replyTo.tell(value)
            return .same
        case .fail: throw TestFailure(value: value)
        case .stop: return .stopped
        }
    }
    .receiveSignal { _, signal in
        switch signal {
        case .preRestart: log?.append("preRestart(\(value))")
        case .postStop: log?.append("postStop(\(value))")
        case .terminated(let identity): log?.append("terminated(\(identity.path))")
        }
        return .same
    }
}

struct TestFailure: Error { let value: Int }

@Suite("Actors: messages, ask, mailboxes, hierarchy, watch, supervision, timers", .timeLimit(.minutes(1)))
struct ActorTests {
    @Test("tell changes state through behaviours; ask returns the reply")
    func tellAndAsk() async throws {
        let system = ActorSystem(name: "test")
        let ref = try system.spawn(counter(), name: "counter")
        for _ in 0..<100 { ref.tell(.increment) }
        let value = try await ref.ask(timeout: .seconds(5)) { .get($0) }
        #expect(value == 100)
        await system.shutdown()
    }

    @Test("an ask without a reply fails cleanly with a timeout")
    func askTimeout() async throws {
        let system = ActorSystem(name: "test")
        let silent = try system.spawn(Behaviors.receiveMessage { (_: CounterMessage) in .same }, name: "silent")
        await #expect(throws: ActorError.self) {
            _ = try await silent.ask(timeout: .milliseconds(50)) { (replyTo: ActorRef<Int>) in .get(replyTo) }
        }
        await system.shutdown()
    }

    @Test("a full mailbox refuses tell (dead letter) while send waits for room")
    func boundedMailbox() async throws {
        let system = ActorSystem(name: "test")
        let gate = AsyncGate()
        let slow = try system.spawn(
            Behaviors.receiveMessage { (_: Int) in
                await gate.wait()
                return .same
            }, name: "slow", mailboxCapacity: 3)
        // The first message is taken (and blocks at the gate); three more fill the mailbox.
        #expect(slow.tell(0))
        try await Eventually.require("the actor is busy with the first message") { slow.mailboxCount == 0 }
        #expect(slow.tell(1) && slow.tell(2) && slow.tell(3))
        #expect(!slow.tell(4), "a tell to a full mailbox is refused")
        #expect(system.deadLetters == 1)
        let sent = Task { await slow.send(5) }
        try await Eventually.require("send is waiting for room") { slow.mailboxCount == 3 }
        gate.open()
        #expect(await sent.value)
        await system.shutdown()
    }

    @Test("stopping a parent stops its children first; watchers see terminated")
    func hierarchyAndWatch() async throws {
        let system = ActorSystem(name: "test")
        let log = EventLog()
        let parent = try system.spawn(
            Behaviors.setup { (context: ActorContext<CounterMessage>) in
                try context.spawn(counter(1, log: log), name: "child-a")
                try context.spawn(counter(2, log: log), name: "child-b")
                return counter(0, log: log)
            }, name: "parent")
        let watcher = try system.spawn(
            Behaviors.setup { (context: ActorContext<CounterMessage>) in
                context.watch(parent)
                return counter(99, log: log)
            }, name: "watcher")
        parent.tell(.stop)
        await parent.waitForTermination()
        let events = log.all
        #expect(events.firstIndex(of: "postStop(0)")! > events.firstIndex(of: "postStop(1)")!)
        #expect(events.firstIndex(of: "postStop(0)")! > events.firstIndex(of: "postStop(2)")!)
        try await Eventually.require("the watcher got terminated") { log.all.contains("terminated(/test/parent)") }
        watcher.stop()
        await system.shutdown()
    }

    @Test("restart gives fresh state and re-runs setup; preRestart is signalled")
    func restartSupervision() async throws {
        let system = ActorSystem(name: "test")
        let log = EventLog()
        let setups = Mutex(0)
        let ref = try system.spawn(
            Behaviors.supervise(
                Behaviors.setup { (_: ActorContext<CounterMessage>) in
                    setups.withLock { $0 += 1 }
                    return counter(0, log: log)
                }, onFailure: .restartImmediately(maxRestarts: 3)), name: "restarting")
        ref.tell(.increment)
        ref.tell(.increment)
        ref.tell(.fail)
        ref.tell(.increment)
        #expect(try await ref.ask(timeout: .seconds(5)) { .get($0) } == 1)
        #expect(setups.withLock { $0 } == 2)
        #expect(log.all.contains("preRestart(2)"))
        await system.shutdown()
    }

    @Test("after too many restarts within the window, the actor stops")
    func restartLimit() async throws {
        let system = ActorSystem(name: "test")
        let ref = try system.spawn(
            Behaviors.supervise(counter(), onFailure: .restartImmediately(maxRestarts: 2, within: .seconds(60))),
            name: "fragile")
        for _ in 0..<3 { ref.tell(.fail) }
        await ref.waitForTermination()
        #expect(!ref.tell(.increment))
        await system.shutdown()
    }

    @Test("restart waits its backoff (driven by a manual clock)")
    func restartBackoff() async throws {
        let clock = ManualClock()
        let system = ActorSystem(name: "test", clock: clock)
        let ref = try system.spawn(
            Behaviors.supervise(
                counter(), onFailure: .restart(minBackoff: .seconds(1), maxBackoff: .seconds(10), jitter: 0)),
            name: "backoff")
        ref.tell(.fail)
        try await Eventually.require("the restart waits on the clock") { clock.sleeperCount == 1 }
        ref.tell(.increment)
        let reply = Task { try await ref.ask(timeout: .seconds(10)) { .get($0) } }
        // Still waiting: the messages queue up during the backoff.
        #expect(clock.sleeperCount == 1)
        clock.advance(by: .seconds(1))
        #expect(try await reply.value == 1)
        await system.shutdown()
    }

    @Test("resume keeps the state and drops the failing message")
    func resumeSupervision() async throws {
        let system = ActorSystem(name: "test")
        let ref = try system.spawn(Behaviors.supervise(counter(), onFailure: .resume), name: "resilient")
        ref.tell(.increment)
        ref.tell(.fail)
        ref.tell(.increment)
        #expect(try await ref.ask(timeout: .seconds(5)) { .get($0) } == 2)
        await system.shutdown()
    }

    @Test("without supervision a failure stops the actor, signalling postStop")
    func stopOnFailure() async throws {
        let system = ActorSystem(name: "test")
        let log = EventLog()
        let ref = try system.spawn(counter(7, log: log), name: "brittle")
        ref.tell(.fail)
        await ref.waitForTermination()
        #expect(log.all == ["postStop(7)"])
        await system.shutdown()
    }

    @Test("single and periodic timers fire by the clock and are cancelled when the actor stops")
    func timers() async throws {
        let clock = ManualClock()
        let system = ActorSystem(name: "test", clock: clock)
        let received = EventLog()
        enum Tick: Sendable { case once, periodic, stop }
        let ref = try system.spawn(
            Behaviors.setup { (context: ActorContext<Tick>) in
                context.timers.startSingleTimer(key: "once", message: .once, delay: .seconds(5))
                context.timers.startPeriodicTimer(key: "periodic", message: .periodic, interval: .seconds(2))
                return Behaviors.receiveMessage { tick in
                    received.append("\(tick)")
                    return tick == .stop ? .stopped : .same
                }
            }, name: "ticking")
        try await Eventually.require("both timers wait") { clock.sleeperCount == 2 }
        clock.advance(by: .seconds(2))
        try await Eventually.require("a periodic tick") { received.all == ["periodic"] }
        try await Eventually.require("both timers wait again") { clock.sleeperCount == 2 }
        clock.advance(by: .seconds(3))
        try await Eventually.require("the single timer fired") { received.all.contains("once") }
        ref.tell(.stop)
        await ref.waitForTermination()
        try await Eventually.require("no timer waits after stop") { clock.sleeperCount == 0 }
        let before = received.all.count
        clock.advance(by: .seconds(60))
        #expect(received.all.count == before)
        await system.shutdown()
    }
}

typealias AsyncGate = TestGate

