/// Computes the partition of a key the way producers do, so that a key's messages, its entity and its shard are
/// always in the same place.
public struct KafkaPartitioner: Hashable, Sendable, CustomStringConvertible {
    enum Kind: String {
        case consistentRandom = "consistent_random"
        case murmur2Random = "murmur2_random"
    }
    let kind: Kind

    /// librdkafka's default: CRC32 of the key; null and empty keys go to a random partition.
    public static let consistentRandom = KafkaPartitioner(kind: .consistentRandom)
    /// The Java client's default: murmur2 of the key (positive), modulo the partition count; null keys random.
    public static let murmur2Random = KafkaPartitioner(kind: .murmur2Random)

    /// The partitioner named like librdkafka's `partitioner` property (`consistent_random`, `murmur2_random`).
    public init?(librdkafkaName: String) {
        guard let kind = Kind(rawValue: librdkafkaName) else { return nil }
        self.kind = kind
    }

    init(kind: Kind) { self.kind = kind }

    /// The librdkafka property value for this partitioner.
    public var librdkafkaName: String { kind.rawValue }
    public var description: String { kind.rawValue }

    /// The partition of `key` among `partitionCount` partitions; `nil` when the key is null (or, for
    /// `consistentRandom`, empty): such messages go to a random partition.
    public func partition(forKey key: [UInt8]?, partitionCount: Int32) -> Int32? {
        guard let key else { return nil }
        return key.withUnsafeBufferPointer { partition(forKeyBytes: $0, partitionCount: partitionCount) }
    }

    /// The partition of a key that is the UTF-8 of `text` (an entity id, say), without copying it into an array.
    public func partition(forUTF8Key text: String, partitionCount: Int32) -> Int32? {
        var text = text
        return text.withUTF8 { partition(forKeyBytes: $0, partitionCount: partitionCount) }
    }

    private func partition(forKeyBytes key: UnsafeBufferPointer<UInt8>, partitionCount: Int32) -> Int32? {
        guard partitionCount > 0 else { return nil }
        switch kind {
        case .consistentRandom:
            guard !key.isEmpty else { return nil }
            return Int32(truncatingIfNeeded: CRC32.checksum(key) % UInt32(partitionCount))
        case .murmur2Random:
            return Int32((Murmur2.hash(key) & 0x7fff_ffff) % UInt32(partitionCount))
        }
    }
}

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), as librdkafka's `rd_crc32`.
enum CRC32 {
    static let table: [UInt32] = (0..<256).map { index in
        var value = UInt32(index)
        for _ in 0..<8 { value = value & 1 == 1 ? (value >> 1) ^ 0xEDB8_8320 : value >> 1 }
        return value
    }

    static func checksum(_ bytes: UnsafeBufferPointer<UInt8>) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes { crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }
}

/// Kafka's murmur2 (seed 0x9747b28c), as the Java client's `Utils.murmur2` and librdkafka's `rd_murmur2`.
enum Murmur2 {
    static func hash(_ data: UnsafeBufferPointer<UInt8>) -> UInt32 {
        let seed: UInt32 = 0x9747_b28c
        let m: UInt32 = 0x5bd1_e995
        let r: UInt32 = 24
        let length = data.count
        var h = seed ^ UInt32(truncatingIfNeeded: length)
        let blocks = length / 4
        for block in 0..<blocks {
            let i = block * 4
            var k = UInt32(data[i]) | UInt32(data[i + 1]) << 8 | UInt32(data[i + 2]) << 16 | UInt32(data[i + 3]) << 24
            k = k &* m
            k ^= k >> r
            k = k &* m
            h = h &* m
            h ^= k
        }
        let tail = blocks * 4
        switch length & 3 {
        case 3:
            h ^= UInt32(data[tail + 2]) << 16
            h ^= UInt32(data[tail + 1]) << 8
            h ^= UInt32(data[tail])
            h = h &* m
        case 2:
            h ^= UInt32(data[tail + 1]) << 8
            h ^= UInt32(data[tail])
            h = h &* m
        case 1:
            h ^= UInt32(data[tail])
            h = h &* m
        default:
            break
        }
        h ^= h >> 13
        h = h &* m
        h ^= h >> 15
        return h
    }
}
