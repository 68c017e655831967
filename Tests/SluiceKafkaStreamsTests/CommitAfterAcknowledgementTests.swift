import SluiceKafka
@testable import SluiceKafkaStreams
import SluiceStreams
import SluiceTesting
import Synchronization
import Testing

@Suite("Commit only after acknowledgement, against the real broker", .serialized, .timeLimit(.minutes(3)))
struct CommitAfterAcknowledgementTests {
    @Test("out-of-order and missing acknowledgements: the committed offset never passes the lowest unacknowledged message")
    func committedNeverPassesUnacknowledged() async throws {
        try await withTestTopic(partitions: 2) { topic in
            let ends = try await produceSequenced(topic: topic, keys: 8, perKey: 50)
            #expect(ends.values.reduce(0, +) == 400)
            // Offset 30 of each partition is never acknowledged; everything else is, in random order.
            let withheld: Int64 = 30
            var committer = KafkaCommitterSettings()
            committer.maxBatch = 10
            committer.maxInterval = .milliseconds(50)
            let settings = try await testSourceSettings(topic: topic)
            let acknowledged = Mutex(0)
            let (control, completion) = try KafkaSource.committable(settings)
                .mapAsyncUnordered(parallelism: 16) { message -> CommittableMessage in
                    for _ in 0..<Int.random(in: 0...20) { await Task.yield() }
                    return message
                }
                .filter { $0.message.offset != withheld }
                .map { message -> CommittableOffset in
                    acknowledged.withLock { $0 += 1 }
                    return message.committableOffset
                }
                .toMat(KafkaCommitter.sink(committer), Keep.both).run()

            let partitions = (0..<2).map { KafkaTopicPartition(topic: topic, partition: $0) }
            // While everything else is acknowledged, the broker's committed offsets may reach the withheld
            // message but never pass it.
            try await Eventually.require(timeout: .seconds(60), "all other messages are acknowledged") {
                let committed = try await control.kafkaConsumer.committed(partitions)
                for position in committed { #expect(position.offset <= withheld, "committed past an unacknowledged message") }
                return acknowledged.withLock { $0 } == 398
            }
            try await Eventually.require("the committed offsets settle at the withheld message") {
                try await control.kafkaConsumer.committed(partitions).allSatisfy { $0.offset == withheld }
            }
            await control.abandon()
            _ = try? await completion.value()
        }
    }

    @Test("killed without draining: a new pipeline re-delivers every uncommitted message; duplicates stay within the commit window")
    func atLeastOnceAfterKill() async throws {
        try await withTestTopic(partitions: 3) { topic in
            let ends = try await produceSequenced(topic: topic, keys: 30, perKey: 100)
            let total = Int(ends.values.reduce(0, +))
            let groupID = uniqueTestName("group")
            var committer = KafkaCommitterSettings()
            committer.maxBatch = 50
            committer.maxInterval = .milliseconds(200)

            // First pipeline: processes about half, then is killed without draining or committing.
            let first = ProcessedRecorder()
            let firstSettings = try await testSourceSettings(topic: topic, groupID: groupID)
            let (firstControl, _) = try KafkaSource.committable(firstSettings)
                .throttle(elements: 2000, per: .seconds(1), maximumBurst: 100)
                .map { message -> CommittableOffset in
                    first.record(message.message)
                    return message.committableOffset
                }
                .toMat(KafkaCommitter.sink(committer), Keep.both).run()
            try await Eventually.require(timeout: .seconds(60), "the first pipeline processed half") { first.count >= total / 2 }
            await firstControl.abandon()
            let partitions = ends.keys.map { KafkaTopicPartition(topic: topic, partition: $0) }
            // The group's committed offsets, asked by a consumer that does not join the group.
            let inspector = try KafkaConsumer(configuration: try await makeTestConsumerConfiguration(groupID: groupID))
            let committed = Dictionary(
                uniqueKeysWithValues: try await inspector.committed(partitions).map { ($0.topicPartition, $0.offset) })
            await inspector.close()
            #expect(first.count < total, "the kill came before the end")

            // Second pipeline, same group: starts at the committed offsets and reads to the end.
            let second = ProcessedRecorder()
            let secondSettings = try await testSourceSettings(topic: topic, groupID: groupID)
            let (secondControl, secondCompletion) = try KafkaSource.committable(secondSettings)
                .map { message -> CommittableOffset in
                    second.record(message.message)
                    return message.committableOffset
                }
                .toMat(KafkaCommitter.sink(committer), Keep.both).run()
            try await Eventually.require(timeout: .seconds(60), "the second pipeline reaches the end of every partition") {
                let offsets = second.offsets
                return ends.allSatisfy { partition, end in
                    let topicPartition = KafkaTopicPartition(topic: topic, partition: partition)
                    // A partition the first pipeline finished and committed has nothing left to re-deliver.
                    return (committed[topicPartition] ?? 0) >= end || offsets[topicPartition]?.last == end - 1
                }
            }
            _ = try await secondControl.drainAndShutdown(secondCompletion, timeout: .seconds(30))

            // Nothing lost: every (key, sequence) was processed by one pipeline or the other.
            var seen = Set<String>()
            for (key, sequences) in first.sequencesByKey { for s in sequences { seen.insert("\(key):\(s)") } }
            for (key, sequences) in second.sequencesByKey { for s in sequences { seen.insert("\(key):\(s)") } }
            #expect(seen.count == total, "messages were lost")

            // Duplicates are exactly the first pipeline's messages at or after its last commit: the commit window.
            var duplicates = 0
            var firstAfterCommit = 0
            let secondOffsets = second.offsets.mapValues(Set.init)
            for (partition, offsets) in first.offsets {
                let committedOffset = committed[partition] ?? 0
                firstAfterCommit += offsets.filter { $0 >= committedOffset }.count
                duplicates += offsets.filter { secondOffsets[partition]?.contains($0) ?? false }.count
                // The second pipeline started exactly at the commit.
                if let firstOffsetOfSecond = second.offsets[partition]?.first {
                    #expect(firstOffsetOfSecond == max(committedOffset, 0))
                }
            }
            #expect(duplicates == firstAfterCommit)
            print("at-least-once: \(total) messages, first pipeline processed \(first.count), duplicates \(duplicates)")
        }
    }
}

@Suite("Partition ledgers")
struct PartitionLedgerTests {
    @Test("a revoked ledger refuses new offsets, ignores late acknowledgements and never commits")
    func revokedLedger() {
        let ledger = PartitionLedger(KafkaTopicPartition(topic: "t", partition: 0), maxInFlight: 10) { _ in }
        #expect(ledger.admit(5) == .registered)
        #expect(ledger.admit(6) == .registered)
        ledger.acknowledge(5)
        #expect(ledger.positionToCommit() == 6)
        ledger.beginRevoke()
        #expect(ledger.admit(7) == .notOwned)
        ledger.markRevoked()
        ledger.acknowledge(6)
        #expect(ledger.positionToCommit() == nil)
    }

    @Test("a partition at its in-flight limit is blocked until half of it is acknowledged")
    func inFlightLimit() {
        let unblocked = Mutex<[KafkaTopicPartition]>([])
        let partition = KafkaTopicPartition(topic: "t", partition: 0)
        let ledger = PartitionLedger(partition, maxInFlight: 4) { tp in unblocked.withLock { $0.append(tp) } }
        for offset in Int64(0)..<4 { #expect(ledger.admit(offset) == .registered) }
        #expect(ledger.admit(4) == .blocked)
        ledger.acknowledge(3)
        #expect(unblocked.withLock { $0 }.isEmpty)
        ledger.acknowledge(0)
        #expect(unblocked.withLock { $0 } == [partition])
        #expect(ledger.admit(4) == .registered)
    }
}

