internal import CRDKafka
import Logging

/// Builds an `rd_kafka_conf_t` from property pairs, failing on the first property librdkafka rejects.
enum RDKafkaConfig {
    /// - Returns: a new configuration owned by the caller (pass it to `rd_kafka_new`, or destroy it).
    static func make(_ properties: [(String, String)]) throws -> OpaquePointer {
        let conf = rd_kafka_conf_new()!
        var errorBuffer = [CChar](repeating: 0, count: 512)
        for (name, value) in properties {
            let result = rd_kafka_conf_set(conf, name, value, &errorBuffer, errorBuffer.count)
            guard result == RD_KAFKA_CONF_OK else {
                rd_kafka_conf_destroy(conf)
                let reason = String(decoding: errorBuffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                let shownValue = KafkaSecretProperties.isSecret(name) ? "<redacted>" : "'\(value)'"
                let kind = result == RD_KAFKA_CONF_UNKNOWN ? "unknown librdkafka property" : "invalid value \(shownValue) for"
                throw KafkaError(
                    code: .invalidConfiguration,
                    message: "\(kind) '\(name)': \(reason) (see librdkafka's CONFIGURATION.md for valid properties)")
            }
        }
        return conf
    }
}
