/// The messages a ``KafkaConsumer`` hands over, in partition order. Iterate it from one task.
///
/// Ends when the consumer is closed; throws when the consumer hits a fatal error. Cancelling the iterating task
/// ends the iteration (the consumer stays open). A message stays in the consumer until an iterator takes it, so
/// iterating again later (with a new iterator) continues where the last one stopped.
public struct KafkaConsumerMessages: AsyncSequence, Sendable {
    public typealias Element = KafkaConsumerMessage
    let buffer: KafkaConsumerMessageBuffer

    public struct AsyncIterator: AsyncIteratorProtocol {
        let buffer: KafkaConsumerMessageBuffer

        public mutating func next() async throws -> KafkaConsumerMessage? { try await buffer.nextMessage() }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(buffer: buffer) }
}

/// The messages a ``KafkaConsumer`` hands over, as the batches its poll thread took from librdkafka: the cheapest
/// way to consume when a stage works on many messages at once. Iterate it from one task.
public struct KafkaConsumerMessageBatches: AsyncSequence, Sendable {
    public typealias Element = [KafkaConsumerMessage]
    let buffer: KafkaConsumerMessageBuffer

    public struct AsyncIterator: AsyncIteratorProtocol {
        let buffer: KafkaConsumerMessageBuffer
        public mutating func next() async throws -> [KafkaConsumerMessage]? { try await buffer.nextBatch() }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(buffer: buffer) }
}
