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
