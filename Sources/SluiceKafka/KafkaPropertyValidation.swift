internal import CRDKafka

/// Checks librdkafka property names and values offline, the way client creation will (no broker is contacted):
/// for configuration validators that must report every problem before anything connects.
public enum KafkaPropertyValidation {
    /// - Returns: librdkafka's complaint about `name: value` (unknown property or invalid value), or `nil` when
    ///   librdkafka accepts it. Secret values are never echoed.
    public static func problem(name: String, value: String) -> String? {
        do {
            let conf = try RDKafkaConfig.make([(name, value)])
            rd_kafka_conf_destroy(conf)
            return nil
        } catch let error as KafkaError {
            return error.message
        } catch {
            return "\(error)"
        }
    }

    /// Whether values of the librdkafka property `name` are secrets (passwords, keys, tokens) that must never be
    /// printed.
    public static func isSecret(_ name: String) -> Bool { KafkaSecretProperties.isSecret(name) }
}
