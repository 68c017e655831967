import DequeModule
public import Logging
public import SluiceKafka
public import SluiceStreams
import Synchronization

extension KafkaSource {
    /// One sub-source per assigned partition: each emits that partition's messages (with committable offsets) and
    /// completes when the partition is revoked. Process partitions independently (for example one sub-stream per
    /// partition, merged into one committer) without one slow partition holding the others back.
    ///
    /// Each sub-source buffers at most ``KafkaSourceSettings/maxInFlightPerPartition`` messages; beyond that its
    /// partition is paused in librdkafka until the sub-stream catches up. A sub-source can be run once.
    public static func committablePartitioned(
        _ settings: KafkaSourceSettings, logger: Logger = Logger(label: "sluice.kafka.source")
    ) -> Source<(KafkaTopicPartition, Source<CommittableMessage, Void>), KafkaConsumerControl> {
        Source {
            let router = PartitionRouter(capacity: settings.maxInFlightPerPartition, logger: logger)
            // Sub-source channels bound each partition; the ledger's own limit is not needed on top.
            let coordinator = KafkaCommitCoordinator(maxInFlightPerPartition: Int.max / 2, logger: logger) { _ in }
            let consumer = try KafkaConsumer(configuration: settings.consumer, logger: logger) { event in
                await coordinator.handle(event, settings: settings, opened: { router.open($0) }) { router.close($0) }
            }
            coordinator.attach(consumer)
            router.attach(consumer)
            try settings.subscription.apply(to: consumer)
            let counters = SourceCounters()
            let control = KafkaConsumerControl(consumer: consumer, coordinator: coordinator, counters: counters) {
                router.closeAll()
                router.detach()
            }
            let pumpTask = LazyTask()
            let elements = StreamElements<(KafkaTopicPartition, Source<CommittableMessage, Void>)>.make {
                return {
                    pumpTask.startOnce {
                        // Routes messages to their partition's sub-source until the consumer closes or stops.
                        do {
                            while !control.isStopped {
                                switch try await consumer.read() {
                                case .message(let message)?:
                                    let ledger = coordinator.ledger(for: message.topicPartition)
                                    guard ledger.admit(message.offset) == .registered else { continue }
                                    counters.emit()
                                    router.route(CommittableMessage(message, ledger: ledger))
                                case .wokenUp?: continue
                                case nil: break
                                }
                                if control.isStopped { break }
                            }
                        } catch {
                            router.fail(error)
                            return
                        }
                        router.closeAll()
                    }
                    return try await router.subSources.receive()
                }
            }
            return (elements, control)
        }
    }
}

/// Routes a partitioned source's messages to per-partition channels and announces new partitions.
final class PartitionRouter: Sendable {
    private struct Route {
        let channel: StreamChannel<CommittableMessage>
        /// Messages that did not fit the channel, waiting (in order) for the sub-stream to catch up.
        var held = Deque<CommittableMessage>()
        var isDraining = false
    }

    /// The sub-sources, one per assigned partition, in assignment order.
    let subSources = StreamChannel<(KafkaTopicPartition, Source<CommittableMessage, Void>)>(capacity: 4096)
    private let routes = Mutex<[KafkaTopicPartition: Route]>([:])
    private let capacity: Int
    private let consumerBox = ConsumerBox()
    private let logger: Logger

    init(capacity: Int, logger: Logger) {
        self.capacity = max(capacity, 1)
        self.logger = logger
    }

    func attach(_ consumer: KafkaConsumer) { consumerBox.set(consumer) }
    func detach() { consumerBox.clear() }

    func open(_ partitions: [KafkaTopicPartition]) {
        for partition in partitions {
            let channel = StreamChannel<CommittableMessage>(capacity: capacity)
            let previous = routes.withLock { routes in
                defer { routes[partition] = Route(channel: channel) }
                return routes[partition]
            }
            previous?.channel.finish()
            let subSource = Source<CommittableMessage, Void> {
                (StreamElements<CommittableMessage>.make { { try await channel.receive() } }, ())
            }
            if !subSources.trySend((partition, subSource)) {
                logger.error("more than \(subSources.capacity) partitions waiting to be taken; \(partition) is not served")
            }
        }
    }

    func route(_ message: CommittableMessage) {
        let partition = message.committableOffset.topicPartition
        enum Outcome { case sent, held(startDrain: Bool), dropped }
        let outcome: Outcome = routes.withLock { routes in
            guard var route = routes[partition] else { return .dropped }
            if route.held.isEmpty && route.channel.trySend(message) { return .sent }
            route.held.append(message)
            let startDrain = !route.isDraining
            route.isDraining = true
            routes[partition] = route
            return .held(startDrain: startDrain)
        }
        guard case .held(let startDrain) = outcome, startDrain else { return }
        // The sub-stream is behind: stop fetching the partition and feed it the held messages as it catches up.
        if let consumer = consumerBox.get() {
            do { try consumer.pause([partition]) } catch { logger.warning("cannot pause \(partition): \(error)") }
        }
        Task { await drain(partition) }
    }

    private func drain(_ partition: KafkaTopicPartition) async {
        while true {
            let next: (StreamChannel<CommittableMessage>, CommittableMessage)? = routes.withLock { routes in
                guard var route = routes[partition], let first = route.held.popFirst() else {
                    routes[partition]?.isDraining = false
                    return nil
                }
                routes[partition] = route
                return (route.channel, first)
            }
            guard let (channel, message) = next else { break }
            guard await channel.send(message) else { break }
        }
        if let consumer = consumerBox.get(), routes.withLock({ $0[partition] != nil }) {
            do { try consumer.resume([partition]) } catch { logger.warning("cannot resume \(partition): \(error)") }
        }
    }

    /// Completes the sub-sources of partitions given up (their held messages are dropped: the next owner reads them).
    func close(_ partitions: [KafkaTopicPartition]) {
        let closed = routes.withLock { routes in partitions.compactMap { routes.removeValue(forKey: $0) } }
        for route in closed { route.channel.finish() }
    }

    func closeAll() {
        let all = routes.withLock { routes in
            defer { routes = [:] }
            return Array(routes.values)
        }
        for route in all { route.channel.finish() }
        subSources.finish()
    }

    func fail(_ error: any Error) {
        let all = routes.withLock { routes in
            defer { routes = [:] }
            return Array(routes.values)
        }
        for route in all { route.channel.fail(error) }
        subSources.fail(error)
    }
}
