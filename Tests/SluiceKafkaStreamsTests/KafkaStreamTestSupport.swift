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

/// The envelope for a message of ``produceSequenced(topic:keys:perKey:valuePadding:)``, by its sequence number modulo
/// 3: 0 → one message, 1 → two messages (values suffixed ":a" and ":b"), 2 → nothing (the offset is passed through).
func sequenceEnvelope(_ message: CommittableMessage, output: String) -> ProducerEnvelope<CommittableOffset> {
    let value = message.message.valueString!
    switch Int(value.split(separator: ":")[1])! % 3 {
    case 0:
        return .single(KafkaProducerMessage(topic: output, key: message.message.key, value: Array(value.utf8)), message.committableOffset)
    case 1:
        return .multi(
            ["a", "b"].map { KafkaProducerMessage(topic: output, key: message.message.key, value: Array("\(value):\($0)".utf8)) },
            message.committableOffset)
    default:
        return .passThrough(message.committableOffset)
    }
}

/// The values ``sequenceEnvelope(_:output:)`` produces for `keys` keys of `perKey` messages each.
func sequenceEnvelopeValues(keys: Int, perKey: Int) -> [String] {
    var values: [String] = []
    for key in 0..<keys {
        for sequence in 0..<perKey {
            switch sequence % 3 {
            case 0: values.append("key-\(key):\(sequence)")
            case 1: values += ["key-\(key):\(sequence):a", "key-\(key):\(sequence):b"]
            default: break
            }
        }
    }
    return values
}

/// Reads values from `topic` from its start (a fresh group) until `count` were read and `done` holds for them.
func readValues(of topic: String, count: Int, until done: ([String]) -> Bool = { _ in true }) async throws -> [String] {
    var configuration = try await makeTestConsumerConfiguration()
    configuration.autoOffsetReset = .earliest
    let consumer = try KafkaConsumer(configuration: configuration)
    try consumer.subscribe(topics: [topic])
    var received: [String] = []
    for try await message in consumer.messages {
        received.append(message.valueString!)
        if received.count >= count && done(received) { break }
    }
    await consumer.close()
    return received
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
