import Foundation
import Logging
import SluiceBenchBaseline
import SluiceKafka
import Synchronization

/// The four measured workloads: produce and consume, through SluiceKafka and through raw librdkafka in C.
/// Both sides use the same settings: SluiceKafka's configuration defaults, with a 6 s session timeout.
struct KafkaWorkloads: Sendable {
    var bootstrapServers: [String]
    var messageSize: Int
    /// How long a consumer may go without a message (the group join included) before the run fails.
    var stallTimeout: Duration
    var consumerAPI: ConsumerAPI
    var producerAPI: ProducerAPI
    /// `fetch.queue.backoff.ms` of both consumers.
    var fetchQueueBackoff: Duration
    var logger: Logger

    enum ConsumerAPI: String, CaseIterable, Sendable {
        /// `KafkaConsumer.messageBatches`: whole batches per await.
        case batches
        /// `KafkaConsumer.messages`: one message per await.
        case messages
    }

    enum ProducerAPI: String, CaseIterable, Sendable {
        /// `KafkaProducer.send(_:route:tag:)`: reports in batches to one receiver.
        case receiver
        /// `KafkaProducer.send(_:onDelivery:)`: a closure per message.
        case closure
    }

    /// Sluice's default `fetch.queue.backoff.ms`, which the C baseline uses too unless told otherwise.
    static var defaultFetchQueueBackoff: Duration {
        KafkaConsumerConfiguration(bootstrapServers: [], groupID: "").fetchQueueBackoff
    }

    /// The payload every message carries (the C baseline uses the same bytes).
    var payload: [UInt8] { (0..<messageSize).map { UInt8(ascii: "a") + UInt8($0 % 26) } }

    // MARK: - C baselines

    func baselineProduce(topic: String, count: Int) async throws -> Throughput {
        let servers = bootstrapServers.joined(separator: ",")
        let size = messageSize
        let result = await runOnDedicatedThread(name: "bench-c-produce") {
            Result {
                try callBaseline { errorBuffer, errorLength in
                    sluice_baseline_produce(servers, topic, count, Int32(size), errorBuffer, errorLength)
                }
            }
        }
        let seconds = try result.get()
        return Throughput(seconds: seconds, messages: count, payloadBytes: count * messageSize)
    }

    func baselineConsume(topic: String, group: String, count: Int) async throws -> Throughput {
        let servers = bootstrapServers.joined(separator: ",")
        let stallMilliseconds = Int32(clamping: Int(stallTimeout.seconds * 1000))
        let backoff = Int32(clamping: fetchQueueBackoff.milliseconds)
        let result = await runOnDedicatedThread(name: "bench-c-consume") {
            Result { () throws -> (Double, Int) in
                var bytes: Int64 = 0
                let seconds = try callBaseline { errorBuffer, errorLength in
                    sluice_baseline_consume(
                        servers, topic, group, count, &bytes, backoff, stallMilliseconds, errorBuffer, errorLength)
                }
                return (seconds, Int(bytes))
            }
        }
        let (seconds, bytes) = try result.get()
        return Throughput(seconds: seconds, messages: count, payloadBytes: bytes)
    }

    // MARK: - SluiceKafka

    /// Counts delivery reports from the producer's poll thread.
    final class DeliveryCounter: KafkaDeliveryReceiver {
        let delivered = Atomic<Int>(0)
        let failed = Atomic<Int>(0)
        let firstError = Mutex<KafkaError?>(nil)

        var completed: Int { delivered.load(ordering: .acquiring) + failed.load(ordering: .acquiring) }

        func record(_ result: Result<KafkaDeliveryReport, KafkaError>) {
            switch result {
            case .success:
                delivered.add(1, ordering: .releasing)
            case .failure(let error):
                if failed.add(1, ordering: .releasing).oldValue == 0 { firstError.withLock { $0 = error } }
            }
        }

        func receiveDeliveries(_ deliveries: [KafkaDelivery]) {
            var succeeded = 0
            for delivery in deliveries {
                if case .success = delivery.result { succeeded += 1 } else { record(delivery.result) }
            }
            delivered.add(succeeded, ordering: .releasing)
        }
    }

    /// Produces with `KafkaProducer.send(_:route:tag:)` (or `send(_:onDelivery:)`), counting deliveries; the time
    /// runs from the first send to the last delivery report.
    func sluiceProduce(topic: String, count: Int) async throws -> Throughput {
        let producer = try KafkaProducer(
            configuration: KafkaProducerConfiguration(bootstrapServers: bootstrapServers), logger: logger)
        let counter = DeliveryCounter()
        let onDelivery: KafkaProducer.DeliveryHandler = { counter.record($0) }
        let payload = self.payload
        let clock = ContinuousClock()
        let start = clock.now
        do {
            switch producerAPI {
            case .receiver:
                let route = try producer.register(counter)
                for index in 0..<count {
                    try await producer.send(
                        KafkaProducerMessage(topic: topic, value: payload), route: route, tag: UInt64(index))
                }
            case .closure:
                for _ in 0..<count {
                    try await producer.send(KafkaProducerMessage(topic: topic, value: payload), onDelivery: onDelivery)
                }
            }
            try await producer.flush(timeout: .seconds(60))
            // flush returns once librdkafka holds nothing more; the last callback may still be returning.
            let deadline = ContinuousClock.now + .seconds(5)
            while counter.completed < count && ContinuousClock.now < deadline { await Task.yield() }
        } catch {
            try? await producer.close(timeout: .seconds(5))
            throw error
        }
        let elapsed = clock.now - start
        try await producer.close()
        let delivered = counter.delivered.load(ordering: .acquiring)
        guard delivered == count else {
            let firstError = counter.firstError.withLock { $0 }
            throw BenchError(
                "Sluice produce: \(delivered) of \(count) delivered, \(counter.failed.load(ordering: .acquiring)) failed"
                    + (firstError.map { " (first error: \($0))" } ?? ""))
        }
        return Throughput(seconds: elapsed.seconds, messages: count, payloadBytes: count * messageSize)
    }

    /// What the consuming task has seen, for the stall watchdog.
    final class ConsumeProgress: Sendable {
        let received = Atomic<Int>(0)
        let stalled = Atomic<Bool>(false)
    }

    /// Joins a fresh group with `KafkaConsumer` and reads `count` messages, touching every payload; the time runs
    /// from the first message received to the last (the group join is excluded).
    func sluiceConsume(topic: String, group: String, count: Int) async throws -> Throughput {
        var configuration = KafkaConsumerConfiguration(bootstrapServers: bootstrapServers, groupID: group)
        configuration.sessionTimeout = .seconds(6)
        configuration.fetchQueueBackoff = fetchQueueBackoff
        let consumer = try KafkaConsumer(configuration: configuration, logger: logger)
        try consumer.subscribe(topics: [topic])

        let progress = ConsumeProgress()
        let stallTimeout = self.stallTimeout
        let watchdog = Task {
            let clock = ContinuousClock()
            var lastSeen = -1
            var lastChange = clock.now
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(100))
                let seen = progress.received.load(ordering: .relaxed)
                if seen != lastSeen {
                    lastSeen = seen
                    lastChange = clock.now
                } else if clock.now - lastChange > stallTimeout {
                    progress.stalled.store(true, ordering: .relaxed)
                    await consumer.close()  // ends the iteration below
                    return
                }
            }
        }

        let clock = ContinuousClock()
        var first: ContinuousClock.Instant?
        var last = clock.now
        var received = 0
        var bytes = 0
        var checksum: UInt = 0  // sums every payload's first byte, so each payload is really read
        do {
            switch consumerAPI {
            case .batches:
                for try await batch in consumer.messageBatches {
                    if first == nil { first = clock.now }
                    for message in batch {
                        if let value = message.value {
                            bytes += value.count
                            checksum &+= UInt(value.first ?? 0)
                        }
                    }
                    received += batch.count
                    last = clock.now
                    progress.received.store(received, ordering: .relaxed)
                    if received >= count { break }
                }
            case .messages:
                for try await message in consumer.messages {
                    if first == nil { first = clock.now }
                    if let value = message.value {
                        bytes += value.count
                        checksum &+= UInt(value.first ?? 0)
                    }
                    received += 1
                    if received & 1023 == 0 { progress.received.store(received, ordering: .relaxed) }
                    if received >= count {
                        last = clock.now
                        break
                    }
                }
            }
        } catch {
            watchdog.cancel()
            await consumer.close()
            throw error
        }
        watchdog.cancel()
        await consumer.close()
        if checksum == 1 { logger.trace("checksum \(checksum)") }  // keeps the payload reads alive
        guard received >= count, let first else {
            let reason =
                progress.stalled.load(ordering: .relaxed) ? "no message for \(stallTimeout)" : "the stream ended"
            throw BenchError("Sluice consume: \(reason) after \(received) of \(count) messages")
        }
        return Throughput(seconds: (last - first).seconds, messages: received, payloadBytes: bytes)
    }
}
