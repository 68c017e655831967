/// Log metadata keys used across Sluice's Kafka client, in one place so they stay consistent.
enum LogKey {
    static let librdkafkaFacility = "librdkafka.facility"
    static let client = "kafka.client"
    static let topic = "kafka.topic"
    static let partition = "kafka.partition"
    static let partitions = "kafka.partitions"
    static let groupID = "kafka.group"
    static let error = "kafka.error"
}
