import CRDKafka
@testable import SluiceKafka
import SluiceBenchBaseline
import Testing

/// The C baselines of `sluice-bench` claim Sluice's client defaults, property for property
/// (`Sources/SluiceBenchBaseline/baseline_defaults.c`). Their copies drifted once (a new consumer default went
/// unnoticed for sessions), so every librdkafka property is compared, defaults included.
@Suite("The benchmarks' C baselines use Sluice's client defaults")
struct BaselineDefaultsTests {
    @Test("the C producer's configuration equals KafkaProducerConfiguration's defaults")
    func producer() throws {
        let sluice = KafkaProducerConfiguration(bootstrapServers: ["localhost:9092"]).librdkafkaProperties()
        try expectSameConfiguration(sluice, baseline: sluice_baseline_conf(0, "localhost:9092", nil, nil, 0))
    }

    @Test("the C consumer's configuration equals KafkaConsumerConfiguration's defaults with the benchmarks' session timeout")
    func consumer() throws {
        var configuration = KafkaConsumerConfiguration(bootstrapServers: ["localhost:9092"], groupID: "g")
        configuration.sessionTimeout = .seconds(6)  // what the benchmarks set on both sides
        try expectSameConfiguration(
            configuration.librdkafkaProperties(), baseline: sluice_baseline_conf(1, "localhost:9092", "g", nil, 0))
    }

    /// Every property of librdkafka's configuration dump (the ones set and the defaults) is the same in a
    /// configuration made from `properties` and in `baseline`.
    private func expectSameConfiguration(
        _ properties: [(String, String)], baseline: UnsafeMutableRawPointer?,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let baselineConf = OpaquePointer(try #require(baseline, "the baseline's configuration was rejected"))
        defer { rd_kafka_conf_destroy(baselineConf) }
        let sluiceConf = try #require(rd_kafka_conf_new())
        defer { rd_kafka_conf_destroy(sluiceConf) }
        for (key, value) in properties {
            #expect(rd_kafka_conf_set(sluiceConf, key, value, nil, 0) == RD_KAFKA_CONF_OK, "\(key)=\(value)")
        }
        let expected = dump(sluiceConf)
        let actual = dump(baselineConf)
        #expect(expected.count > 50, "librdkafka dumps every property, defaults included")
        for key in Set(expected.keys).union(actual.keys).sorted() where expected[key] != actual[key] {
            Issue.record(
                "\(key): Sluice \(expected[key] ?? "unset"), the C baseline \(actual[key] ?? "unset")",
                sourceLocation: sourceLocation)
        }
    }

    /// The configuration's properties, and those of its default topic configuration (acks, partitioner, ...) as
    /// "topic." + name; the address of that topic configuration itself is left out.
    private func dump(_ conf: OpaquePointer) -> [String: String] {
        var result = pairs { rd_kafka_conf_dump(conf, &$0) }
        result["default_topic_conf"] = nil
        if let topicConf = rd_kafka_conf_get_default_topic_conf(conf) {
            for (key, value) in pairs({ rd_kafka_topic_conf_dump(topicConf, &$0) }) { result["topic." + key] = value }
        }
        return result
    }

    private func pairs(_ dump: (inout Int) -> UnsafeMutablePointer<UnsafePointer<CChar>?>?) -> [String: String] {
        var count = 0
        guard let pairs = dump(&count) else { return [:] }
        defer { rd_kafka_conf_dump_free(pairs, count) }
        var result: [String: String] = [:]
        for index in stride(from: 0, to: count - 1, by: 2) {
            result[String(cString: pairs[index]!)] = String(cString: pairs[index + 1]!)
        }
        return result
    }
}
