public import Logging
public import SluiceKafka
import Synchronization

/// Settings of a ``KafkaChangelogJournal``.
public struct KafkaChangelogJournalConfiguration: Sendable {
    /// How to reach the cluster (shared by the journal's producer, restore consumers and admin client).
    public var client: KafkaClientConfiguration
    /// The changelog topic (created if missing, compacted).
    public var topic: String
    /// The input topic whose entities this journal stores: the changelog gets its partition count, so that an
    /// entity's changelog partition is its input partition and its state moves with it.
    public var inputTopic: String
    /// How the input topic's producers partition entity ids; the changelog places each entity with it.
    /// Default: ``KafkaPartitioner/consistentRandom`` (librdkafka's default; Java producers use
    /// ``KafkaPartitioner/murmur2Random``). A changelog written with one partitioner cannot be read with another:
    /// the restore finds its records in the wrong partitions and fails with
    /// ``PersistenceError/Code/partitionMismatch``.
    public var partitioner: KafkaPartitioner = .consistentRandom
    /// Places entities whose partition is not given by their id (state kept per input partition, such as a
    /// connector's deduplication set): a partition for such an entity, `nil` for the others, which go through
    /// ``partitioner``. Must be the same for every journal reading the changelog. Default: none.
    public var placement: (@Sendable (PersistenceID) -> Int32?)?
    /// The replication factor of a changelog topic the journal creates (-1: the broker's default).
    public var replicationFactor: Int32 = -1
    /// More topic configuration for a changelog topic the journal creates (`cleanup.policy` is always `compact`).
    public var topicConfigs: [String: String] = [:]
    /// Whether an acknowledged snapshot deletes (tombstones) the entity's events up to it, so the topic shrinks
    /// and restores read less. Reads then start after the snapshot (``Journal/readEvents(of:from:limit:)`` from
    /// 1 returns the events after the deleted ones), like Pekko's `withDeleteEventsOnSnapshot`. Default: `false`
    /// (every event is kept; compaction only drops superseded snapshots and offsets).
    public var deleteEventsOnSnapshot = false
    /// How long a restore may take before it fails (a partition whose end it cannot reach).
    /// Default: 2 minutes.
    public var restoreTimeout: Duration = .seconds(120)
    /// The producer's linger (how long it waits to batch records). Default: 5 ms.
    public var linger: Duration = .milliseconds(5)
    /// How the producer compresses record batches: `none`, `gzip`, `snappy`, `lz4` or `zstd`. Changelog records of
    /// one batch share most of their bytes (entity type and id, manifests, input topic), so compression cuts what
    /// the brokers receive, store and replicate, for a little producer CPU. Default: `lz4` (the cheapest to
    /// compress and decompress; consumers decompress it transparently).
    public var compression: String = "lz4"
    /// How long a changelog write may take before it fails. Default: 30 s.
    public var writeTimeout: Duration = .seconds(30)

    /// A journal for the entities of `inputTopic`, writing to `topic`.
    public init(client: KafkaClientConfiguration, topic: String, inputTopic: String) {
        self.client = client
        self.topic = topic
        self.inputTopic = inputTopic
    }

    /// A journal for the entities of `inputTopic`, writing to `topic` on the cluster at `bootstrapServers`.
    public init(bootstrapServers: [String], topic: String, inputTopic: String) {
        self.init(
            client: KafkaClientConfiguration(bootstrapServers: bootstrapServers), topic: topic, inputTopic: inputTopic)
    }
}

/// A journal in a compacted, partitioned Kafka topic: the Kafka Streams state-store idea, with an entity's state
/// moving with its input partition.
///
/// - **Placement**: the changelog topic has the input topic's partition count, and every record of an entity goes
///   to the partition the input's partitioner gives its entity id (an explicit partition, computed with
///   ``KafkaChangelogJournalConfiguration/partitioner``). So the changelog partition of an entity is its input
///   partition: whoever is assigned input partition *p* restores changelog partition *p*.
/// - **Records**: one per event, keyed `<entity type>|<entity id>/<sequence number>`, so compaction never drops an
///   event; `…/snapshot` holds the latest snapshot (with the applied input offsets up to it) and `…/offsets` the
///   applied input offsets of appends without events. Values are binary with a checksum over key and value. Every
///   event record carries its append's id and range and the previous append's id: a restore accepts an append
///   only if all of it is there and it continues the entity's history, so an append is atomic although it is
///   several records.
/// - **Durability**: an append returns once the broker acknowledged every one of its records (idempotent producer,
///   `acks=all`); a snapshot is produced after its events were acknowledged.
/// - **Sequence conflicts**: Kafka has no compare-and-set. The journal keeps the highest sequence number of every
///   entity of its restored partitions (including appends in flight) and rejects a conflicting append in-process.
///   Fencing an old owner that still writes (a zombie after a rebalance) relies on partition ownership through the
///   consumer group and is not done here; if two writers interleave anyway, a restore keeps the history that was
///   written first and ignores appends that do not continue it.
/// - **Restore**: ``restore(partitions:)`` reads the given changelog partitions from the beginning to their ends
///   (a consumer with explicit assignment, no group, no commits) into memory, which then serves every read. The
///   end of a partition is a marker record (key `sluice.changelog.restore-marker`, null value) the restore
///   produces first: everything acknowledged before the restore began is before it. An entity's operations fail with ``PersistenceError/Code/partitionNotRestored`` until its partition is
///   restored, so entities of a partition start only after its restore finished. ``release(partitions:)`` drops
///   them on revoke. All restored state is held in memory.
/// - **Failure**: a failed write may or may not be stored. The journal then refuses the partition's entities
///   (``PersistenceError/Code/partitionNotRestored``) until it is restored again, which finds out what was stored.
/// - **Damage**: a record whose value does not decode fails reads that reach it with
///   ``PersistenceError/Code/corruptEvent`` (or ``PersistenceError/Code/corruptSnapshot``) naming the entity, the
///   journal (`kafka:<topic>`) and the sequence number.
public final class KafkaChangelogJournal: Journal {
    public let name: String
    /// The changelog topic.
    public let topic: String
    /// The changelog's (and the input topic's) partition count.
    public let partitionCount: Int32
    /// How entity ids are placed in partitions.
    public let partitioner: KafkaPartitioner
    private let configuration: KafkaChangelogJournalConfiguration
    private let placement: (@Sendable (PersistenceID) -> Int32?)?
    private let producer: KafkaProducer
    private let state: LockedState
    private let logger: Logger
    /// The next append's id, minus one: counts up from a random start, so ids are distinct within this journal and,
    /// with overwhelming probability, from every other incarnation's (a random number per append would cost a
    /// `getrandom` system call each).
    private let lastAppendID = Atomic<UInt64>(UInt64.random(in: 0...UInt64.max))
    /// The appends whose records are in flight, per partition (each with a lock and a delivery route of its own,
    /// so that entities of different partitions do not wait for each other); the producer reports to them a
    /// delivery batch at a time.
    private let deliveries: [(appends: AppendDeliveries, route: KafkaDeliveryRoute)]

    /// Opens the journal: makes sure the changelog topic exists with the input topic's partition count, and starts
    /// the producer. Restores nothing: call ``restore(partitions:)`` for the partitions this instance owns.
    ///
    /// - Throws: ``PersistenceError/Code/partitionMismatch`` naming both topics and both partition counts when
    ///   the changelog topic exists with another partition count than the input topic;
    ///   ``PersistenceError/Code/storageFailure`` when the input topic does not exist or the cluster fails.
    public init(
        _ configuration: KafkaChangelogJournalConfiguration,
        logger: Logger = Logger(label: "sluice.persistence.kafka-changelog")
    ) async throws(PersistenceError) {
        let name = "kafka:\(configuration.topic)"
        self.name = name
        self.topic = configuration.topic
        self.partitioner = configuration.partitioner
        self.placement = configuration.placement
        self.configuration = configuration
        self.logger = logger
        let partitionCount = try await Self.ensureTopic(configuration, journal: name, logger: logger)
        self.partitionCount = partitionCount
        let state = LockedState(partitionCount: partitionCount)
        self.state = state
        let topic = configuration.topic
        let appends = (0..<partitionCount).map { _ in
            AppendDeliveries { batch in Self.reported(batch, state: state, journal: name, topic: topic) }
        }
        var producerConfiguration = KafkaProducerConfiguration(client: configuration.client)
        producerConfiguration.isIdempotent = true
        producerConfiguration.acks = "all"
        producerConfiguration.linger = configuration.linger
        producerConfiguration.compression = configuration.compression
        producerConfiguration.messageTimeout = configuration.writeTimeout
        do {
            let producer = try KafkaProducer(configuration: producerConfiguration, logger: logger)
            self.producer = producer
            self.deliveries = try appends.map { ($0, try producer.register($0)) }
        } catch {
            throw PersistenceError(
                .storageFailure, journal: name, message: "cannot create the changelog producer: \(error)")
        }
    }

    /// Creates the changelog topic if missing; returns its partition count.
    private static func ensureTopic(
        _ configuration: KafkaChangelogJournalConfiguration, journal: String, logger: Logger
    ) async throws(PersistenceError) -> Int32 {
        let admin: KafkaAdminClient
        let inputPartitions: Int32
        do {
            admin = try KafkaAdminClient(configuration: configuration.client, logger: logger)
            inputPartitions = Int32(try await admin.describeTopic(configuration.inputTopic).partitions.count)
        } catch {
            throw PersistenceError(
                .storageFailure, journal: journal,
                message: "cannot read the partition count of input topic '\(configuration.inputTopic)' (\(error)): "
                    + "the changelog needs the input topic's partition count; create the input topic first")
        }
        // Described first, created only when missing: a deployment whose changelog topic was made beforehand
        // needs no permission to create topics (a broker refuses an unauthorized create before it says the topic
        // exists).
        var existing = try await partitionCount(of: configuration.topic, admin: admin, journal: journal)
        if existing == nil {
            var configs = configuration.topicConfigs
            configs["cleanup.policy"] = "compact"
            do {
                try await admin.createTopic(
                    KafkaTopicSpecification(
                        name: configuration.topic, partitions: inputPartitions,
                        replicationFactor: configuration.replicationFactor, configs: configs))
                logger.info(
                    "created changelog topic '\(configuration.topic)' with \(inputPartitions) partitions (compacted)")
                return inputPartitions
            } catch let error as KafkaError where error.code == .topicExists {
                // Created meanwhile by another instance: it must match the input.
                existing = try await partitionCount(of: configuration.topic, admin: admin, journal: journal)
            } catch {
                throw PersistenceError(
                    .storageFailure, journal: journal,
                    message: "cannot create changelog topic '\(configuration.topic)': \(error)")
            }
        }
        guard let existing else {
            throw PersistenceError(
                .storageFailure, journal: journal,
                message: "changelog topic '\(configuration.topic)' was reported created and then not found")
        }
        guard existing == inputPartitions else {
            throw PersistenceError(
                .partitionMismatch, journal: journal,
                message: "changelog topic '\(configuration.topic)' has \(existing) partitions but input topic "
                    + "'\(configuration.inputTopic)' has \(inputPartitions): an entity's changelog partition must be "
                    + "its input partition. Use another changelog topic, or recreate '\(configuration.topic)' with "
                    + "\(inputPartitions) partitions (re-producing its records by entity id)")
        }
        return existing
    }

    /// The topic's partition count; `nil` when the topic does not exist.
    private static func partitionCount(of topic: String, admin: KafkaAdminClient, journal: String)
        async throws(PersistenceError) -> Int32?
    {
        do {
            return Int32(try await admin.describeTopic(topic).partitions.count)
        } catch let error as KafkaError where error.code == .unknownTopic {
            return nil
        } catch {
            throw PersistenceError(
                .storageFailure, journal: journal, message: "cannot describe changelog topic '\(topic)': \(error)")
        }
    }

    // MARK: - Partitions

    /// The partition of an entity, in the changelog and in the input topic: the configured placement if it places
    /// the entity, else the configured partitioner applied to the entity id (an empty id, which librdkafka would place
    /// randomly, goes to partition 0).
    public func partition(of id: PersistenceID) -> Int32 {
        if let placed = placement?(id), placed >= 0, placed < partitionCount { return placed }
        return partitioner.partition(forUTF8Key: id.entityID, partitionCount: partitionCount) ?? 0
    }

    /// The partitions restored and serving their entities.
    public var restoredPartitions: Set<Int32> {
        Set(
            (0..<partitionCount).filter { partition in
                state.withPartition(partition) { slot in if case .ready? = slot?.status { true } else { false } }
            })
    }

    /// Reads the changelog partitions from the beginning to their current ends (it produces a marker record to each
    /// and reads up to it) and serves their entities from then on. Call it when the input partitions are assigned, before their entities take a message
    /// (for example from the consumer's rebalance handler, which runs before the partitions' messages are handed
    /// over). Restoring a partition again rebuilds it (after a failed write).
    ///
    /// - Returns: what was read, and how long it took.
    /// - Throws: ``PersistenceError/Code/storageFailure`` when the cluster fails, the restore exceeds
    ///   ``KafkaChangelogJournalConfiguration/restoreTimeout`` or a record is not a changelog record;
    ///   ``PersistenceError/Code/partitionMismatch`` when a record is in another partition than the partitioner
    ///   gives its entity (the changelog was written with another partitioner or partition count).
    @discardableResult
    public func restore(partitions: [Int32]) async throws(PersistenceError) -> PartitionRestoreStatistics {
        let started = ContinuousClock.now
        let partitions = Array(Set(partitions)).sorted()
        if let bad = partitions.first(where: { $0 < 0 || $0 >= partitionCount }) {
            throw PersistenceError(
                .invalidArgument, journal: name,
                message: "partition \(bad) does not exist: changelog topic '\(topic)' has \(partitionCount) partitions")
        }
        guard !state.isClosed else { throw closedError() }
        let generation = state.nextGeneration()
        for partition in partitions {
            state.withPartition(partition) { slot in slot = PartitionState(status: .restoring, generation: generation) }
        }
        do throws(PersistenceError) {
            let (outcomes, records) = try await readPartitions(partitions)
            var statistics = PartitionRestoreStatistics(
                partitions: partitions, records: records, entities: 0, events: 0, ignoredRecords: 0,
                duration: .zero)
            for outcome in outcomes.values {
                statistics.entities += outcome.entities.count
                statistics.events += outcome.entities.values.reduce(0) { $0 + $1.events.count }
                statistics.ignoredRecords += outcome.ignoredRecords
            }
            guard !state.isClosed else { throw closedError() }
            for partition in partitions {
                let entities = outcomes[partition]?.entities ?? [:]
                state.withPartition(partition) { slot in
                    guard slot?.generation == generation else { return }
                    slot?.entities = entities
                    slot?.status = .ready
                }
            }
            statistics.duration = ContinuousClock.now - started
            if statistics.ignoredRecords > 0 {
                logger.warning(
                    """
                    changelog restore ignored \(statistics.ignoredRecords) event records that are not part of an \
                    acknowledged history (failed appends)
                    """,
                    metadata: ["topic": "\(topic)", "partitions": "\(partitions)"])
            }
            logger.debug(
                "changelog restored",
                metadata: [
                    "topic": "\(topic)", "partitions": "\(partitions)", "records": "\(records)",
                    "events": "\(statistics.events)", "duration": "\(statistics.duration)",
                ])
            return statistics
        } catch {
            for partition in partitions {
                state.withPartition(partition) { slot in
                    if slot?.generation == generation { slot?.status = .failed("its restore failed: \(error.message)") }
                }
            }
            throw error
        }
    }

    /// Stops serving these partitions' entities and drops their state (call it when the input partitions are
    /// revoked, after their entities stopped). Their entities' operations fail with
    /// ``PersistenceError/Code/partitionNotRestored`` until they are restored again.
    public func release(partitions: [Int32]) {
        for partition in partitions where partition >= 0 && partition < partitionCount {
            state.withPartition(partition) { slot in slot = nil }
        }
    }

    /// Reads `partitions` from the beginning to their ends (marker records written for it).
    private func readPartitions(_ partitions: [Int32]) async throws(PersistenceError) -> (
        [Int32: ChangelogRestorer.Outcome], Int
    ) {
        var consumerConfiguration = KafkaConsumerConfiguration(
            client: configuration.client,
            groupID: "sluice-changelog-restore-\(UInt64.random(in: 0...UInt64.max))")
        consumerConfiguration.isAutoCommitEnabled = false
        consumerConfiguration.isAutoOffsetStoreEnabled = false
        consumerConfiguration.autoOffsetReset = .earliest
        let consumer: KafkaConsumer
        do {
            consumer = try KafkaConsumer(configuration: consumerConfiguration, logger: logger)
        } catch {
            throw PersistenceError(
                .storageFailure, journal: name, message: "cannot create a restore consumer: \(error)")
        }
        let timedOut = Atomic<Bool>(false)
        let timeout = configuration.restoreTimeout
        let timer = Task {
            try? await Task.sleep(for: timeout)
            guard !Task.isCancelled else { return }
            timedOut.store(true, ordering: .sequentiallyConsistent)
            consumer.wakeUpReader()
        }
        defer { timer.cancel() }
        var restorers: [Int32: ChangelogRestorer] = [:]
        var records = 0
        // The offset of the last record to read, per partition still being read.
        var remaining: [Int32: Int64] = [:]
        var readError: PersistenceError?
        do {
            // The end of each partition is a marker record the restore writes itself: its offset (from the delivery
            // report) is exact on any broker, and everything acknowledged before the restore began is before it.
            // (High watermarks would do on Kafka, but Tansu reports a batch's base offset + 1 as the high
            // watermark, so a restore that stopped there would miss the rest of the last batch.)
            for partition in partitions {
                restorers[partition] = ChangelogRestorer()
                let report = try await producer.send(
                    KafkaProducerMessage(topic: topic, partition: partition, key: Self.restoreMarkerKey, value: nil))
                remaining[partition] = report.offset
            }
            try consumer.assign(
                partitions.map { KafkaTopicPartitionOffset(topic: topic, partition: $0, offset: KafkaOffset.beginning) }
            )
            reading: while !remaining.isEmpty {
                switch try await consumer.readBatch(maxCount: 4096) {
                case .messages(let messages):
                    for message in messages {
                        guard let end = remaining[message.partition], message.offset <= end else { continue }
                        if message.offset >= end {
                            remaining[message.partition] = nil
                        } else if message.key != Self.restoreMarkerKey {
                            records += 1
                            try add(message, to: &restorers)
                        }
                    }
                case .wokenUp:
                    if timedOut.load(ordering: .sequentiallyConsistent) {
                        throw PersistenceError(
                            .storageFailure, journal: name,
                            message: "restoring partitions \(partitions) of '\(topic)' did not finish within "
                                + "\(timeout); still reading partitions \(remaining.keys.sorted()) (up to offsets "
                                + "\(remaining)): is the broker reachable? Raise restoreTimeout for large changelogs")
                    }
                case nil:
                    break reading
                }
            }
            if !remaining.isEmpty {
                throw PersistenceError(
                    .storageFailure, journal: name,
                    message: "the restore consumer stopped before reaching the end of partitions "
                        + "\(remaining.keys.sorted()) of '\(topic)'")
            }
        } catch let error as PersistenceError {
            readError = error
        } catch {
            readError = PersistenceError(
                .storageFailure, journal: name, message: "restoring partitions \(partitions) of '\(topic)': \(error)")
        }
        await consumer.close()
        if let readError { throw readError }
        return (restorers.mapValues { $0.finish() }, records)
    }

    /// The key of the marker records restores write (null values: compaction removes them).
    static let restoreMarkerKey: [UInt8] = Array("sluice.changelog.restore-marker".utf8)

    private func add(_ message: KafkaConsumerMessage, to restorers: inout [Int32: ChangelogRestorer])
        throws(PersistenceError)
    {
        guard let rawKey = message.key, let key = ChangelogKey(bytes: rawKey) else {
            throw PersistenceError(
                .storageFailure, journal: name,
                message: "the record at \(message.topic)[\(message.partition)]@\(message.offset) is not a changelog "
                    + "record (key \(message.keyString.map { "'\($0)'" } ?? "null")): the topic '\(topic)' must hold "
                    + "only this journal's records")
        }
        let expected = partition(of: key.persistenceID)
        guard expected == message.partition else {
            throw PersistenceError(
                .partitionMismatch, journal: name, persistenceID: key.persistenceID,
                message: "the record at \(message.topic)[\(message.partition)]@\(message.offset) belongs in partition "
                    + "\(expected) with partitioner \(partitioner): the changelog was written with another "
                    + "partitioner or partition count; configure the one it was written with")
        }
        restorers[message.partition]?.add(key: key, rawKey: rawKey, value: message.value)
    }

    // MARK: - Journal

    public func append(_ append: JournalAppend) async throws(PersistenceError) {
        let (prepared, messages) = try prepare(append)
        let (id, partition, generation) = (prepared.id, prepared.partition, prepared.generation)
        try await deliver(
            messages, id: id, sequenceNumber: prepared.first, partition: partition, generation: generation)
        if let snapshot = append.snapshot {
            // After the events: a snapshot is never stored without the events it folds.
            let record = ChangelogValue.SnapshotRecord(snapshot: snapshot, inputOffsets: prepared.offsetsAfter)
            try await deliver(
                [message(ChangelogKey(id, .snapshot), .snapshot(record), partition)], id: id,
                sequenceNumber: snapshot.sequenceNumber, partition: partition, generation: generation)
        }
        try finish(prepared)
        if configuration.deleteEventsOnSnapshot, let snapshot = append.snapshot {
            await deleteEvents(of: id, through: snapshot.sequenceNumber, partition: partition, generation: generation)
        }
    }

    /// Produces the append's records without a task or a suspension when librdkafka's queue has room (the common
    /// case); the delivery report of the last record completes it on the producer's poll thread. Appends with a
    /// snapshot, and appends that meet a full queue, go the way of ``append(_:)``.
    public func submit(_ append: consuming JournalAppend, completion: @escaping @Sendable (PersistenceError?) -> Void) {
        guard append.snapshot == nil else { return submitInTask(append, completion: completion) }
        let prepared: PreparedAppend
        let messages: [KafkaProducerMessage]
        do throws(PersistenceError) {
            (prepared, messages) = try prepare(consume append)
        } catch {
            return completion(error)
        }
        // Nothing to write (no events, no input offset): stored as it is.
        guard !messages.isEmpty else {
            return Self.reported([(.submitted(prepared, completion), nil)], state: state, journal: name, topic: topic)
        }
        // Once every record is reported, `reported` records the append and calls `completion`.
        let (appends, route) = deliveries[Int(prepared.partition)]
        let tag = appends.add(records: messages.count, pending: .submitted(prepared, completion))
        for (index, message) in messages.enumerated() {
            let accepted: Bool
            do {
                accepted = try producer.trySend(message, route: route, tag: tag)
            } catch {
                return appends.abandon(tag, records: messages.count - index, error: "\(error)")
            }
            guard accepted else {
                // librdkafka's queue is full: wait for room in a task, for this record and the ones after it.
                let rest = Array(messages[index...])
                Task { await self.send(rest, partition: prepared.partition, tag: tag) }
                return
            }
        }
    }

    /// What an append whose records are in flight waits with.
    enum PendingAppend: Sendable {
        /// Submitted without a task: ``reported(_:state:journal:topic:)`` records it in the journal's state, then
        /// calls the completion.
        case submitted(PreparedAppend, @Sendable (PersistenceError?) -> Void)
        /// Awaited in a task, which records it.
        case awaited(DeliveryOutcome)
    }

    /// Appends whose every record was reported (on the producer's poll thread), in order: a stored submitted one is
    /// recorded in the journal's state, then completed; a failed one marks its partition failed.
    private static func reported(
        _ batch: consuming [(pending: PendingAppend, failure: String?)], state: LockedState, journal: String,
        topic: String
    ) {
        // Each append is moved out of the batch (first to last), not copied: a copy retains its references.
        var remaining = consume batch
        remaining.withUnsafeMutableBufferPointer { $0.reverse() }  // swaps that move (Array.reverse() copies)
        while let (pending, failure) = remaining.popLast() {
            switch consume pending {
            case .awaited(let waiter):
                waiter.report(failure)
            case .submitted(let prepared, let completion):
                // One partition lock per append, released before its completion runs.
                let outcome = state.withPartition(prepared.partition) { slot -> PersistenceError? in
                    if let failure {
                        return markFailed(
                            &slot, id: prepared.id, sequenceNumber: prepared.first, partition: prepared.partition,
                            generation: prepared.generation, reason: failure, journal: journal, topic: topic)
                    }
                    do throws(PersistenceError) {
                        try finish(prepared, in: &slot, isClosed: state.isClosed, journal: journal, topic: topic)
                        return nil
                    } catch {
                        return error
                    }
                }
                completion(outcome)
            }
        }
    }

    /// An append whose sequence numbers are reserved (its records are made alongside, and not kept here: this is
    /// what the append's delivery slot holds until its records are reported). A class: it is handed from the
    /// submitting thread to the slot and the report, and a reference is one retain where the fields are a dozen.
    final class PreparedAppend: Sendable {
        let id: PersistenceID
        let partition: Int32
        let generation: UInt64
        let first: Int64?
        /// The entity's input offsets once this append is stored, for an offsets record or a snapshot record (empty
        /// when the append has events and no snapshot: its records carry only its own offset).
        let offsetsAfter: [InputOffset]
        let append: JournalAppend

        init(
            id: PersistenceID, partition: Int32, generation: UInt64, first: Int64?, offsetsAfter: [InputOffset],
            append: consuming JournalAppend
        ) {
            self.id = id
            self.partition = partition
            self.generation = generation
            self.first = first
            self.offsetsAfter = offsetsAfter
            self.append = append
        }
    }

    /// Checks the append, reserves its sequence numbers (the in-process conflict check) and makes its event records
    /// (or an offsets record for an append of an input offset alone).
    private func prepare(_ append: consuming JournalAppend) throws(PersistenceError)
        -> (PreparedAppend, messages: [KafkaProducerMessage])
    {
        try append.validateSequenceNumbers(journal: name)
        let id = append.persistenceID
        let partition = partition(of: id)
        let first = append.events.first?.sequenceNumber
        var appendID = lastAppendID.wrappingAdd(1, ordering: .relaxed).newValue
        if appendID == 0 { appendID = lastAppendID.wrappingAdd(1, ordering: .relaxed).newValue }  // 0 means "none"
        let (generation, previousAppendID, offsetsAfter) = try state.withPartition(partition) {
            (slot) throws(PersistenceError) -> (UInt64, UInt64, [InputOffset]) in
            try PartitionState.modifyEntity(
                id, in: &slot, partition, isClosed: state.isClosed, journal: name, topic: topic, sequenceNumber: first
            ) {
                (entity, generation) throws(PersistenceError) in
                let previous = entity.headAppendID
                if let first, let last = append.events.last?.sequenceNumber {
                    guard first == entity.reserved + 1 else {
                        throw PersistenceError(
                            .sequenceConflict, journal: name, persistenceID: id, sequenceNumber: first,
                            message: "the entity's highest sequence number is \(entity.reserved) (including appends in "
                                + "flight), so the next append must start at \(entity.reserved + 1): another "
                                + "incarnation of the entity wrote, or this one is stale; recover it from the journal")
                    }
                    entity.reserved = last
                    entity.headAppendID = appendID
                }
                // Only a record without events or with a snapshot carries all the entity's offsets: worth a copy
                // of them (and a sort) only then.
                guard append.events.isEmpty || append.snapshot != nil else { return (generation, previous, []) }
                var after = entity.offsets
                if let offset = append.inputOffset { ChangelogEntity.merge(offset, into: &after) }
                return (generation, previous, ChangelogEntity.inputOffsets(after))
            }
        }
        var messages: [KafkaProducerMessage] = []
        messages.reserveCapacity(max(append.events.count, 1))
        for (index, event) in append.events.enumerated() {
            let record = ChangelogValue.EventRecord(
                appendID: appendID, previousAppendID: previousAppendID, appendFirst: first ?? 0,
                appendLast: append.events.last?.sequenceNumber ?? 0, event: event,
                inputOffset: index == append.events.count - 1 ? append.inputOffset : nil)
            messages.append(message(ChangelogKey(id, .event(event.sequenceNumber)), .event(record), partition))
        }
        if append.events.isEmpty, append.inputOffset != nil {
            messages.append(message(ChangelogKey(id, .offsets), .offsets(offsetsAfter), partition))
        }
        let prepared = PreparedAppend(
            id: id, partition: partition, generation: generation, first: first, offsetsAfter: offsetsAfter,
            append: consume append)
        return (prepared, messages)
    }

    /// Records a stored append in the journal's state (what reads and the next appends see).
    private func finish(_ prepared: PreparedAppend) throws(PersistenceError) {
        try state.withPartition(prepared.partition) { (slot) throws(PersistenceError) in
            try Self.finish(prepared, in: &slot, isClosed: state.isClosed, journal: name, topic: topic)
        }
    }

    private static func finish(
        _ prepared: PreparedAppend, in slot: inout PartitionState?, isClosed: Bool, journal name: String, topic: String
    ) throws(PersistenceError) {
        let append = prepared.append
        let (id, partition, first) = (prepared.id, prepared.partition, prepared.first)
        guard slot?.generation == prepared.generation else {
            throw PersistenceError(
                .partitionNotRestored, journal: name, persistenceID: id, sequenceNumber: first,
                message: "partition \(partition) of '\(topic)' was released or restored again while the append "
                    + "was written; the append is stored, but this journal no longer serves the entity")
        }
        try PartitionState.modifyEntity(
            id, in: &slot, partition, isClosed: isClosed, journal: name, topic: topic, sequenceNumber: first
        ) { (entity, _) throws(PersistenceError) in
            for event in append.events { entity.events[event.sequenceNumber] = .event(event) }
            if let last = append.events.last?.sequenceNumber { entity.highest = max(entity.highest, last) }
            if let offset = append.inputOffset { entity.merge(offset) }
            if let snapshot = append.snapshot,
                (entity.snapshot?.sequenceNumber ?? Int64.min) <= snapshot.sequenceNumber
            {
                entity.snapshot = .snapshot(snapshot)
                entity.highest = max(entity.highest, snapshot.sequenceNumber)
                entity.reserved = max(entity.reserved, snapshot.sequenceNumber)
            }
        }
    }

    public func readEvents(of id: PersistenceID, from sequenceNumber: Int64, limit: Int) async throws(PersistenceError)
        -> [JournalEvent]
    {
        let entity = try entity(id, sequenceNumber: sequenceNumber)
        guard let entity, limit > 0 else { return [] }
        let start = max(sequenceNumber, entity.firstRetained)
        guard start <= entity.highest else { return [] }
        let end = min(entity.highest, start + Int64(limit) - 1)
        var events: [JournalEvent] = []
        events.reserveCapacity(Int(end - start + 1))
        for number in start...end {
            switch entity.events[number] {
            case .event(let event)?:
                events.append(event)
            case .corrupt(let reason)?:
                throw PersistenceError(
                    .corruptEvent, journal: name, persistenceID: id, sequenceNumber: number,
                    message: "the changelog record of this event in '\(topic)' is damaged (\(reason)); the entity "
                        + "cannot recover past it: restore the record from a backup or decide to truncate the "
                        + "entity's history deliberately")
            case nil:
                if number <= (entity.snapshot?.sequenceNumber ?? 0) {
                    // Deleted after a snapshot (a concurrent deletion); the reader goes on from the snapshot.
                    continue
                }
                throw PersistenceError(
                    .corruptEvent, journal: name, persistenceID: id, sequenceNumber: number,
                    message: "this event is missing from changelog topic '\(topic)' although later events are "
                        + "stored (a record was lost or deleted)")
            }
        }
        return events
    }

    public func highestSequenceNumber(of id: PersistenceID) async throws(PersistenceError) -> Int64 {
        try entity(id, sequenceNumber: nil)?.highest ?? 0
    }

    public func saveSnapshot(_ snapshot: JournalSnapshot, for id: PersistenceID) async throws(PersistenceError) {
        try await append(JournalAppend(persistenceID: id, events: [], snapshot: snapshot))
    }

    public func loadSnapshot(of id: PersistenceID) async throws(PersistenceError) -> JournalSnapshot? {
        switch try entity(id, sequenceNumber: nil)?.snapshot {
        case .snapshot(let snapshot)?: return snapshot
        case .corrupt(let reason)?:
            throw PersistenceError(
                .corruptSnapshot, journal: name, persistenceID: id,
                message: "the entity's snapshot record in '\(topic)' is damaged (\(reason))")
        case nil: return nil
        }
    }

    public func inputOffsets(of id: PersistenceID) async throws(PersistenceError) -> [InputOffset] {
        guard let entity = try entity(id, sequenceNumber: nil) else { return [] }
        if let reason = entity.offsetsCorruption {
            throw PersistenceError(
                .storageFailure, journal: name, persistenceID: id,
                message: "the entity's offsets record in '\(topic)' is damaged (\(reason))")
        }
        return entity.inputOffsets
    }

    public func close() async {
        guard state.close() else { return }
        do {
            try await producer.close(timeout: configuration.writeTimeout)
        } catch {
            logger.warning("closing the changelog producer of '\(topic)': \(error)")
        }
    }

    // MARK: - Helpers

    private func entity(_ id: PersistenceID, sequenceNumber: Int64?) throws(PersistenceError) -> ChangelogEntity? {
        let partition = partition(of: id)
        return try state.withPartition(partition) { (slot) throws(PersistenceError) -> ChangelogEntity? in
            try PartitionState.checkReady(
                slot, partition, id: id, isClosed: state.isClosed, journal: name, topic: topic,
                sequenceNumber: sequenceNumber)
            return slot?.entities[id]
        }
    }

    private func message(_ key: ChangelogKey, _ value: ChangelogValue?, _ partition: Int32) -> KafkaProducerMessage {
        let keyBytes = key.bytes
        return KafkaProducerMessage(
            topic: topic, partition: partition, key: keyBytes, value: value?.encoded(key: keyBytes))
    }

    /// Produces `messages` and waits until the broker acknowledged every one. On failure the partition must be
    /// restored before its entities go on (what was stored is unknown).
    private func deliver(
        _ messages: [KafkaProducerMessage], id: PersistenceID, sequenceNumber: Int64?, partition: Int32,
        generation: UInt64
    ) async throws(PersistenceError) {
        guard !messages.isEmpty else { return }
        let outcome = DeliveryOutcome()
        let tag = deliveries[Int(partition)].appends.add(records: messages.count, pending: .awaited(outcome))
        await send(messages, partition: partition, tag: tag)
        guard let failure = await outcome.wait() else { return }
        throw failed(id: id, sequenceNumber: sequenceNumber, partition: partition, generation: generation, reason: failure)
    }

    /// Sends `messages` in order, waiting for room in librdkafka's queue; a message that cannot be sent fails it
    /// and the ones after it.
    private func send(_ messages: [KafkaProducerMessage], partition: Int32, tag: UInt64) async {
        let (appends, route) = deliveries[Int(partition)]
        for (index, message) in messages.enumerated() {
            do {
                try await producer.send(message, route: route, tag: tag)
            } catch {
                appends.abandon(tag, records: messages.count - index, error: "\(error)")
                return
            }
        }
    }

    /// Marks the partition failed after a write whose outcome is unknown, and says so.
    private func failed(
        id: PersistenceID, sequenceNumber: Int64?, partition: Int32, generation: UInt64, reason failure: String
    ) -> PersistenceError {
        state.withPartition(partition) { slot in
            Self.markFailed(
                &slot, id: id, sequenceNumber: sequenceNumber, partition: partition, generation: generation,
                reason: failure, journal: name, topic: topic)
        }
    }

    private static func markFailed(
        _ slot: inout PartitionState?, id: PersistenceID, sequenceNumber: Int64?, partition: Int32, generation: UInt64,
        reason failure: String, journal: String, topic: String
    ) -> PersistenceError {
        let reason = "writing to '\(topic)'[\(partition)] failed (\(failure)); the records may or may not be stored"
        if slot?.generation == generation { slot?.status = .failed(reason) }
        return PersistenceError(
            .storageFailure, journal: journal, persistenceID: id, sequenceNumber: sequenceNumber,
            message: reason + ": restore partition \(partition) (restore(partitions:)) before its entities continue")
    }

    /// Tombstones the entity's events up to `sequenceNumber` (after its snapshot there was acknowledged).
    private func deleteEvents(of id: PersistenceID, through sequenceNumber: Int64, partition: Int32, generation: UInt64)
        async
    {
        let numbers: [Int64] = state.withPartition(partition) { slot in
            guard slot?.generation == generation, let entity = slot?.entities[id], entity.firstRetained <= sequenceNumber
            else { return [] }
            return (entity.firstRetained...min(sequenceNumber, entity.highest)).filter { entity.events[$0] != nil }
        }
        guard !numbers.isEmpty else { return }
        do throws(PersistenceError) {
            try await deliver(
                numbers.map { message(ChangelogKey(id, .event($0)), nil, partition) }, id: id,
                sequenceNumber: numbers.first, partition: partition, generation: generation)
        } catch {
            logger.warning("deleting events covered by a snapshot failed: \(error)")
            return
        }
        state.withPartition(partition) { slot in
            guard slot?.generation == generation, var entity = slot?.entities[id] else { return }
            for number in numbers { entity.events[number] = nil }
            entity.firstRetained = max(entity.firstRetained, sequenceNumber + 1)
            slot?.entities[id] = entity
        }
    }

    private func closedError() -> PersistenceError {
        PersistenceError(.journalClosed, journal: name, message: "the journal was closed; open a new one")
    }
}

// MARK: - State

extension KafkaChangelogJournal {
    struct PartitionState {
        enum Status {
            case restoring
            case ready
            case failed(String)
        }
        var status: Status
        /// Changes with every restore, so that a write or restore that finishes late does not touch newer state.
        var generation: UInt64
        var entities: [PersistenceID: ChangelogEntity] = [:]
    }

    /// The journal's state: each partition's behind a lock of its own, so that entities of different partitions
    /// (and the delivery reports of other partitions) never wait for each other. An object of its own: the delivery
    /// receiver records reported appends in it without holding the journal.
    final class LockedState: Sendable {
        /// One per changelog partition; `nil` while the partition is not restored here.
        private let partitions: [PartitionLock]
        private let closed = Atomic<Bool>(false)
        private let lastGeneration = Atomic<UInt64>(0)

        private final class PartitionLock: Sendable {
            let mutex = Mutex<PartitionState?>(nil)
        }

        init(partitionCount: Int32) {
            partitions = (0..<max(partitionCount, 0)).map { _ in PartitionLock() }
        }

        var isClosed: Bool { closed.load(ordering: .acquiring) }

        /// Closes the journal; `true` the first time.
        func close() -> Bool { !closed.exchange(true, ordering: .acquiringAndReleasing) }

        /// A generation no restore had before.
        func nextGeneration() -> UInt64 { lastGeneration.wrappingAdd(1, ordering: .relaxed).newValue }

        /// Runs `body` on the partition's state under the partition's lock. `partition` must be one of the
        /// changelog's (callers check it, or compute it from the partitioner).
        func withPartition<Result: Sendable, Failure: Error>(
            _ partition: Int32, _ body: (inout PartitionState?) throws(Failure) -> Result
        ) throws(Failure) -> Result {
            try partitions[Int(partition)].mutex.withLock { (slot) throws(Failure) -> Result in try body(&slot) }
        }
    }
}

extension KafkaChangelogJournal.PartitionState {
    /// Throws unless the journal is open and the partition is restored here.
    static func checkReady(
        _ slot: Self?, _ partition: Int32, id: PersistenceID, isClosed: Bool, journal: String, topic: String,
        sequenceNumber: Int64?
    ) throws(PersistenceError) {
        guard !isClosed else {
            throw PersistenceError(
                .journalClosed, journal: journal, persistenceID: id, sequenceNumber: sequenceNumber,
                message: "the journal was closed; open a new one")
        }
        let reason: String
        switch slot?.status {
        case .ready?: return
        case nil: reason = "it is not restored on this instance (not assigned here); call restore(partitions:)"
        case .restoring?: reason = "its restore has not finished; entities start after it"
        case .failed(let why)?: reason = "\(why); restore it again (restore(partitions:))"
        }
        throw PersistenceError(
            .partitionNotRestored, journal: journal, persistenceID: id, sequenceNumber: sequenceNumber,
            message: "the entity lives in partition \(partition) of '\(topic)', and " + reason)
    }

    /// Runs `body` on the entity's state (made empty if new) and the partition's generation, once the partition is
    /// ready.
    static func modifyEntity<T>(
        _ id: PersistenceID, in slot: inout Self?, _ partition: Int32, isClosed: Bool, journal: String,
        topic: String, sequenceNumber: Int64?, _ body: (inout ChangelogEntity, UInt64) throws(PersistenceError) -> T
    ) throws(PersistenceError) -> T {
        try checkReady(
            slot, partition, id: id, isClosed: isClosed, journal: journal, topic: topic, sequenceNumber: sequenceNumber)
        let generation = slot!.generation
        return try body(&slot!.entities[id, default: ChangelogEntity()], generation)
    }
}

// MARK: - Testing hooks

extension KafkaChangelogJournal {
    /// The key of an event's changelog record (so a test can damage it by producing another value there).
    @_spi(Testing) public func eventKeyForTesting(of id: PersistenceID, sequenceNumber: Int64) -> [UInt8] {
        ChangelogKey(id, .event(sequenceNumber)).bytes
    }
}
