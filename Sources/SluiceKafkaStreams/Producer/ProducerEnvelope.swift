public import SluiceKafka

/// What a producer flow is asked to do with one element: produce a message, several messages, or nothing, and in
/// every case pass a value (typically the ``CommittableOffset`` of the message that caused it) through.
public enum ProducerEnvelope<PassThrough: Sendable>: Sendable {
    /// Produce one message.
    case single(KafkaProducerMessage, PassThrough)
    /// Produce several messages; the result comes once all are delivered.
    case multi([KafkaProducerMessage], PassThrough)
    /// Produce nothing; just pass the value through, in order with the others.
    case passThrough(PassThrough)
}

/// What a producer flow emits for each envelope, in the order of the envelopes.
public enum ProducerResult<PassThrough: Sendable>: Sendable {
    /// The delivery report of a ``ProducerEnvelope/single(_:_:)`` envelope.
    case single(KafkaDeliveryReport, PassThrough)
    /// The delivery reports of a ``ProducerEnvelope/multi(_:_:)`` envelope, in the order of its messages.
    case multi([KafkaDeliveryReport], PassThrough)
    /// A ``ProducerEnvelope/passThrough(_:)`` envelope.
    case passThrough(PassThrough)

    /// The value passed through.
    public var passThrough: PassThrough {
        switch self {
        case .single(_, let value), .multi(_, let value), .passThrough(let value): value
        }
    }
}
