/// Settings of a ``KafkaConsumer``.
public struct KafkaConsumerConfiguration: Sendable {
    /// Shared client settings (brokers, client id, security, raw properties).
    public var client: KafkaClientConfiguration
    /// The consumer group. Default: none (required).
    public var groupID: String
    /// Where to start in a partition with no committed offset. Default: ``OffsetReset/earliest``.
    public var autoOffsetReset: OffsetReset = .earliest
    /// How long the group waits for a silent member before rebalancing its partitions away.
    /// Default: 10 seconds (librdkafka's 45 s makes group joins slow).
    public var sessionTimeout: Duration = .seconds(10)
    /// How the group splits partitions. Default: ``AssignmentStrategy/cooperativeSticky``.
    public var assignmentStrategy: AssignmentStrategy = .cooperativeSticky
    /// Commit stored offsets periodically in the background. Default: `false`: Sluice commits explicitly,
    /// only what was acknowledged.
    public var isAutoCommitEnabled: Bool = false
    /// Store each message's offset as soon as it is handed over. Default: `false`: offsets are stored
    /// only when the caller says the message is done.
    public var isAutoOffsetStoreEnabled: Bool = false
    /// At most this many messages wait in Sluice's hand-over buffer; beyond it, partitions are paused in
    /// librdkafka until the caller catches up. Default: 10,000.
    public var maxBufferedMessages: Int = 10_000
    /// At most this many kilobytes per partition in librdkafka's pre-fetch queue (`queued.max.messages.kbytes`).
    /// Default: 4,096 (4 MiB; librdkafka's own default is 64 MiB).
    public var maxPrefetchKilobytes: Int = 4096
    /// At most this many messages in librdkafka's pre-fetch queue (`queued.min.messages`). Default: 10,000.
    public var minPrefetchMessages: Int = 10_000
    /// How long librdkafka waits before fetching a partition again when its pre-fetch queue is over the limits
    /// above (`fetch.queue.backoff.ms`). Sluice drains that queue continuously into its own bounded buffer, so a
    /// short wait keeps throughput up. Default: 10 ms (librdkafka's own default, 1 s, stalls bounded consumers).
    public var fetchQueueBackoff: Duration = .milliseconds(10)
    /// How long the reader may take nothing while the hand-over buffer is full before the consumer pauses its
    /// partitions in librdkafka (releasing pre-fetched messages). Shorter waits only stop taking messages from
    /// librdkafka's bounded per-partition queues. Default: 1 second.
    public var stallPause: Duration = .seconds(1)
    /// How long the broker may hold a fetch request that has no data yet (`fetch.wait.max.ms`). librdkafka has one
    /// fetch in flight per broker: with per-partition pre-fetch limits, a partition with a backlog waits behind a
    /// held fetch for its caught-up neighbours, so a long wait caps throughput. Default: 50 ms (librdkafka's 500 ms
    /// halved consume throughput in `sluice-bench kafka`).
    public var fetchWaitMax: Duration = .milliseconds(50)
    /// How many messages the poll thread takes from librdkafka in one call. Default: 1,024.
    public var pollBatchSize: Int = 1024
    /// How long ``KafkaConsumer/close()`` may take to leave the group: revoking the assignment through the rebalance
    /// handler (a stream source waits there for in-flight messages and commits), then leaving. librdkafka waits for
    /// an unreachable group coordinator for ever; after this long the consumer stops waiting, logs an error and is
    /// torn down without leaving (the group hands its partitions to others when its session times out, and what
    /// was not committed is delivered again). The time is checked between librdkafka's callbacks: a revoke already
    /// running finishes first (its commit waits at most ``KafkaClientConfiguration/requestTimeout``).
    /// Default: 30 seconds.
    public var closeTimeout: Duration = .seconds(30)

    /// Creates consumer settings for the given bootstrap servers and group.
    public init(bootstrapServers: [String], groupID: String) {
        self.client = KafkaClientConfiguration(bootstrapServers: bootstrapServers)
        self.groupID = groupID
    }

    /// Creates consumer settings from shared client settings.
    public init(client: KafkaClientConfiguration, groupID: String) {
        self.client = client
        self.groupID = groupID
    }

    /// Where a partition with no committed offset starts.
    public struct OffsetReset: Hashable, Sendable {
        let value: String
        /// The oldest retained message.
        public static let earliest = OffsetReset(value: "earliest")
        /// Only messages produced from now on.
        public static let latest = OffsetReset(value: "latest")
        /// Fail with an error instead of guessing.
        public static let error = OffsetReset(value: "error")
    }

    /// How a consumer group splits partitions among its members.
    public struct AssignmentStrategy: Hashable, Sendable {
        let value: String
        /// Incremental (cooperative) rebalancing: only moved partitions are revoked. Recommended.
        public static let cooperativeSticky = AssignmentStrategy(value: "cooperative-sticky")
        /// Eager range assignment: every rebalance revokes everything first.
        public static let range = AssignmentStrategy(value: "range")
        /// Eager round-robin assignment.
        public static let roundRobin = AssignmentStrategy(value: "roundrobin")
    }

    func librdkafkaProperties() -> [(String, String)] {
        client.librdkafkaProperties() + [
            ("group.id", groupID),
            ("auto.offset.reset", autoOffsetReset.value),
            ("session.timeout.ms", String(sessionTimeout.milliseconds)),
            ("partition.assignment.strategy", assignmentStrategy.value),
            ("enable.auto.commit", isAutoCommitEnabled ? "true" : "false"),
            ("enable.auto.offset.store", isAutoOffsetStoreEnabled ? "true" : "false"),
            ("queued.max.messages.kbytes", String(maxPrefetchKilobytes)),
            ("queued.min.messages", String(minPrefetchMessages)),
            ("fetch.queue.backoff.ms", String(fetchQueueBackoff.milliseconds)),
            ("fetch.wait.max.ms", String(fetchWaitMax.milliseconds)),
        ] + client.overridingProperties(except: Self.commitSafetyProperties)
    }

    /// Raw properties may override every typed setting but these: Sluice's at-least-once guarantee depends on
    /// committing and storing offsets itself.
    static let commitSafetyProperties: Set<String> = ["enable.auto.commit", "enable.auto.offset.store", "group.id"]
}
