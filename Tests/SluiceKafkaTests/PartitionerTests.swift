import CRDKafka
import SluiceKafka
import Testing

/// Sluice's partitioners agree with librdkafka's own (the ones producers use), key by key.
@Suite("Partitioners match librdkafka's")
struct PartitionerTests {
    @Test("consistent (CRC32) and murmur2 agree with librdkafka for 10,000 keys and several partition counts")
    func matchesLibrdkafka() throws {
        let conf = rd_kafka_conf_new()
        var errorBuffer = [CChar](repeating: 0, count: 256)
        let rk = try #require(rd_kafka_new(RD_KAFKA_PRODUCER, conf, &errorBuffer, errorBuffer.count))
        defer { rd_kafka_destroy(rk) }
        let topic = try #require(rd_kafka_topic_new(rk, "partitioner-test", nil))
        defer { rd_kafka_topic_destroy(topic) }
        var generator = SystemRandomNumberGenerator()
        for index in 0..<10_000 {
            let key: [UInt8] = index % 3 == 0
                ? Array("user-\(index)".utf8)
                : (0..<Int.random(in: 1...40, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            for partitions: Int32 in [1, 3, 4, 12, 100] {
                let crc = key.withUnsafeBytes { rd_kafka_msg_partitioner_consistent(topic, $0.baseAddress, $0.count, partitions, nil, nil) }
                let murmur = key.withUnsafeBytes { rd_kafka_msg_partitioner_murmur2(topic, $0.baseAddress, $0.count, partitions, nil, nil) }
                #expect(KafkaPartitioner.consistentRandom.partition(forKey: key, partitionCount: partitions) == crc)
                #expect(KafkaPartitioner.murmur2Random.partition(forKey: key, partitionCount: partitions) == murmur)
            }
        }
        #expect(KafkaPartitioner.consistentRandom.partition(forKey: nil, partitionCount: 4) == nil)
        #expect(KafkaPartitioner.consistentRandom.partition(forKey: [], partitionCount: 4) == nil)
        #expect(KafkaPartitioner(librdkafkaName: "murmur2_random") == .murmur2Random)
    }

    @Test("a text key is partitioned as its UTF-8 bytes")
    func textKeysAreTheirUTF8() {
        let texts = ["", "a", "user-42", "entity|with/odd%chars", "héllo wörld ✓ 🎉", String(repeating: "x", count: 333)]
        for text in texts {
            for partitioner in [KafkaPartitioner.consistentRandom, .murmur2Random] {
                for partitions: Int32 in [0, 1, 3, 12] {
                    #expect(
                        partitioner.partition(forUTF8Key: text, partitionCount: partitions)
                            == partitioner.partition(forKey: Array(text.utf8), partitionCount: partitions))
                }
            }
        }
    }
}
