public import Logging
public import SluiceKafka
public import SluiceStreams
import Synchronization

/// Producer stages (modelled on Pekko Connectors Kafka's `Producer`): a flow that produces each envelope and emits
/// its delivery result in order, sinks built on it, and a sink that commits each envelope's offset once delivered
/// (``committableSink(producer:committerSettings:parallelism:)``).
public enum KafkaProducerStages {
    /// Produces each envelope's messages with `producer` and emits the results in envelope order, keeping at most
    /// `parallelism` envelopes in flight (that bound is the stage's backpressure). The producer is shared: the
    /// caller closes it.
    ///
    /// The flow's throughput is at most `parallelism` divided by the delivery latency (the producer's linger plus
    /// the broker's round trip). The default, 50,000, leaves that far above what one producer sends: at 10,000
    /// and about 15 ms of latency, a topic-to-topic bridge on a 2-core machine stopped near 650,000 messages per
    /// second while its CPU had room (see `docs/benchmarks.md`). The window keeps a slot per envelope in flight,
    /// allocated up front: `parallelism` times the pass-through value's size.
    ///
    /// A delivery failure (after librdkafka's own retries, within `message.timeout.ms`) fails the stream; what was
    /// not delivered is not passed through, so its offset is never committed.
    public static func flow<PassThrough: Sendable>(
        producer: KafkaProducer, parallelism: Int = 50_000
    ) -> Flow<ProducerEnvelope<PassThrough>, ProducerResult<PassThrough>, Void> {
        Flow.fromElements { upstream in
            produced(upstream, producer: producer, parallelism: parallelism, onFinish: nil)
        }
    }

    /// Like ``flow(producer:parallelism:)``, but creates a producer from `configuration` for each run and
    /// flushes and closes it when the stream ends.
    public static func flow<PassThrough: Sendable>(
        configuration: KafkaProducerConfiguration, parallelism: Int = 50_000,
        logger: Logger = Logger(label: "sluice.kafka.producer")
    ) -> Flow<ProducerEnvelope<PassThrough>, ProducerResult<PassThrough>, Void> {
        Flow { upstream in
            let producer = try KafkaProducer(configuration: configuration, logger: logger)
            let elements = produced(upstream, producer: producer, parallelism: parallelism) {
                try await producer.close()
            }
            return (elements, ())
        }
    }

    /// Produces every message with `producer`; completes when the stream has ended and every message is delivered.
    public static func sink(
        producer: KafkaProducer, parallelism: Int = 50_000
    ) -> Sink<KafkaProducerMessage, StreamCompletion<Void>> {
        Flow<KafkaProducerMessage, KafkaProducerMessage, Void>()
            .map { ProducerEnvelope<Void>.single($0, ()) }
            .via(flow(producer: producer, parallelism: parallelism))
            .toMat(Sink.ignore(), Keep.right)
    }

    /// Each envelope's delivery result, in envelope order; a failed delivery fails the stream after the results
    /// before it.
    ///
    /// Envelopes and results are moved from stage to window to chunk, never copied: a copy retains every reference
    /// an element holds (message buffers, topic names, the pass-through's own), and dropping the original releases
    /// them again, per message.
    static func produced<PassThrough: Sendable>(
        _ upstream: StreamElements<ProducerEnvelope<PassThrough>>, producer: KafkaProducer, parallelism: Int,
        onFinish: (@Sendable () async throws -> Void)?
    ) -> StreamElements<ProducerResult<PassThrough>> {
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
                var pending: [PendingSend<PassThrough>] = []
                while var chunk = try await envelopes.nextChunk() {
                    chunk.reverseByMoving()
                    while !chunk.isEmpty {
                        guard let slots = await window.reserve(upTo: chunk.count) else { return }
                        // The single messages' pass-through values wait for their reports from before the first of
                        // them is sent, all under one lock; then everything is sent in envelope order.
                        pending.removeAll(keepingCapacity: true)
                        passThroughs.expect { expect in
                            for slot in slots {
                                switch chunk.removeLast() {
                                case .single(let message, let passThrough):
                                    expect(slot, passThrough)
                                    pending.append(.single(slot: slot, message))
                                case let other:
                                    pending.append(.other(slot: slot, other))
                                }
                            }
                        }
                        try await send(
                            &pending, producer: producer, window: window, route: route, passThroughs: passThroughs)
                    }
                }
                try await onFinish?()
            }
            // The outcomes that are ready go downstream together, in order, unwrapped up to the first failure.
            var pendingFailure: KafkaError?
            return {
                if let failure = pendingFailure { throw failure }
                guard var outcomes = try await pump.nextChunk(maxCount: min(parallelism, windowChunkSize)) else {
                    return nil
                }
                outcomes.reverseByMoving()
                var results: [ProducerResult<PassThrough>] = []
                results.reserveCapacity(outcomes.count)
                while let outcome = outcomes.popLast() {
                    switch consume outcome {
                    case .success(let result):
                        results.append(result)
                    case .failure(let error):
                        guard !results.isEmpty else { throw error }
                        pendingFailure = error
                        return results
                    }
                }
                return results
            }
        }
    }
}

extension KafkaProducerStages {
    /// Sends reserved envelopes in order (single messages' pass-through values are expected already). If a send
    /// fails, the single messages not sent are forgotten by `passThroughs` before the error is thrown.
    ///
    /// Each envelope is moved out of `pending` and its message into the producer: a copy would retain the message's
    /// buffers and topic name, and dropping the original would release them again.
    static func send<PassThrough: Sendable>(
        _ pending: inout [PendingSend<PassThrough>], producer: KafkaProducer,
        window: ResultWindow<PassThrough>, route: KafkaDeliveryRoute, passThroughs: WindowPassThroughs<PassThrough>
    ) async throws {
        pending.reverseByMoving()
        while let next = pending.popLast() {
            var unsentSingle: UInt64?
            do {
                switch consume next {
                case .single(let slot, let message):
                    unsentSingle = slot
                    try await producer.send(message, route: route, tag: slot)
                case .other(let slot, let envelope):
                    try await produce(envelope, slot: slot, producer: producer, window: window)
                }
            } catch {
                if let unsentSingle { passThroughs.abandon(unsentSingle) }
                for case .single(let slot, _) in pending { passThroughs.abandon(slot) }
                throw error
            }
        }
    }

    /// Produces a multi-message or pass-through-only envelope into its window place (a multi-message envelope's
    /// place is filled when all its deliveries are reported).
    static func produce<PassThrough: Sendable>(
        _ envelope: consuming ProducerEnvelope<PassThrough>, slot: UInt64, producer: KafkaProducer,
        window: ResultWindow<PassThrough>
    ) async throws {
        switch consume envelope {
        case .single:
            preconditionFailure("single messages are sent by send(_:producer:window:route:passThroughs:)")
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

/// An envelope whose window place is reserved, about to be sent: a single message (its pass-through value waits in
/// the flow's ``WindowPassThroughs``), or another envelope.
enum PendingSend<PassThrough: Sendable> {
    case single(slot: UInt64, KafkaProducerMessage)
    case other(slot: UInt64, ProducerEnvelope<PassThrough>)
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

