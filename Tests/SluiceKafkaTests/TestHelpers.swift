import SluiceKafka
import SluiceTesting

/// Produces messages and waits for every delivery report.
func produceAll(_ messages: [KafkaProducerMessage], configuration: KafkaProducerConfiguration? = nil) async throws -> [KafkaDeliveryReport] {
    let defaultConfiguration = try await makeTestProducerConfiguration()
    let producer = try KafkaProducer(configuration: configuration ?? defaultConfiguration)
    let reports = try await withThrowingTaskGroup(of: (Int, KafkaDeliveryReport).self) { group in
        for (index, message) in messages.enumerated() {
            group.addTask { (index, try await producer.send(message)) }
        }
        var reports = [KafkaDeliveryReport?](repeating: nil, count: messages.count)
        for try await (index, report) in group { reports[index] = report }
        return reports.map { $0! }
    }
    try await producer.close()
    return reports
}

/// Reads messages until `count` arrived (or fails after `timeout`).
func consume(
    _ count: Int, from consumer: KafkaConsumer, timeout: Duration = .seconds(60)
) async throws -> [KafkaConsumerMessage] {
    try await withThrowingTaskGroup(of: [KafkaConsumerMessage].self) { group in
        group.addTask {
            var received: [KafkaConsumerMessage] = []
            for try await message in consumer.messages {
                received.append(message)
                if received.count == count { break }
            }
            return received
        }
        group.addTask {
            try await Task.sleep(for: timeout)
            throw TestSupportError("timed out after \(timeout) waiting for \(count) messages")
        }
        let result = try await group.next()!
        group.cancelAll()
        return result
    }
}

extension Array where Element == UInt8 {
    init(_ string: String) { self = Array(string.utf8) }
}
