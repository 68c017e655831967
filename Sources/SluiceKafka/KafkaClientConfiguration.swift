/// Settings every Kafka client (producer, consumer, admin) shares.
///
/// Typed settings cover the common options; ``properties`` passes any librdkafka property through unchanged
/// (see librdkafka's CONFIGURATION.md). A typed setting wins over the same key in ``properties``.
public struct KafkaClientConfiguration: Sendable {
    /// Brokers to bootstrap from, as `host:port`. Default: none (required).
    public var bootstrapServers: [String]
    /// The client id brokers see in logs and quotas. Default: `sluice`.
    public var clientID: String = "sluice"
    /// How long a metadata, admin or query call may take before it fails with ``KafkaError/Code/timedOut``.
    /// Default: 10 seconds.
    public var requestTimeout: Duration = .seconds(10)
    /// TLS and SASL settings. Default: plaintext, no authentication.
    public var security: KafkaSecurity = .plaintext
    /// Debug contexts for librdkafka's own logs (`broker`, `cgrp`, `topic`, `msg`, `all`...). Default: none.
    public var debugContexts: [String] = []
    /// Raw librdkafka properties: they override the typed settings (except the consumer's offset-commit
    /// settings, which at-least-once delivery depends on).
    /// An unknown name or an invalid value fails client creation with librdkafka's message naming the property.
    public var properties: [String: String] = [:]

    /// Creates client settings for the given bootstrap servers.
    public init(bootstrapServers: [String]) {
        self.bootstrapServers = bootstrapServers
    }

    /// The raw properties again, to be applied after the typed settings of a producer or consumer so that they
    /// win (librdkafka keeps the last value set), except `protected` ones.
    func overridingProperties(except protected: Set<String>) -> [(String, String)] {
        properties.sorted { $0.key < $1.key }.filter { !protected.contains($0.key) }.map { ($0.key, $0.value) }
    }

    /// The librdkafka properties these settings stand for.
    func librdkafkaProperties() -> [(String, String)] {
        var result = properties.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        result.append(("bootstrap.servers", bootstrapServers.joined(separator: ",")))
        result.append(("client.id", clientID))
        result.append(contentsOf: security.librdkafkaProperties())
        if !debugContexts.isEmpty { result.append(("debug", debugContexts.joined(separator: ","))) }
        return result
    }
}

/// How clients authenticate and encrypt: passed to librdkafka as `security.protocol`, `ssl.*` and `sasl.*`.
public struct KafkaSecurity: Sendable {
    /// `plaintext`, `ssl`, `sasl_plaintext` or `sasl_ssl`.
    public var securityProtocol: String
    /// SASL mechanism (`PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`), when SASL is used.
    public var saslMechanism: String?
    /// SASL user name.
    public var saslUsername: String?
    /// SASL password. Never logged.
    public var saslPassword: String?
    /// Path of the CA certificate file to verify brokers with.
    public var caLocation: String?
    /// Path of the client certificate, for mutual TLS.
    public var certificateLocation: String?
    /// Path of the client private key, for mutual TLS.
    public var keyLocation: String?
    /// Password of the client private key. Never logged.
    public var keyPassword: String?

    /// No TLS, no authentication.
    public static let plaintext = KafkaSecurity(securityProtocol: "plaintext")

    public init(
        securityProtocol: String, saslMechanism: String? = nil, saslUsername: String? = nil,
        saslPassword: String? = nil, caLocation: String? = nil, certificateLocation: String? = nil,
        keyLocation: String? = nil, keyPassword: String? = nil
    ) {
        self.securityProtocol = securityProtocol
        self.saslMechanism = saslMechanism
        self.saslUsername = saslUsername
        self.saslPassword = saslPassword
        self.caLocation = caLocation
        self.certificateLocation = certificateLocation
        self.keyLocation = keyLocation
        self.keyPassword = keyPassword
    }

    func librdkafkaProperties() -> [(String, String)] {
        var result = [("security.protocol", securityProtocol)]
        if let saslMechanism { result.append(("sasl.mechanism", saslMechanism)) }
        if let saslUsername { result.append(("sasl.username", saslUsername)) }
        if let saslPassword { result.append(("sasl.password", saslPassword)) }
        if let caLocation { result.append(("ssl.ca.location", caLocation)) }
        if let certificateLocation { result.append(("ssl.certificate.location", certificateLocation)) }
        if let keyLocation { result.append(("ssl.key.location", keyLocation)) }
        if let keyPassword { result.append(("ssl.key.password", keyPassword)) }
        return result
    }
}

/// librdkafka property names whose values are secrets: never logged or echoed in errors.
enum KafkaSecretProperties {
    static func isSecret(_ name: String) -> Bool {
        name.hasPrefix("sasl.") && name != "sasl.mechanism" && name != "sasl.mechanisms"
            || name.hasPrefix("ssl.key.") || name.contains("password") || name.contains("secret")
            || name.contains("token")
    }
}

extension Duration {
    /// Whole milliseconds, clamped to `Int32`'s range (what librdkafka's timeouts take).
    var milliseconds: Int32 {
        let (seconds, attoseconds) = components
        let ms = seconds * 1000 + attoseconds / 1_000_000_000_000_000
        return Int32(clamping: ms)
    }
}
