import SluiceKafka
import SluiceTesting
import Testing

@Suite("Bad input gives clear, typed errors and never hangs", .timeLimit(.minutes(1)))
struct BadInputTests {
    @Test("an unknown property is refused at creation, naming the property")
    func unknownProperty() throws {
        var configuration = KafkaProducerConfiguration(bootstrapServers: ["127.0.0.1:1"])
        configuration.client.properties["linger.mss"] = "5"
        let error = try #require(throws: KafkaError.self) { try KafkaProducer(configuration: configuration) }
        #expect(error.code == .invalidConfiguration)
        #expect(error.message.contains("linger.mss"))
        #expect(error.message.contains("unknown"))
    }

    @Test("an invalid property value is refused at creation, naming the property and librdkafka's reason")
    func invalidValue() throws {
        var configuration = KafkaConsumerConfiguration(bootstrapServers: ["127.0.0.1:1"], groupID: "g")
        configuration.client.properties["fetch.wait.max.ms"] = "soon"
        let error = try #require(throws: KafkaError.self) { try KafkaConsumer(configuration: configuration) }
        #expect(error.code == .invalidConfiguration)
        #expect(error.message.contains("fetch.wait.max.ms"))
        #expect(error.message.contains("soon"))
    }

    @Test("a secret's value never appears in a configuration error")
    func secretsAreRedacted() throws {
        var configuration = KafkaClientConfiguration(bootstrapServers: ["127.0.0.1:1"])
        configuration.properties["ssl.key.password"] = "hunter2"
        configuration.properties["sasl.oauthbearer.method"] = "hunter2"
        let error = try #require(throws: KafkaError.self) { try KafkaAdminClient(configuration: configuration) }
        #expect(!error.description.contains("hunter2"))
    }

    @Test("an unreachable broker gives a timeout error within the configured time")
    func unreachableBroker() async throws {
        let clock = ContinuousClock()
        var producerConfiguration = KafkaProducerConfiguration(bootstrapServers: ["127.0.0.1:1"])
        producerConfiguration.messageTimeout = .seconds(2)
        let producer = try KafkaProducer(configuration: producerConfiguration)
        let start = clock.now
        let error = try await #require(throws: KafkaError.self) {
            try await producer.send(KafkaProducerMessage(topic: "anything", key: "k", value: "v"))
        }
        #expect(error.code == .delivery)
        #expect(error.librdkafkaCode == .messageTimedOut)
        #expect(error.isRetriable)
        #expect(clock.now - start < .seconds(10))
        try await producer.close(timeout: .seconds(1))

        var adminConfiguration = KafkaClientConfiguration(bootstrapServers: ["127.0.0.1:1"])
        adminConfiguration.requestTimeout = .seconds(2)
        let admin = try KafkaAdminClient(configuration: adminConfiguration)
        let adminError = try await #require(throws: KafkaError.self) { try await admin.describeCluster() }
        #expect(adminError.code == .timedOut, "\(adminError)")
    }

    @Test("producing to a missing topic with auto-creation off fails with a clear error")
    func missingTopic() async throws {
        var configuration = try await makeTestProducerConfiguration()
        configuration.allowsAutoCreateTopics = false
        configuration.unknownTopicTimeout = .seconds(2)
        configuration.messageTimeout = .seconds(20)
        let producer = try KafkaProducer(configuration: configuration)
        let topic = uniqueTestName("missing")
        let error = try await #require(throws: KafkaError.self) {
            try await producer.send(KafkaProducerMessage(topic: topic, key: "k", value: "v"))
        }
        #expect(error.code == .delivery)
        #expect(error.message.contains(topic))
        #expect(error.message.contains("does not exist"))
        try await producer.close()
    }

    @Test("the loaded librdkafka is the one built for Sluice, not Debian's 2.0.2")
    func librdkafkaVersion() throws {
        try KafkaLibrary.requireSupportedVersion()
        let parts = KafkaLibrary.loadedVersion.split(separator: ".").compactMap { Int($0) }
        #expect(parts.count >= 2)
        #expect(parts[0] > 2 || (parts[0] == 2 && parts[1] >= 1))
    }

    @Test("operations on a closed client fail with a typed error")
    func closedClient() async throws {
        let producer = try KafkaProducer(configuration: try await makeTestProducerConfiguration())
        try await producer.close()
        let error = try await #require(throws: KafkaError.self) {
            try await producer.send(KafkaProducerMessage(topic: "t", key: "k", value: "v"))
        }
        #expect(error.code == .closed)

        let consumer = try KafkaConsumer(configuration: try await makeTestConsumerConfiguration())
        await consumer.close()
        #expect(throws: KafkaError.self) { try consumer.subscribe(topics: ["t"]) }
        var iterator = consumer.messages.makeAsyncIterator()
        #expect(try await iterator.next() == nil)
    }
}

import Logging

@Suite("librdkafka's logs and errors reach swift-log", .timeLimit(.minutes(1)))
struct LoggingTests {
    @Test("a refused connection is logged at error level with librdkafka's facility, and reported as a typed error")
    func connectionFailureIsLogged() async throws {
        let store = RecordingLogHandler.Store()
        let producer = try KafkaProducer(
            configuration: KafkaProducerConfiguration(bootstrapServers: ["127.0.0.1:1"]),
            logger: RecordingLogHandler.logger(label: "test", store: store))
        try await Eventually.require("librdkafka's connection failure is logged") {
            store.all.contains { $0.level == .error && $0.metadata["librdkafka.facility"] == "FAIL" }
        }
        try await Eventually.require("the error callback reports a typed connection error") {
            store.all.contains { $0.level == .warning && $0.message.contains("KafkaError.connection") }
        }
        #expect(store.all.allSatisfy { $0.metadata["kafka.client"] == "sluice" })
        try await producer.close(timeout: .milliseconds(100))
    }
}
