public import SluiceKafka
public import SluiceStreams

extension KafkaProducerStages {
    /// Produces each envelope's messages with `producer` and commits the envelope's offset once they are delivered:
    /// consume → transform → produce → commit as one stage (Pekko Connectors Kafka's `Producer.committableSink`).
    ///
    /// It commits what ``flow(producer:parallelism:)`` followed by ``KafkaCommitter/sink(_:)`` would, with less
    /// work per message: each delivery report acknowledges its offset as it arrives, in whatever order the reports
    /// come (a partition's position never passes an offset whose messages are not delivered), instead of the results
    /// being put back in envelope order and handed to a committer stage. A pass-through-only envelope's offset is
    /// acknowledged at once; a multi-message envelope's when all its messages are delivered.
    ///
    /// At most `parallelism` envelopes are in flight (sent, not yet reported): that bound is the stage's
    /// backpressure. A delivery failure (after librdkafka's own retries, within `message.timeout.ms`) fails the
    /// stream, and the failed message's offset is never committed. When the stream ends, the sink waits for the
    /// reports of everything it sent, then commits; it completes when that last commit landed. The producer is
    /// shared: the caller closes it.
    public static func committableSink(
        producer: KafkaProducer, committerSettings: KafkaCommitterSettings = .init(), parallelism: Int = 50_000
    ) -> Sink<ProducerEnvelope<CommittableOffset>, StreamCompletion<Void>> {
        Sink.fromLoop { envelopes in
            try await produceAndCommit(
                envelopes, producer: producer, committer: CommitBatcher(settings: committerSettings),
                parallelism: parallelism)
        }
    }

    private static func produceAndCommit(
        _ envelopes: StreamElements<ProducerEnvelope<CommittableOffset>>, producer: KafkaProducer,
        committer: CommitBatcher, parallelism: Int
    ) async throws {
        let inFlight = OffsetsInFlight(
            capacity: parallelism, committer: committer, unregister: { [weak producer] in producer?.unregister($0) })
        let route = try producer.register(inFlight)
        inFlight.registered(as: route)
        let timer = Task { await committer.commitOnTime() }
        defer { timer.cancel() }
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    defer { inFlight.stopWatching() }
                    try await sendAll(envelopes, producer: producer, route: route, inFlight: inFlight)
                    try await inFlight.finish()
                }
                // A delivery failure fails the sink at once, even while it waits for upstream.
                group.addTask { try await inFlight.watchForFailure() }
                while try await group.next() != nil {}
            }
        } catch {
            inFlight.stopSending()
            throw error
        }
        try Task.checkCancellation()
        _ = try await committer.finish()
    }

    /// Reserves a slot for each envelope and sends it, until upstream ends.
    private static func sendAll(
        _ envelopes: StreamElements<ProducerEnvelope<CommittableOffset>>, producer: KafkaProducer,
        route: KafkaDeliveryRoute, inFlight: OffsetsInFlight
    ) async throws {
        var iterator = envelopes.makeAsyncIterator()
        var pending: [(slot: UInt64, envelope: ProducerEnvelope<CommittableOffset>)] = []
        while var chunk = try await iterator.nextChunk() {
            chunk.reverseByMoving()
            while !chunk.isEmpty {
                let slots = try await inFlight.reserve(upTo: chunk.count)
                // Every envelope's offset waits in its slot for its report, all under one lock; then everything is
                // sent in envelope order.
                pending.removeAll(keepingCapacity: true)
                inFlight.expect { expect in
                    for slot in slots {
                        let envelope = chunk.removeLast()
                        switch envelope {
                        case .single(_, let offset), .multi(_, let offset), .passThrough(let offset):
                            expect(slot, offset)
                        }
                        pending.append((slot, envelope))
                    }
                }
                try await send(&pending, producer: producer, route: route, inFlight: inFlight)
            }
        }
    }

    /// Sends reserved envelopes in order. If a send fails, the slots of the envelopes not sent are given up before
    /// the error is thrown.
    private static func send(
        _ pending: inout [(slot: UInt64, envelope: ProducerEnvelope<CommittableOffset>)], producer: KafkaProducer,
        route: KafkaDeliveryRoute, inFlight: OffsetsInFlight
    ) async throws {
        pending.reverseByMoving()
        while let (slot, envelope) = pending.popLast() {
            do {
                switch consume envelope {
                case .single(let message, _):
                    try await producer.send(message, route: route, tag: slot)
                case .multi(let messages, _):
                    let collector = MultiDelivery(count: messages.count) { result in
                        inFlight.settle(slot, result.map { _ in () })
                    }
                    for (index, message) in messages.enumerated() {
                        try await producer.send(message) { collector.delivered(index, $0) }
                    }
                case .passThrough:
                    inFlight.settle(slot, .success(()))
                }
            } catch {
                inFlight.abandon(slot)
                for (slot, _) in pending { inFlight.abandon(slot) }
                throw error
            }
        }
    }
}
