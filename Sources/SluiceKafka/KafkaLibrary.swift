internal import CRDKafka

/// Facts about the librdkafka library loaded into this process.
public enum KafkaLibrary {
    /// The oldest librdkafka Sluice supports: 2.0.x mis-skips KIP-482 tagged fields and fails the
    /// ApiVersions handshake with modern brokers.
    public static let minimumVersion = "2.1.0"
    static let minimumVersionNumber: Int32 = 0x0201_00ff

    /// The version of the librdkafka actually loaded, for example `2.8.0`.
    public static var loadedVersion: String { String(cString: rd_kafka_version_str()) }

    /// Fails unless the loaded librdkafka is at least ``minimumVersion``.
    ///
    /// - Throws: ``KafkaError`` with code ``KafkaError/Code/unsupportedLibrary`` naming the version found and
    ///   how to get a newer one.
    public static func requireSupportedVersion() throws {
        guard rd_kafka_version() >= minimumVersionNumber else {
            throw KafkaError(
                code: .unsupportedLibrary,
                message: "librdkafka \(loadedVersion) is loaded, but Sluice needs \(minimumVersion) or newer "
                    + "(older versions fail the handshake with modern brokers). Run scripts/setup, which builds "
                    + "librdkafka 2.8.0 into ~/.cache/sluice, then rebuild so the binary's rpath points there.")
        }
    }
}
