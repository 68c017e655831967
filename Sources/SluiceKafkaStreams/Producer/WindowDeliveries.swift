import SluiceKafka
import SluiceStreams
import Synchronization

/// Where the producer flow's single-message envelopes report: a ``KafkaDeliveryReceiver`` that fills their window
/// places a delivery batch at a time, under one lock for the batch, instead of a closure per message.
///
/// Each envelope's pass-through value waits here, at its place's sequence number modulo the window's capacity (the
/// window never has more places than that outstanding, so two envelopes in flight never share an index). The
/// receiver unregisters itself once the flow has stopped sending and every message it sent was reported.
final class WindowDeliveries<PassThrough: Sendable>: KafkaDeliveryReceiver {
    private struct State {
        var passThroughs: [PassThrough?]
        var inFlight = 0
        var isFinished = false
        var route: KafkaDeliveryRoute?
    }
    private let state: Mutex<State>
    private let window: ResultWindow<PassThrough>
    private let unregister: @Sendable (KafkaDeliveryRoute) -> Void

    init(window: ResultWindow<PassThrough>, producer: KafkaProducer) {
        self.window = window
        state = Mutex(State(passThroughs: Array(repeating: nil, count: window.capacity)))
        unregister = { [weak producer] route in producer?.unregister(route) }
    }

    /// Registers with `producer`; send with the returned route.
    func register(with producer: KafkaProducer) throws -> KafkaDeliveryRoute {
        let route = try producer.register(self)
        state.withLock { $0.route = route }
        return route
    }

    /// Keeps `passThrough` for the message about to be sent for place `slot`.
    func expect(_ slot: UInt64, passThrough: PassThrough) {
        state.withLock { state in
            state.passThroughs[index(slot, state)] = passThrough
            state.inFlight += 1
        }
    }

    /// Forgets the message for place `slot`: it was not sent after all.
    func abandon(_ slot: UInt64) {
        let done = state.withLock { state in
            if state.passThroughs[index(slot, state)].take() != nil { state.inFlight -= 1 }
            return Self.routeIfDone(&state)
        }
        if let done { unregister(done) }
    }

    /// The flow sends no more: unregister once the last report is in.
    func finish() {
        let done = state.withLock { state in
            state.isFinished = true
            return Self.routeIfDone(&state)
        }
        if let done { unregister(done) }
    }

    func receiveDeliveries(_ deliveries: [KafkaDelivery]) {
        var filled: [(sequence: UInt64, element: Result<ProducerResult<PassThrough>, KafkaError>)] = []
        filled.reserveCapacity(deliveries.count)
        let done = state.withLock { state in
            for delivery in deliveries {
                guard let passThrough = state.passThroughs[index(delivery.tag, state)].take() else { continue }
                filled.append((delivery.tag, delivery.result.map { .single($0, passThrough) }))
            }
            state.inFlight -= filled.count
            return Self.routeIfDone(&state)
        }
        window.fill(contentsOf: filled)
        if let done { unregister(done) }
    }

    @inline(__always)
    private func index(_ slot: UInt64, _ state: borrowing State) -> Int {
        Int(slot % UInt64(state.passThroughs.count))
    }

    /// The route to unregister, once: when the flow has finished and nothing is in flight.
    private static func routeIfDone(_ state: inout State) -> KafkaDeliveryRoute? {
        guard state.isFinished, state.inFlight == 0 else { return nil }
        return state.route.take()
    }
}
