import Logging
import SluiceKafka
@testable import SluiceKafkaStreams
import Synchronization
import Testing

@Suite("PartitionLedger: acknowledgements in chunks")
struct PartitionLedgerBatchTests {
    @Test("a chunk acknowledges like one acknowledgement at a time; never past an unacknowledged offset")
    func chunkMatchesSingle() {
        let partition = KafkaTopicPartition(topic: "t", partition: 0)
        let chunked = PartitionLedger(partition, maxInFlight: 100) { _ in }
        for offset in Int64(0)..<10 { #expect(chunked.admit(offset) == .registered) }
        chunked.acknowledge(contentsOf: [3, 1, 0, 9, 3])
        #expect(chunked.positionToCommit() == 2)
        #expect(chunked.outstanding == 6)
        chunked.acknowledge(contentsOf: [2, 4, 5, 6, 7, 8])
        #expect(chunked.positionToCommit() == 10)
        #expect(chunked.outstanding == 0)
    }

    @Test("a chunk that brings a blocked partition down to half its limit unblocks it once")
    func chunkUnblocks() {
        let partition = KafkaTopicPartition(topic: "t", partition: 1)
        let unblocks = Mutex(0)
        let ledger = PartitionLedger(partition, maxInFlight: 4) { _ in unblocks.withLock { $0 += 1 } }
        for offset in Int64(0)..<4 { #expect(ledger.admit(offset) == .registered) }
        #expect(ledger.admit(4) == .blocked)
        ledger.acknowledge(contentsOf: [0])
        #expect(unblocks.withLock { $0 } == 0)
        ledger.acknowledge(contentsOf: [1, 2])
        #expect(unblocks.withLock { $0 } == 1)
    }

    @Test("a run of offsets registers up to the in-flight limit; the offset after it is then blocked alone")
    func runStopsAtLimit() {
        let ledger = PartitionLedger(KafkaTopicPartition(topic: "t", partition: 3), maxInFlight: 4) { _ in }
        #expect(ledger.admit(run: [Int64](0..<3)) == 3)
        #expect(ledger.admit(run: [Int64](3..<6)) == 1)
        #expect(ledger.outstanding == 4)
        #expect(ledger.admit(4) == .blocked)
        ledger.acknowledge(contentsOf: [0, 1, 2, 3])
        #expect(ledger.positionToCommit() == 4)
        #expect(ledger.admit(run: [Int64](4..<6)) == 2)
        ledger.beginRevoke()
        #expect(ledger.admit(run: [Int64(6)]) == 0)
    }

    @Test("a revoked ledger ignores chunks")
    func revokedIgnores() {
        let ledger = PartitionLedger(KafkaTopicPartition(topic: "t", partition: 2), maxInFlight: 4) { _ in }
        #expect(ledger.admit(0) == .registered)
        ledger.markRevoked()
        ledger.acknowledge(contentsOf: [0])
        #expect(ledger.outstanding == 1)
        #expect(ledger.positionToCommit() == nil)
    }
}

@Suite("Committable source: admitting what was read")
struct CommittableAdmissionTests {
    let p0 = KafkaTopicPartition(topic: "t", partition: 0)
    let p1 = KafkaTopicPartition(topic: "t", partition: 1)

    func messages(_ partition: KafkaTopicPartition, _ offsets: Range<Int64>) -> [KafkaConsumerMessage] {
        offsets.map { KafkaConsumerMessage(topic: partition.topic, partition: partition.partition, offset: $0, key: nil, value: [1]) }
    }

    func makeCoordinator(maxInFlight: Int) -> KafkaCommitCoordinator {
        let coordinator = KafkaCommitCoordinator(maxInFlightPerPartition: maxInFlight, logger: Logger(label: "test")) { _ in }
        coordinator.assigned([p0, p1])
        return coordinator
    }

    /// Admits until nothing is left, returning the steps and the admitted (partition, offset) pairs.
    func admitAll(
        _ state: CommittableSourceState, _ coordinator: KafkaCommitCoordinator, limit: Int = 10
    ) -> (steps: [CommittableSourceState.AdmitStep], admitted: [String]) {
        var chunk: [CommittableMessage] = []
        var cached: PartitionLedger?
        var steps: [CommittableSourceState.AdmitStep] = []
        while true {
            let step = state.admitNext(into: &chunk, limit: limit, coordinator: coordinator, cached: &cached)
            if step == .empty { break }
            steps.append(step)
        }
        return (steps, chunk.map { "\($0.message.partition)@\($0.committableOffset.offset)" })
    }

    @Test("a run of a partition's messages is admitted at once, up to the in-flight limit; the rest is held back")
    func runsAndLimits() {
        let coordinator = makeCoordinator(maxInFlight: 3)
        let state = CommittableSourceState(logger: Logger(label: "test"))
        state.setUnadmitted(messages(p0, 0..<5) + messages(p1, 0..<1), readSince: state.forgetCount, coordinator: coordinator)
        let (steps, admitted) = admitAll(state, coordinator)
        // Three of p0 (its limit), its last two held back in order, then p1's.
        #expect(steps == [.admitted(3), .held, .held, .admitted(1)])
        #expect(admitted == ["0@0", "0@1", "0@2", "1@0"])
        #expect(state.heldCount == 2)
    }

    @Test("a revoked partition's messages not yet admitted are dropped, the others' are not")
    func forgetDropsUnadmitted() {
        let coordinator = makeCoordinator(maxInFlight: 100)
        let state = CommittableSourceState(logger: Logger(label: "test"))
        state.setUnadmitted(messages(p0, 0..<5) + messages(p1, 0..<2), readSince: state.forgetCount, coordinator: coordinator)
        var chunk: [CommittableMessage] = []
        var cached: PartitionLedger?
        #expect(state.admitNext(into: &chunk, limit: 2, coordinator: coordinator, cached: &cached) == .admitted(2))
        state.forget([p0])
        #expect(admitAll(state, coordinator).admitted == ["1@0", "1@1"])
    }

    @Test("under group management a partition without a ledger is not owned; manually assigned ones get one on first use")
    func ledgersOnFirstUse() async {
        let manual = KafkaCommitCoordinator(maxInFlightPerPartition: 10, logger: Logger(label: "test")) { _ in }
        #expect(manual.ledger(for: p0).admit(0) == .registered)
        #expect(manual.ledger(for: p0).outstanding == 1)

        let managed = makeCoordinator(maxInFlight: 10)
        #expect(managed.ledger(for: p0).admit(0) == .registered)
        await managed.revoke([p0], wait: .zero)
        // A message of p0 read before the revoke: refused, not registered in a ledger of its own.
        #expect(managed.ledger(for: p0).admit(1) == .notOwned)
        #expect(!managed.isActivelyOwned(p0))
        #expect(managed.ledger(for: KafkaTopicPartition(topic: "t", partition: 7)).admit(0) == .notOwned)
        #expect(managed.ledger(for: p1).admit(0) == .registered)
    }

    @Test("a batch read while its partition was revoked loses that partition's messages, unless it is owned again")
    func batchReadAcrossARevoke() async {
        let coordinator = makeCoordinator(maxInFlight: 100)
        let state = CommittableSourceState(logger: Logger(label: "test"))
        // p0 is revoked while the batch is being read: its messages in the batch are from before the revoke.
        var readSince = state.forgetCount
        state.forget([p0])
        await coordinator.revoke([p0], wait: .zero)
        state.setUnadmitted(messages(p0, 0..<3) + messages(p1, 0..<1), readSince: readSince, coordinator: coordinator)
        #expect(admitAll(state, coordinator).admitted == ["1@0"])
        // p0 is revoked and assigned again while the batch is being read: its messages are the new assignment's.
        readSince = state.forgetCount
        state.forget([p0])
        await coordinator.revoke([p0], wait: .zero)
        coordinator.assigned([p0])
        state.setUnadmitted(messages(p0, 0..<2), readSince: readSince, coordinator: coordinator)
        #expect(admitAll(state, coordinator).admitted == ["0@0", "0@1"])
    }
}
