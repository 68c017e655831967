import DequeModule
import Foundation
import Logging
import SluiceConnectorConfig
import SluiceKafka
import SluiceKafkaStreams
import SluiceStreams
import Synchronization

/// A record on its way to the sink, with the input offsets that become committable once it is settled.
struct ConnectorItem: Sendable {
    var outcome: ProcessingOutcome
    var acks: [CommittableOffset]
    /// Records of one key are settled in order.
    var key: String
}

extension ConnectorRuntime {
    /// The connector's stream: Kafka source → per-record processors → (aggregation) → sink → committer.
    func makeGraph(stores: ProcessorStateStores) throws -> RunnableGraph<(KafkaConsumerControl, StreamCompletion<Void>)> {
        guard let client = clients.client(cluster: configuration.cluster) else {
            throw KafkaError(code: .invalidConfiguration, message: "no Kafka cluster named '\(configuration.cluster)'")
        }
        let source = configuration.source
        var consumer = KafkaConsumerConfiguration(client: client, groupID: source.groupID)
        consumer.autoOffsetReset = source.start == .earliest ? .earliest : .latest
        consumer.client.properties.merge(source.properties) { $1 }
        // A drain has already waited `drain_grace` for the in-flight work; leaving the group after it must fit in the
        // margin the deploy files give above that (15 s), even when the coordinator cannot be reached.
        consumer.closeTimeout = .seconds(10)
        var settings = KafkaSourceSettings(
            consumer: consumer, subscription: source.pattern.map { .pattern($0) } ?? .topics(source.topics))
        settings.maxInFlightPerPartition = configuration.delivery.maxInFlightPerPartition
        let aggregate = configuration.processors.compactMap { if case .aggregate(let a) = $0 { a } else { nil } }.first
        if aggregate != nil {
            // Aggregated inputs wait in open windows; a revoke drops those windows, so do not wait long for them.
            settings.revokeWait = .seconds(2)
        }
        let metrics = self.metrics
        let labels = self.labels
        let logger = self.logger
        settings.onAssigned = { [weak self] partitions in
            // Before the partitions' first message: their deduplication sets come back from the changelog.
            await stores.assign(partitions)
            metrics.increment("sluice_rebalances_total", labels: labels)
            logger.info("assigned \(partitions.map(\.description).joined(separator: ", "))")
            self?.stateJoined()
        }
        settings.onRevoking = { [weak self] partitions in
            self?.revokedPartitions(Set(partitions))
        }
        settings.onRevoked = { partitions in
            stores.revoke(partitions)
            metrics.increment("sluice_rebalances_total", labels: labels)
            logger.info("revoked \(partitions.map(\.description).joined(separator: ", "))")
        }

        let retry = RetryPolicy(configuration.errors)
        let connectorName = configuration.name
        let httpClient = self.httpClient
        let chain = RecordProcessorChain(
            configuration.processors, connector: connectorName, retry: retry, state: stores,
            makeEndpoint: { ApplicationEndpoint($0, client: httpClient) },
            onRetry: { _ in metrics.increment("sluice_messages_retried_total", labels: labels) })
        let entityKey = configuration.entityKey
        let gate = self.gate
        let delivery = configuration.delivery

        // The entity key is selected once per message: it partitions the processors and then the sink.
        let keyed = Flow<CommittableMessage, CommittableMessage, Void>()
            .map { message -> (message: CommittableMessage, key: String) in
                await gate.pass()
                metrics.increment("sluice_messages_consumed_total", labels: labels)
                return (message, Self.key(of: message.message, selector: entityKey))
            }

        let processed: Flow<CommittableMessage, ConnectorItem, Void>
        if chain.isEmpty {
            processed = keyed.map { keyed -> ConnectorItem in
                ConnectorItem(
                    outcome: .deliver(ConnectorRecord(keyed.message.message)), acks: [keyed.message.committableOffset],
                    key: keyed.key)
            }
        } else {
            // One message at a time per entity key, keys in parallel; a slow key does not hold back the others.
            processed = keyed.mapAsyncPartitionedUnordered(
                parallelism: delivery.parallelism, bufferSize: delivery.maxInFlightPerPartition,
                partitionKey: { $0.key }
            ) { keyed -> ConnectorItem in
                ConnectorItem(
                    outcome: try await chain.process(ConnectorRecord(keyed.message.message)),
                    acks: [keyed.message.committableOffset], key: keyed.key)
            }
        }
        var items = processed
        if let aggregate {
            items = items.via(aggregationFlow(aggregate))
        }
        let sink = try sinkFlow()
        return KafkaSource.committable(settings, logger: logger)
            .via(items)
            .via(sink)
            .mapConcat { acks -> [CommittableOffset] in
                metrics.increment("sluice_messages_acknowledged_total", by: Double(acks.count), labels: labels)
                return acks
            }
            .toMat(
                KafkaCommitter.sink(KafkaCommitterSettings(maxBatch: delivery.commitBatch, maxInterval: delivery.commitInterval)),
                Keep.both)
    }

    /// The entity key that orders a message's processing. A message without one (no key, header or field) is
    /// ordered with nothing else: Kafka gives keyless messages no order either, so they run in parallel.
    static func key(of message: KafkaConsumerMessage, selector: KeySelector) -> String {
        let record = ConnectorRecord(message)
        let json: JSONValue? = if case .jsonField = selector { record.json } else { nil }
        return selector.select(record.context(json: json)) ?? "\u{0}\(message.partition)/\(message.offset)"
    }

    // MARK: Failures

    /// Settles a record that could not be processed or delivered: dead-letter topic, drop (when the application
    /// asked and no dead-letter topic is set), or halt (`errors: stop`).
    func settleFailure(_ record: ConnectorRecord, _ failure: RecordFailure, attempts: Int) async throws {
        switch configuration.errors.afterRetries {
        case .deadLetter(let topic, let cluster):
            let message = DeadLetterHeaders.message(
                for: record, topic: topic, connector: configuration.name, failure: failure, attempts: attempts,
                nowMilliseconds: Int64(Date().timeIntervalSince1970 * 1000))
            _ = try await clients.producer(cluster: cluster).send(message)
            metrics.increment("sluice_messages_dead_lettered_total", labels: labels)
            logger.warning("dead-lettered \(record.topic)[\(record.partition)]@\(record.offset) to \(topic) after \(attempts) attempt(s): \(failure)")
        case .stop where failure.disposition == .drop:
            metrics.increment("sluice_messages_dropped_total", labels: labels)
            logger.warning("dropped \(record.topic)[\(record.partition)]@\(record.offset) as the application asked (no dead-letter topic is configured): \(failure)")
        case .stop:
            throw ConnectorHalted(connector: configuration.name, record: "\(record.topic)[\(record.partition)]@\(record.offset)", failure: failure)
        }
    }

    // MARK: Sinks

    private func sinkFlow() throws -> Flow<ConnectorItem, [CommittableOffset], Void> {
        let metrics = self.metrics
        let labels = self.labels
        switch configuration.sink {
        case .http(let endpointConfiguration):
            let endpoint = ApplicationEndpoint(endpointConfiguration, client: httpClient)
            let retry = RetryPolicy(configuration.errors)
            let connector = configuration.name
            let countRetry: @Sendable (RecordFailure, Int) -> Void = { _, _ in metrics.increment("sluice_messages_retried_total", labels: labels) }
            /// One request to the application, its duration observed (each attempt on its own).
            let post: @Sendable ([ConnectorRecord]) async -> Result<[UInt8], RecordFailure> = { records in
                let started = ContinuousClock.now
                defer { metrics.observe("sluice_delivery_duration_seconds", (ContinuousClock.now - started).seconds, labels: labels) }
                return await endpoint.post(records, connector: connector)
            }
            if endpointConfiguration.batchSize == 1 {
                return Flow<ConnectorItem, ConnectorItem, Void>()
                    .mapAsyncPartitionedUnordered(
                        parallelism: endpointConfiguration.concurrency, bufferSize: configuration.delivery.maxInFlightPerPartition,
                        partitionKey: { $0.key }
                    ) { [self] item in
                        guard case .deliver(let record) = item.outcome else {
                            try await settleWithoutDelivery(item)
                            return item.acks
                        }
                        let outcome = try await retry.run(onRetry: countRetry) { await post([record]) }
                        switch outcome {
                        case .success: metrics.increment("sluice_messages_delivered_total", labels: labels)
                        case .failed(let failure, let attempts), .dropped(let failure, let attempts):
                            try await settleFailure(record, failure, attempts: attempts)
                        }
                        return item.acks
                    }
            }
            // Batches go one at a time, in order, so per-key order holds across batches.
            return Flow<ConnectorItem, ConnectorItem, Void>()
                .groupedWithin(endpointConfiguration.batchSize, within: endpointConfiguration.linger)
                .mapAsync(parallelism: 1) { [self] items -> [CommittableOffset] in
                    var records: [ConnectorRecord] = []
                    for item in items {
                        if case .deliver(let record) = item.outcome { records.append(record) } else { try await settleWithoutDelivery(item) }
                    }
                    if !records.isEmpty {
                        let outcome = try await retry.run(onRetry: countRetry) { await post(records) }
                        switch outcome {
                        case .success: metrics.increment("sluice_messages_delivered_total", by: Double(records.count), labels: labels)
                        case .failed(let failure, let attempts), .dropped(let failure, let attempts):
                            for record in records { try await settleFailure(record, failure, attempts: attempts) }
                        }
                    }
                    return items.flatMap(\.acks)
                }
        case .kafka(let topic, let cluster, let keySelector):
            let producer = try clients.producer(cluster: cluster)
            return Flow<ConnectorItem, ConnectorItem, Void>()
                .mapAsync(parallelism: 64) { [self] item -> ProducerEnvelope<[CommittableOffset]> in
                    guard case .deliver(let record) = item.outcome else {
                        try await settleWithoutDelivery(item)
                        return .passThrough(item.acks)
                    }
                    var key = record.key
                    if let keySelector {
                        key = keySelector.select(record.context(json: keySelector == .messageKey ? nil : record.json)).map { Array($0.utf8) }
                    }
                    let message = KafkaProducerMessage(
                        topic: topic, key: key, value: record.value, headers: record.headers,
                        timestampMilliseconds: record.timestampMilliseconds)
                    return .single(message, item.acks)
                }
                .via(KafkaProducerStages.flow(producer: producer, parallelism: configuration.delivery.maxInFlightPerPartition))
                .map { result -> [CommittableOffset] in
                    if case .single = result { metrics.increment("sluice_messages_delivered_total", labels: labels) }
                    return result.passThrough
                }
        case .stdout, .file:
            let writer: LineWriter
            if case .file(let path) = configuration.sink { writer = try LineWriter(appendingTo: path) } else { writer = .standardOutput() }
            return Flow<ConnectorItem, ConnectorItem, Void>()
                .groupedWithin(256, within: .milliseconds(5))
                .mapAsync(parallelism: 1) { [self] items -> [CommittableOffset] in
                    var lines: [[UInt8]] = []
                    for item in items {
                        if case .deliver(let record) = item.outcome {
                            lines.append(RecordEncoding.envelope(record).serialized())
                        } else {
                            try await settleWithoutDelivery(item)
                        }
                    }
                    if !lines.isEmpty {
                        try await writer.write(lines)
                        metrics.increment("sluice_messages_delivered_total", by: Double(lines.count), labels: labels)
                    }
                    return items.flatMap(\.acks)
                }
        }
    }

    /// A skipped or failed item: count it, or settle its failure.
    private func settleWithoutDelivery(_ item: ConnectorItem) async throws {
        switch item.outcome {
        case .skip: metrics.increment("sluice_messages_skipped_total", labels: labels)
        case .failed(let record, let failure, let attempts): try await settleFailure(record, failure, attempts: attempts)
        case .deliver: break
        }
    }

    // MARK: Aggregation

    /// Folds delivered records into windows; emits one record per closed window, carrying every input's offset.
    private func aggregationFlow(_ configuration: AggregateProcessorConfiguration) -> Flow<ConnectorItem, ConnectorItem, Void> {
        let metrics = self.metrics
        let labels = self.labels
        let runtime = self
        return Flow.fromElements { upstream in
            .make {
                let pump = Pump<ConnectorItem>(capacity: 256) { channel in
                    for try await item in upstream {
                        guard await channel.send(item) else { return }
                    }
                }
                var aggregator = WindowAggregator<CommittableOffset>(configuration)
                var ready = Deque<ConnectorItem>()
                var finished = false
                let clock = ContinuousClock()

                func emit(_ results: [WindowAggregator<CommittableOffset>.WindowResult]) {
                    for result in results {
                        metrics.increment("sluice_windows_emitted_total", labels: labels)
                        let record = ConnectorRecord(
                            key: Array(result.key.utf8), value: result.json(function: configuration.function).serialized(),
                            timestampMilliseconds: result.windowEnd - 1, topic: result.partition.topic,
                            partition: result.partition.partition, offset: result.lastOffset)
                        ready.append(ConnectorItem(outcome: .deliver(record), acks: result.acks, key: result.key))
                    }
                }

                return {
                    pump.start()
                    while true {
                        let revoked = runtime.takeRevokedPartitions()
                        if !revoked.isEmpty { aggregator.discard(revoked) }
                        metrics.setGauge("sluice_open_windows", Double(aggregator.openWindowCount), labels: labels)
                        if let next = ready.popFirst() { return next }
                        if finished { return nil }
                        let deadline = aggregator.nextIdleDeadline
                        switch try await pump.channel.receive(until: deadline, clock: deadline == nil ? nil : clock) {
                        case .element(let item):
                            guard case .deliver(let record) = item.outcome else {
                                ready.append(item)
                                continue
                            }
                            let json = record.json
                            let key = configuration.key.select(record.context(json: json)) ?? ""
                            let partition = KafkaTopicPartition(topic: record.topic, partition: record.partition)
                            var result: WindowAggregator<CommittableOffset>.AddResult = .invalid("no input offset")
                            for ack in item.acks {
                                result = aggregator.add(
                                    key: key, timestamp: record.timestampMilliseconds ?? Int64(Date().timeIntervalSince1970 * 1000),
                                    value: json, partition: partition, offset: record.offset, ack: ack)
                            }
                            switch result {
                            case .folded(let closed): emit(closed)
                            case .late(let windowEnd, let streamTime):
                                metrics.increment("sluice_late_records_total", labels: labels)
                                ready.append(ConnectorItem(
                                    outcome: .failed(record, RecordFailure(.drop, errorClass: "LateRecord", message: "the record's window ended at \(windowEnd) ms and closed when stream time reached \(streamTime) ms (grace \(configuration.grace))"), attempts: 1),
                                    acks: item.acks, key: item.key))
                            case .invalid(let reason):
                                ready.append(ConnectorItem(
                                    outcome: .failed(record, RecordFailure(.permanent, errorClass: "AggregateInput", message: reason), attempts: 1),
                                    acks: item.acks, key: item.key))
                            }
                        case .timedOut:
                            emit(aggregator.closeIdle())
                        case .finished:
                            // Open windows are not emitted early: their inputs stay unacknowledged and are consumed
                            // (and aggregated) again after a restart, so a window is never emitted as two halves.
                            finished = true
                        }
                    }
                }
            }
        }
    }
}

extension ConnectorRuntime {
    func revokedPartitions(_ partitions: Set<KafkaTopicPartition>) {
        revokedPartitionsStore.withLock { $0.formUnion(partitions) }
    }

    func takeRevokedPartitions() -> Set<KafkaTopicPartition> {
        revokedPartitionsStore.withLock { store in
            defer { store = [] }
            return store
        }
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
    /// Whole milliseconds (rounded towards zero).
    var wholeMilliseconds: Int64 { components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000 }
}
