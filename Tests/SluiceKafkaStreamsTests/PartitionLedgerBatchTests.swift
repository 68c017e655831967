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

    @Test("a committable source admits a run of a partition's messages at once, and holds the rest back")
    func sourceAdmitsRuns() {
        let partition = KafkaTopicPartition(topic: "t", partition: 0)
        let ledger = PartitionLedger(partition, maxInFlight: 3) { _ in }
        let state = CommittableSourceState(logger: .init(label: "test"))
        let other = KafkaConsumerMessage(topic: "t", partition: 1, offset: 0, key: nil, value: nil)
        let messages = (Int64(0)..<5).map { KafkaConsumerMessage(topic: "t", partition: 0, offset: $0, key: nil, value: [1]) }
        // The partition's five messages, then the other partition's; reversed, as the source keeps them (the next
        // message last).
        var unadmitted = Array((messages + [other]).reversed())
        var chunk: [CommittableMessage] = []
        // Up to the in-flight limit of 3; stops before the partition's fourth message.
        #expect(state.admitRun(from: &unadmitted, into: &chunk, limit: 10, ledger: ledger) == 3)
        #expect(chunk.map(\.committableOffset.offset) == [0, 1, 2])
        #expect(unadmitted.last?.offset == 3)
        ledger.acknowledge(contentsOf: [0, 1])
        // A limit of 1; then the run ends at the other partition's message.
        #expect(state.admitRun(from: &unadmitted, into: &chunk, limit: 1, ledger: ledger) == 1)
        #expect(state.admitRun(from: &unadmitted, into: &chunk, limit: 10, ledger: ledger) == 1)
        #expect(chunk.map(\.committableOffset.offset) == [0, 1, 2, 3, 4])
        #expect(unadmitted.map(\.partition) == [1])
        #expect(state.admitRun(from: &unadmitted, into: &chunk, limit: 10, ledger: ledger) == 0)
        #expect(ledger.outstanding == 3)
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
