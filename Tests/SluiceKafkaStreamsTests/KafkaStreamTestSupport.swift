import SluiceKafka
import SluiceKafkaStreams
import SluiceStreams
import SluiceTesting
import Synchronization

/// Produces `perKey` messages for each of `keys` keys, values `"<key>:<sequence>"`, and returns each partition's
/// end offset (the offset after its last message).
func produceSequenced(topic: String, keys: Int, perKey: Int, valuePadding: Int = 0) async throws -> [Int32: Int64] {
    let producer = try KafkaProducer(configuration: try await makeTestProducerConfiguration())
    let ends = Mutex<[Int32: Int64]>([:])
    let failures = Mutex(0)
    let padding = String(repeating: "x", count: valuePadding)
    for sequence in 0..<perKey {
        for key in 0..<keys {
            try await producer.send(KafkaProducerMessage(topic: topic, key: "key-\(key)", value: "key-\(key):\(sequence)\(padding)")) { result in
                switch result {
                case .success(let report): ends.withLock { $0[report.partition] = max($0[report.partition] ?? 0, report.offset + 1) }
                case .failure: failures.withLock { $0 += 1 }
                }
            }
        }
    }
    try await producer.close()
    precondition(failures.withLock { $0 } == 0, "test messages failed to produce")
    return ends.withLock { $0 }
}

/// Source settings for the test broker with a fresh group (unless given) and a short session timeout.
func testSourceSettings(topic: String, groupID: String = uniqueTestName("group")) async throws -> KafkaSourceSettings {
    var settings = KafkaSourceSettings(consumer: try await makeTestConsumerConfiguration(groupID: groupID), subscription: .topics([topic]))
    settings.revokeWait = .seconds(20)
    return settings
}

/// Records what a pipeline processed: per key, the sequence numbers in processing order; per partition, offsets.
final class ProcessedRecorder: Sendable {
    private struct State {
        var sequencesByKey: [String: [Int]] = [:]
        var offsets: [KafkaTopicPartition: [Int64]] = [:]
        var count = 0
    }
    private let state = Mutex(State())

    func record(_ message: KafkaConsumerMessage) {
        let parts = (message.valueString ?? "").split(separator: ":")
        let key = String(parts[0])
        let sequence = Int(parts[1].prefix { $0.isNumber })!
        state.withLock { state in
            state.sequencesByKey[key, default: []].append(sequence)
            state.offsets[message.topicPartition, default: []].append(message.offset)
            state.count += 1
        }
    }

    var count: Int { state.withLock { $0.count } }
    var sequencesByKey: [String: [Int]] { state.withLock { $0.sequencesByKey } }
    var offsets: [KafkaTopicPartition: [Int64]] { state.withLock { $0.offsets } }
}

/// The resident set size of this process, in bytes (from /proc/self/statm).
func residentMemoryBytes() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
    let fields = text.split(separator: " ")
    return (Int(fields.dropFirst().first ?? "0") ?? 0) * 4096
}

import Foundation
