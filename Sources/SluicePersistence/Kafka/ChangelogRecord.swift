/// The key of a changelog record: which entity it belongs to and what it holds.
///
/// Text, `<entity type>|<entity id>/<suffix>` (the persistence id's description, then a suffix), so the topic is
/// readable with any Kafka tool. The suffix is the event's sequence number, `snapshot` or `offsets`. Only `%` and
/// `|` are escaped, in the entity type (as `%25`, `%7C`), so the first `|` ends the type and the last `/` starts
/// the suffix, whatever the entity id contains.
///
/// One key per event means compaction never drops an event (no later record has its key) until the journal itself
/// writes a tombstone for it; the snapshot and offsets keys keep only their latest record.
struct ChangelogKey: Hashable, Sendable {
    enum Suffix: Hashable, Sendable {
        case event(Int64)
        case snapshot
        case offsets
    }

    var persistenceID: PersistenceID
    var suffix: Suffix

    var bytes: [UInt8] {
        let type = persistenceID.entityType.utf8
        let id = persistenceID.entityID.utf8
        var bytes: [UInt8] = []
        bytes.reserveCapacity(type.count + id.count + 24)
        for byte in type {
            switch byte {
            case UInt8(ascii: "%"): bytes.append(contentsOf: "%25".utf8)
            case UInt8(ascii: "|"): bytes.append(contentsOf: "%7C".utf8)
            default: bytes.append(byte)
            }
        }
        bytes.append(UInt8(ascii: "|"))
        bytes.append(contentsOf: id)
        bytes.append(UInt8(ascii: "/"))
        switch suffix {
        case .event(let sequenceNumber): Self.appendDecimal(sequenceNumber, to: &bytes)
        case .snapshot: bytes.append(contentsOf: "snapshot".utf8)
        case .offsets: bytes.append(contentsOf: "offsets".utf8)
        }
        return bytes
    }

    /// Appends `value`'s decimal digits (what `String(value)` spells), without making the string.
    private static func appendDecimal(_ value: Int64, to bytes: inout [UInt8]) {
        if value < 0 { bytes.append(UInt8(ascii: "-")) }
        var magnitude = value.magnitude
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes: room for UInt64's 20 digits
        withUnsafeMutableBytes(of: &digits) { buffer in
            var start = buffer.count
            repeat {
                start -= 1
                buffer[start] = UInt8(ascii: "0") + UInt8(magnitude % 10)
                magnitude /= 10
            } while magnitude > 0
            bytes.append(contentsOf: buffer[start...])
        }
    }

    /// Parses a key; `nil` when it is not a changelog key.
    init?(bytes: [UInt8]) {
        guard let text = String(validating: bytes, as: UTF8.self), let bar = text.firstIndex(of: "|"),
            let slash = text.lastIndex(of: "/"), bar < slash
        else { return nil }
        let escapedType = text[..<bar]
        guard let type = Self.unescape(escapedType) else { return nil }
        let entityID = String(text[text.index(after: bar)..<slash])
        switch text[text.index(after: slash)...] {
        case "snapshot": suffix = .snapshot
        case "offsets": suffix = .offsets
        case let digits:
            guard let sequenceNumber = Int64(digits), sequenceNumber >= 1 else { return nil }
            suffix = .event(sequenceNumber)
        }
        persistenceID = PersistenceID(entityType: type, entityID: entityID)
    }

    init(_ persistenceID: PersistenceID, _ suffix: Suffix) {
        self.persistenceID = persistenceID
        self.suffix = suffix
    }

    private static func unescape(_ text: Substring) -> String? {
        var result = ""
        var index = text.startIndex
        while index < text.endIndex {
            if text[index] == "%" {
                let end = text.index(index, offsetBy: 3, limitedBy: text.endIndex) ?? text.endIndex
                switch text[index..<end] {
                case "%25": result += "%"
                case "%7C": result += "|"
                default: return nil
                }
                index = end
            } else {
                result.append(text[index])
                index = text.index(after: index)
            }
        }
        return result
    }
}

/// The value of a changelog record.
///
/// Binary: the magic `SLCL`, a format version (1), a kind byte, the fields (integers little-endian, strings and
/// byte arrays with a 32-bit length), then a 64-bit FNV-1a checksum of the record's key and every value byte
/// before it. A value that is truncated, has another magic or version, or whose checksum does not match (bit rot, a
/// record produced at the wrong key) does not decode; a null value is a tombstone.
enum ChangelogValue: Sendable, Equatable {
    /// One event, with the append it belongs to.
    case event(EventRecord)
    /// The entity's latest snapshot, with every input offset applied up to it.
    case snapshot(SnapshotRecord)
    /// The entity's applied input offsets (written by appends without events).
    case offsets([InputOffset])

    /// One event of an append. Every event of an append carries the append's id and range, and the id of the
    /// append before it, so a restore accepts an append only when all its events are there and it continues the
    /// entity's history (see `ChangelogStore`).
    struct EventRecord: Sendable, Equatable {
        var appendID: UInt64
        var previousAppendID: UInt64
        var appendFirst: Int64
        var appendLast: Int64
        var event: JournalEvent
        /// The input offset of the append, on its last event only.
        var inputOffset: InputOffset?
    }

    struct SnapshotRecord: Sendable, Equatable {
        var snapshot: JournalSnapshot
        var inputOffsets: [InputOffset]
    }

    private static let magic: [UInt8] = Array("SLCL".utf8)
    private static let formatVersion: UInt8 = 1

    func encoded(key: [UInt8]) -> [UInt8] {
        var writer = ByteWriter(capacity: encodedCapacity)
        writer.bytes(Self.magic)
        writer.byte(Self.formatVersion)
        switch self {
        case .event(let record):
            writer.byte(1)
            writer.uint64(record.appendID)
            writer.uint64(record.previousAppendID)
            writer.int64(record.appendFirst)
            writer.int64(record.appendLast)
            writer.int64(record.event.sequenceNumber)
            writer.int64(Int64(record.event.version))
            writer.string(record.event.manifest)
            writer.lengthPrefixed(record.event.payload)
            if let offset = record.inputOffset {
                writer.uint32(1)
                writer.offset(offset)
            } else {
                writer.uint32(0)
            }
        case .snapshot(let record):
            writer.byte(2)
            writer.int64(record.snapshot.sequenceNumber)
            writer.int64(Int64(record.snapshot.version))
            writer.string(record.snapshot.manifest)
            writer.lengthPrefixed(record.snapshot.payload)
            writer.offsets(record.inputOffsets)
        case .offsets(let offsets):
            writer.byte(3)
            writer.offsets(offsets)
        }
        writer.uint64(Self.checksum(key: key, value: writer.buffer[...]))
        return writer.buffer
    }

    /// Room for the encoded value (exact, up to the input offsets' topic names), so encoding never reallocates.
    private var encodedCapacity: Int {
        let fixed = 4 + 1 + 1 + 8  // magic, format version, kind, checksum
        switch self {
        case .event(let record):
            return fixed + 6 * 8 + 4 + record.event.manifest.utf8.count + 4 + record.event.payload.count + 4 + 64
        case .snapshot(let record):
            return fixed + 2 * 8 + 4 + record.snapshot.manifest.utf8.count + 4 + record.snapshot.payload.count + 4
                + record.inputOffsets.count * 64
        case .offsets(let offsets):
            return fixed + 4 + offsets.count * 64
        }
    }

    /// Decodes a value; throws a description of what is wrong with it.
    init(decoding value: [UInt8], key: [UInt8]) throws(ChangelogDecodingError) {
        guard value.count >= Self.magic.count + 2 + 8 else {
            throw ChangelogDecodingError(
                "the record's value is too short (\(value.count) bytes) to be a changelog value")
        }
        let body = value[..<(value.count - 8)]
        var checksumReader = ByteReader(value[(value.count - 8)...])
        guard try checksumReader.uint64() == Self.checksum(key: key, value: body) else {
            throw ChangelogDecodingError(
                "the record's checksum does not match its key and value (damaged or misplaced)")
        }
        var reader = ByteReader(body)
        guard try reader.bytes(Self.magic.count) == Self.magic[...] else {
            throw ChangelogDecodingError("the record's value is not a Sluice changelog value (no SLCL magic)")
        }
        let version = try reader.byte()
        guard version == Self.formatVersion else {
            throw ChangelogDecodingError(
                "the record was written in changelog format \(version), this Sluice reads format \(Self.formatVersion)")
        }
        switch try reader.byte() {
        case 1:
            let appendID = try reader.uint64()
            let previousAppendID = try reader.uint64()
            let appendFirst = try reader.int64()
            let appendLast = try reader.int64()
            let sequenceNumber = try reader.int64()
            let eventVersion = try reader.int64()
            let manifest = try reader.string()
            let payload = try reader.lengthPrefixed()
            let offsets = try reader.offsets()
            self = .event(
                EventRecord(
                    appendID: appendID, previousAppendID: previousAppendID, appendFirst: appendFirst,
                    appendLast: appendLast,
                    event: JournalEvent(
                        sequenceNumber: sequenceNumber, manifest: manifest, version: Int(eventVersion),
                        payload: payload),
                    inputOffset: offsets.first))
        case 2:
            let sequenceNumber = try reader.int64()
            let snapshotVersion = try reader.int64()
            let manifest = try reader.string()
            let payload = try reader.lengthPrefixed()
            let offsets = try reader.offsets()
            self = .snapshot(
                SnapshotRecord(
                    snapshot: JournalSnapshot(
                        sequenceNumber: sequenceNumber, manifest: manifest, version: Int(snapshotVersion),
                        payload: payload),
                    inputOffsets: offsets))
        case 3:
            self = .offsets(try reader.offsets())
        case let kind:
            throw ChangelogDecodingError("unknown changelog record kind \(kind)")
        }
        guard reader.isAtEnd else { throw ChangelogDecodingError("the record's value has trailing bytes") }
    }

    /// 64-bit FNV-1a over the key, a separator and the value (the checksum itself excluded).
    static func checksum(key: [UInt8], value: ArraySlice<UInt8>) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in key {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01b3
        }
        hash ^= 0xff
        hash &*= 0x0000_0100_0000_01b3
        for byte in value {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01b3
        }
        return hash
    }
}

/// Why a changelog value did not decode.
struct ChangelogDecodingError: Error, Sendable {
    var reason: String
    init(_ reason: String) { self.reason = reason }
}

private struct ByteWriter {
    var buffer: [UInt8] = []

    init(capacity: Int) { buffer.reserveCapacity(capacity) }

    mutating func byte(_ value: UInt8) { buffer.append(value) }
    mutating func bytes(_ value: [UInt8]) { buffer.append(contentsOf: value) }
    mutating func uint64(_ value: UInt64) {
        withUnsafeBytes(of: value.littleEndian) { buffer.append(contentsOf: $0) }
    }
    mutating func uint32(_ value: UInt32) {
        withUnsafeBytes(of: value.littleEndian) { buffer.append(contentsOf: $0) }
    }
    mutating func int64(_ value: Int64) { uint64(UInt64(bitPattern: value)) }
    mutating func lengthPrefixed(_ value: [UInt8]) {
        uint32(UInt32(value.count))
        bytes(value)
    }
    mutating func string(_ value: String) {
        uint32(UInt32(value.utf8.count))
        buffer.append(contentsOf: value.utf8)
    }
    mutating func offsets(_ offsets: [InputOffset]) {
        uint32(UInt32(offsets.count))
        for offset in offsets { self.offset(offset) }
    }
    mutating func offset(_ offset: InputOffset) {
        string(offset.topic)
        uint32(UInt32(bitPattern: offset.partition))
        int64(offset.offset)
    }
}

private struct ByteReader {
    let data: ArraySlice<UInt8>
    var position: Int

    init(_ data: ArraySlice<UInt8>) {
        self.data = data
        self.position = data.startIndex
    }

    var isAtEnd: Bool { position == data.endIndex }

    mutating func bytes(_ count: Int) throws(ChangelogDecodingError) -> ArraySlice<UInt8> {
        guard count >= 0, data.endIndex - position >= count else {
            throw ChangelogDecodingError("the record's value is truncated")
        }
        defer { position += count }
        return data[position..<(position + count)]
    }
    mutating func byte() throws(ChangelogDecodingError) -> UInt8 { try bytes(1).first! }
    mutating func uint64() throws(ChangelogDecodingError) -> UInt64 {
        try bytes(8).reversed().reduce(0) { $0 << 8 | UInt64($1) }
    }
    mutating func uint32() throws(ChangelogDecodingError) -> UInt32 {
        try bytes(4).reversed().reduce(0) { $0 << 8 | UInt32($1) }
    }
    mutating func int64() throws(ChangelogDecodingError) -> Int64 { Int64(bitPattern: try uint64()) }
    mutating func lengthPrefixed() throws(ChangelogDecodingError) -> [UInt8] {
        Array(try bytes(Int(try uint32())))
    }
    mutating func string() throws(ChangelogDecodingError) -> String {
        guard let text = String(validating: try lengthPrefixed(), as: UTF8.self) else {
            throw ChangelogDecodingError("the record holds a string that is not UTF-8")
        }
        return text
    }
    mutating func offsets() throws(ChangelogDecodingError) -> [InputOffset] {
        let count = try uint32()
        guard count <= 1_000_000 else { throw ChangelogDecodingError("implausible input offset count \(count)") }
        var offsets: [InputOffset] = []
        for _ in 0..<count {
            let topic = try string()
            let partition = Int32(bitPattern: try uint32())
            offsets.append(InputOffset(topic: topic, partition: partition, offset: try int64()))
        }
        return offsets
    }
}
