import ArgumentParser
import Foundation
import Logging
import SluiceKafka

/// Creates a demo topic, produces a few messages through SluiceKafka and consumes them back.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Produce a few messages to a demo topic and consume them back, printing each.")

    @Option(name: .long, help: "Bootstrap servers (host:port,...). Default: $SLUICE_BOOTSTRAP.")
    var bootstrap: String?

    @Option(name: .long, help: "The demo topic.")
    var topic = "sluice-demo"

    @Option(name: .long, help: "How many messages to produce.")
    var count = 5

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "warning"

    func run() async throws {
        try KafkaLibrary.requireSupportedVersion()
        guard let servers = bootstrap ?? ProcessInfo.processInfo.environment["SLUICE_BOOTSTRAP"] else {
            throw ValidationError("no broker: pass --bootstrap host:port or set SLUICE_BOOTSTRAP (scripts/broker start)")
        }
        var logger = Logger(label: "sluice.demo")
        logger.logLevel = Logger.Level(rawValue: logLevel) ?? .warning
        let bootstrapServers = servers.split(separator: ",").map(String.init)

        let admin = try KafkaAdminClient(configuration: .init(bootstrapServers: bootstrapServers), logger: logger)
        do {
            try await admin.createTopic(KafkaTopicSpecification(name: topic, partitions: 3))
            print("created topic \(topic) (3 partitions)")
        } catch let error as KafkaError where error.code == .topicExists {
            print("topic \(topic) exists")
        }

        let producer = try KafkaProducer(configuration: .init(bootstrapServers: bootstrapServers), logger: logger)
        let runID = String(UInt32.random(in: 0...UInt32.max), radix: 16)
        for index in 0..<count {
            let report = try await producer.send(
                KafkaProducerMessage(
                    topic: topic, key: "key-\(index % 3)", value: "hello \(index) from run \(runID)",
                    headers: [KafkaHeader(name: "run", string: runID)]))
            print("produced  \(report)  key-\(index % 3)")
        }
        try await producer.close()

        var consumerConfiguration = KafkaConsumerConfiguration(
            bootstrapServers: bootstrapServers, groupID: "sluice-demo-\(runID)")
        consumerConfiguration.sessionTimeout = .seconds(6)
        let consumer = try KafkaConsumer(configuration: consumerConfiguration, logger: logger)
        try consumer.subscribe(topics: [topic])
        var seen = 0
        for try await message in consumer.messages
        where message.headers.first(where: { $0.name == "run" })?.stringValue == runID {
            print("consumed  \(message.topic)[\(message.partition)]@\(message.offset)  \(message.keyString ?? "<null>") = \(message.valueString ?? "<null>")")
            try await consumer.commit([message.nextOffset])
            seen += 1
            if seen == count { break }
        }
        await consumer.close()
        print("done: \(seen) of \(count) messages round-tripped through \(servers)")
    }
}
