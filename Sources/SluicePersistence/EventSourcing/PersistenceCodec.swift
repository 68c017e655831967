import Foundation

/// How events (or snapshots) of one type become bytes in a journal and back, across versions of their shape.
///
/// Each stored event carries its codec's ``manifest`` (a type tag) and ``version``. Decoding receives the stored
/// version, so a codec can read events written by older code:
///
/// - **Additive changes** (a new optional field, a new enum case) need no new version: `Codable` decodes a missing
///   optional as `nil`, and old events never contain the new case.
/// - **Incompatible changes** (a renamed or retyped field, a split case): raise `version`, keep the old shape as a
///   private `Decodable` type, and convert it in `olderVersions` (an "upcaster"):
///
/// ```swift
/// struct AddedV1: Decodable { let amount: Int }           // what version 1 wrote
/// enum CounterEvent: Codable { case added(by: Int, reason: String?) }   // version 2
///
/// let codec = PersistenceCodec<CounterEvent>.json(version: 2) { version, payload in
///     switch version {
///     case 1: .added(by: try PersistenceJSON.decode(AddedV1.self, from: payload).amount, reason: nil)
///     default: throw PersistenceCodecError.unsupportedVersion(version)
///     }
/// }
/// ```
///
/// JSON is the convenient default. It is written by Sluice's own encoder (`CompactJSONEncoder`), whose output
/// Foundation's `JSONDecoder` reads like `JSONEncoder`'s; Foundation's encoder cost about a fifth of the persistent
/// pipeline's throughput (`docs/benchmarks.md`). Encoding is still the costliest part of persisting a small event,
/// so entities that persist many of them can give a hand-written codec to ``init(manifest:version:encode:decode:)``.
///
/// Events of a version newer than the codec's are refused (the journal was written by newer code: roll forward),
/// and so are events whose manifest differs: both fail recovery with ``PersistenceError/Code/undecodableEvent``
/// naming the entity, journal and sequence number, instead of silently resetting state.
public struct PersistenceCodec<Value>: Sendable {
    /// The type tag stored with each value.
    public let manifest: String
    /// The current version of the value's shape; new values are written with it.
    public let version: Int
    private let encodeValue: @Sendable (Value) throws -> [UInt8]
    private let decodeValue: @Sendable (_ version: Int, _ payload: [UInt8]) throws -> Value

    /// A codec from explicit functions. `decode` receives the stored version (at most `version`).
    public init(
        manifest: String, version: Int, encode: @escaping @Sendable (Value) throws -> [UInt8],
        decode: @escaping @Sendable (_ version: Int, _ payload: [UInt8]) throws -> Value
    ) {
        self.manifest = manifest
        self.version = version
        self.encodeValue = encode
        self.decodeValue = decode
    }

    /// Encodes a value.
    public func encode(_ value: Value) throws -> [UInt8] { try encodeValue(value) }

    /// Decodes a stored value, checking its manifest and version first.
    public func decode(manifest storedManifest: String, version storedVersion: Int, payload: [UInt8]) throws -> Value {
        guard storedManifest == manifest else {
            throw PersistenceCodecError.unexpectedManifest(storedManifest, expected: manifest)
        }
        guard storedVersion <= version else {
            throw PersistenceCodecError.newerVersion(storedVersion, current: version)
        }
        return try decodeValue(storedVersion, payload)
    }
}

extension PersistenceCodec where Value: Codable & Sendable {
    /// JSON, with the type's name as manifest. Values of the current `version` decode as `Value`; older ones go to
    /// `olderVersions` (see the type's documentation), which by default refuses them.
    public static func json(
        manifest: String = String(describing: Value.self), version: Int = 1,
        olderVersions: (@Sendable (_ version: Int, _ payload: [UInt8]) throws -> Value)? = nil
    ) -> PersistenceCodec {
        // Writes what `JSONEncoder` with sorted keys writes, several times faster (see `CompactJSONEncoder`).
        let encoder = CompactJSONEncoder()
        return PersistenceCodec(
            manifest: manifest, version: version,
            encode: { value in try encoder.encode(value) },
            decode: { storedVersion, payload in
                if storedVersion == version { return try PersistenceJSON.decode(Value.self, from: payload) }
                guard let olderVersions else { throw PersistenceCodecError.unsupportedVersion(storedVersion) }
                return try olderVersions(storedVersion, payload)
            })
    }
}

/// JSON helpers for codecs.
public enum PersistenceJSON {
    /// Decodes JSON `payload` as `type` (for upcasters reading an older shape).
    public static func decode<T: Decodable>(_ type: T.Type, from payload: [UInt8]) throws -> T {
        try JSONDecoder().decode(type, from: Data(payload))
    }
}

/// Why a codec refused a stored value.
public enum PersistenceCodecError: Error, Sendable, CustomStringConvertible, Equatable {
    /// The stored value has another type tag.
    case unexpectedManifest(String, expected: String)
    /// The stored value was written with a newer version of the shape than this code knows.
    case newerVersion(Int, current: Int)
    /// The codec has no decoder for this older version.
    case unsupportedVersion(Int)

    public var description: String {
        switch self {
        case .unexpectedManifest(let stored, let expected):
            "the stored value's manifest is '\(stored)', this codec reads '\(expected)': give the codec the old "
                + "manifest, or decode both"
        case .newerVersion(let stored, let current):
            "the stored value has version \(stored), newer than this code's \(current): run the newer code"
        case .unsupportedVersion(let version):
            "no decoder for version \(version): add it to the codec's olderVersions"
        }
    }
}
