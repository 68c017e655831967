import Foundation
public import SluiceKafka

/// A name no other test (or earlier run against the same broker) uses.
public func uniqueTestName(_ prefix: String) -> String {
    "\(prefix)-\(UInt64.random(in: 0...UInt64.max) & 0xFFFF_FFFF_FFFF)"
}

/// Creates a fresh topic on the test broker and runs `body` with its name.
///
/// The topic is left in place: the test broker keeps topics in memory and lives for one test run, and deleting a
/// topic while other clients still cache its metadata has crashed librdkafka 2.8.0 against Tansu (a metadata
/// update comparing a topic name that was no longer there), which no test should depend on.
public func withTestTopic<T>(
    partitions: Int32 = 1, configs: [String: String] = [:], prefix: String = "test",
    _ body: (String) async throws -> T
) async throws -> T {
    let admin = try await makeTestAdmin()
    let topic = uniqueTestName(prefix)
    try await admin.createTopic(KafkaTopicSpecification(name: topic, partitions: partitions, configs: configs))
    return try await body(topic)
}

/// An admin client for the test broker.
public func makeTestAdmin() async throws -> KafkaAdminClient {
    try KafkaAdminClient(configuration: KafkaClientConfiguration(bootstrapServers: try await TestBroker.bootstrapServers()))
}

/// Producer settings for the test broker.
public func makeTestProducerConfiguration() async throws -> KafkaProducerConfiguration {
    var configuration = KafkaProducerConfiguration(bootstrapServers: try await TestBroker.bootstrapServers())
    configuration.linger = .milliseconds(1)
    return configuration
}

/// Consumer settings for the test broker: a fresh group id and a short session timeout (joins take ~3 s).
public func makeTestConsumerConfiguration(groupID: String = uniqueTestName("group")) async throws -> KafkaConsumerConfiguration {
    var configuration = KafkaConsumerConfiguration(bootstrapServers: try await TestBroker.bootstrapServers(), groupID: groupID)
    configuration.sessionTimeout = .seconds(6)
    configuration.client.properties["heartbeat.interval.ms"] = "500"
    return configuration
}
