/// A topic to create.
public struct KafkaTopicSpecification: Sendable {
    /// The topic's name.
    public var name: String
    /// How many partitions. Default: 1.
    public var partitions: Int32
    /// How many replicas of each partition. Default: -1 (the broker's default).
    public var replicationFactor: Int32
    /// Topic configuration, for example `["cleanup.policy": "compact"]`. Default: none.
    public var configs: [String: String]

    public init(name: String, partitions: Int32 = 1, replicationFactor: Int32 = -1, configs: [String: String] = [:]) {
        self.name = name
        self.partitions = partitions
        self.replicationFactor = replicationFactor
        self.configs = configs
    }
}

/// What the cluster's metadata says: its brokers and topics.
public struct KafkaClusterDescription: Sendable {
    /// A broker of the cluster.
    public struct Broker: Hashable, Sendable {
        public var id: Int32
        public var host: String
        public var port: Int32
    }

    /// A partition and where it lives.
    public struct Partition: Hashable, Sendable {
        public var id: Int32
        public var leader: Int32
        public var replicas: [Int32]
        public var inSyncReplicas: [Int32]
    }

    /// A topic and its partitions.
    public struct Topic: Hashable, Sendable {
        public var name: String
        public var partitions: [Partition]
    }

    /// The broker that answered.
    public var originatingBrokerID: Int32
    public var brokers: [Broker]
    public var topics: [Topic]

    /// The topic named `name`, if the cluster has it.
    public func topic(_ name: String) -> Topic? { topics.first { $0.name == name } }
}
