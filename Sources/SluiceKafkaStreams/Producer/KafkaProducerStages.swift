public import Logging
public import SluiceKafka
public import SluiceStreams
import Synchronization

/// Producer stages (modelled on Pekko Connectors Kafka's `Producer`): a flow that produces each envelope and emits
/// its delivery result in order, and sinks built on it.
public enum KafkaProducerStages {
    /// Produces each envelope's messages with `producer` and emits the results in envelope order, keeping at most
    /// `parallelism` envelopes in flight (that bound is the stage's backpressure). The producer is shared: the
    /// caller closes it.
    ///
    /// A delivery failure (after librdkafka's own retries, within `message.timeout.ms`) fails the stream; what was
    /// not delivered is not passed through, so its offset is never committed.
    public static func flow<PassThrough: Sendable>(
        producer: KafkaProducer, parallelism: Int = 10_000
    ) -> Flow<ProducerEnvelope<PassThrough>, ProducerResult<PassThrough>, Void> {
        Flow.fromElements { upstream in
            produced(upstream, producer: producer, parallelism: parallelism, onFinish: nil)
        }
        .map { try $0.get() }
    }

    /// Like ``flow(producer:parallelism:)``, but creates a producer from `configuration` for each run and
    /// flushes and closes it when the stream ends.
    public static func flow<PassThrough: Sendable>(
        configuration: KafkaProducerConfiguration, parallelism: Int = 10_000,
        logger: Logger = Logger(label: "sluice.kafka.producer")
    ) -> Flow<ProducerEnvelope<PassThrough>, ProducerResult<PassThrough>, Void> {
        Flow { upstream in
            let producer = try KafkaProducer(configuration: configuration, logger: logger)
            let elements = produced(upstream, producer: producer, parallelism: parallelism) {
                try await producer.close()
            }
            return (elements, ())
        }
        .map { try $0.get() }
    }

    /// Produces every message with `producer`; completes when the stream has ended and every message is delivered.
    public static func sink(
        producer: KafkaProducer, parallelism: Int = 10_000
    ) -> Sink<KafkaProducerMessage, StreamCompletion<Void>> {
        Flow<KafkaProducerMessage, KafkaProducerMessage, Void>()
            .map { ProducerEnvelope<Void>.single($0, ()) }
            .via(flow(producer: producer, parallelism: parallelism))
            .toMat(Sink.ignore(), Keep.right)
    }

    /// Each envelope's delivery outcome, in envelope order. The flows unwrap the outcomes with a fused `map`, so a
    /// failed delivery fails the stream after the results before it.
    static func produced<PassThrough: Sendable>(
        _ upstream: StreamElements<ProducerEnvelope<PassThrough>>, producer: KafkaProducer, parallelism: Int,
        onFinish: (@Sendable () async throws -> Void)?
    ) -> StreamElements<Result<ProducerResult<PassThrough>, KafkaError>> {
        .makeChunked {
            let window = ResultWindow<PassThrough>(capacity: parallelism, ordered: true)
            let (receiver, passThroughs) = WindowDeliveries.make(window: window, producer: producer)
            let pump = WindowPump(window: window) {
                defer { passThroughs.finish() }
                let route = try producer.register(receiver)
                passThroughs.registered(as: route)
                // Envelopes come in chunks, and take their places in the window a chunk at a time: one lock and at
                // most one suspension per chunk, not per message.
                var envelopes = upstream.makeAsyncIterator()
                while let chunk = try await envelopes.nextChunk() {
                    var next = 0
                    while next < chunk.count {
                        guard let slots = await window.reserve(upTo: chunk.count - next) else { return }
                        for slot in slots {
                            try await produce(
                                chunk[next], slot: slot, producer: producer, window: window, route: route,
                                passThroughs: passThroughs)
                            next += 1
                        }
                    }
                }
                try await onFinish?()
            }
            // The outcomes that are ready go downstream together, in order.
            return { try await pump.nextChunk(maxCount: min(parallelism, windowChunkSize)) }
        }
    }
}

extension KafkaProducerStages {
    /// Produces one envelope into its window place; the place is filled when its deliveries are reported (a single
    /// message's through `passThroughs`' receiver, a batch at a time).
    @inline(__always)
    static func produce<PassThrough: Sendable>(
        _ envelope: ProducerEnvelope<PassThrough>, slot: UInt64, producer: KafkaProducer,
        window: ResultWindow<PassThrough>, route: KafkaDeliveryRoute, passThroughs: WindowPassThroughs<PassThrough>
    ) async throws {
        switch envelope {
        case .single(let message, let passThrough):
            passThroughs.expect(slot, passThrough: passThrough)
            do {
                try await producer.send(message, route: route, tag: slot)
            } catch {
                passThroughs.abandon(slot)
                throw error
            }
        case .multi(let messages, let passThrough):
            let collector = MultiDelivery(count: messages.count) { result in
                window.fill(slot, with: result.map { .multi($0, passThrough) })
            }
            for (index, message) in messages.enumerated() {
                try await producer.send(message) { collector.delivered(index, $0) }
            }
        case .passThrough(let passThrough):
            window.fill(slot, with: .success(.passThrough(passThrough)))
        }
    }
}

typealias ResultWindow<PassThrough: Sendable> = AsyncWindow<Result<ProducerResult<PassThrough>, KafkaError>>

/// Collects the delivery reports of a multi-message envelope; reports once, when all are in (or one failed).
final class MultiDelivery: Sendable {
    private let state: Mutex<(reports: [KafkaDeliveryReport?], remaining: Int, done: Bool)>
    private let completion: @Sendable (Result<[KafkaDeliveryReport], KafkaError>) -> Void

    init(count: Int, completion: @escaping @Sendable (Result<[KafkaDeliveryReport], KafkaError>) -> Void) {
        self.state = Mutex((Array(repeating: nil, count: count), count, false))
        self.completion = completion
        if count == 0 {
            state.withLock { $0.done = true }
            completion(.success([]))
        }
    }

    func delivered(_ index: Int, _ result: Result<KafkaDeliveryReport, KafkaError>) {
        let outcome: Result<[KafkaDeliveryReport], KafkaError>? = state.withLock { state in
            guard !state.done else { return nil }
            switch result {
            case .failure(let error):
                state.done = true
                return .failure(error)
            case .success(let report):
                state.reports[index] = report
                state.remaining -= 1
                guard state.remaining == 0 else { return nil }
                state.done = true
                return .success(state.reports.map { $0! })
            }
        }
        if let outcome { completion(outcome) }
    }
}

