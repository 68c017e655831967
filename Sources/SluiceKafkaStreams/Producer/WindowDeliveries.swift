import SluiceKafka
import SluiceStreams
import Synchronization

/// Where the producer flow's single-message envelopes report: a ``KafkaDeliveryReceiver`` that fills their window
/// places a delivery batch at a time, under one lock for the batch, instead of a closure per message.
///
/// Each envelope's pass-through value waits here, at its place's sequence number modulo the window's capacity (the
/// window never has more places than that outstanding, so two envelopes in flight never share an index). The
/// receiver unregisters itself once the flow has stopped sending and every message it sent was reported.
///
/// The receiver itself is not generic: librdkafka's poll thread calls it through the protocol, which would run a
/// generic class's code unspecialized (looking up type metadata and copying through value witnesses per message).
/// It calls `deliver`, a closure made in the flow's specialized code.
final class WindowDeliveries: KafkaDeliveryReceiver {
    private let deliver: @Sendable (consuming [KafkaDelivery]) -> Void

    private init(deliver: @escaping @Sendable (consuming [KafkaDelivery]) -> Void) {
        self.deliver = deliver
    }

    func receiveDeliveries(_ deliveries: consuming [KafkaDelivery]) { deliver(deliveries) }

    /// The receiver for `window`'s places and the table of pass-through values it fills them with.
    static func make<PassThrough: Sendable>(
        window: ResultWindow<PassThrough>, producer: KafkaProducer
    ) -> (WindowDeliveries, WindowPassThroughs<PassThrough>) {
        // Only an ordered window keeps the places in flight within one capacity of each other, which is what makes
        // `sequence % capacity` unique among them.
        precondition(window.isOrdered, "the producer flow's window must be ordered")
        let passThroughs = WindowPassThroughs<PassThrough>(
            capacity: window.capacity, unregister: { [weak producer] route in producer?.unregister(route) })
        let receiver = WindowDeliveries { deliveries in
            passThroughs.deliver(deliveries, into: window)
        }
        return (receiver, passThroughs)
    }
}

/// The pass-through values of the producer flow's single-message envelopes in flight, and when their receiver can
/// unregister.
final class WindowPassThroughs<PassThrough: Sendable>: Sendable {
    private struct State {
        var passThroughs: [PassThrough?]
        var inFlight = 0
        var isFinished = false
        var route: KafkaDeliveryRoute?
    }
    private let state: Mutex<State>
    private let unregister: @Sendable (KafkaDeliveryRoute) -> Void

    init(capacity: Int, unregister: @escaping @Sendable (KafkaDeliveryRoute) -> Void) {
        state = Mutex(State(passThroughs: Array(repeating: nil, count: capacity)))
        self.unregister = unregister
    }

    /// Remembers the route the receiver was registered as, to unregister it when done.
    func registered(as route: KafkaDeliveryRoute) {
        state.withLock { $0.route = route }
    }

    /// Keeps pass-through values for messages about to be sent, under one lock: `body` calls `expect` with each
    /// message's window place and its value (moved in, not copied).
    func expect(_ body: (_ expect: (_ slot: UInt64, _ passThrough: consuming PassThrough) -> Void) -> Void) {
        state.withLock { state in
            body { slot, passThrough in
                state.passThroughs[Self.index(slot, state)] = passThrough
                state.inFlight += 1
            }
        }
    }

    /// Forgets the message for place `slot`: it was not sent after all.
    func abandon(_ slot: UInt64) {
        let done = state.withLock { state in
            if state.passThroughs[Self.index(slot, state)].take() != nil { state.inFlight -= 1 }
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

    /// Fills each report's window place with the report and its pass-through value (both moved: the report out of
    /// `deliveries`, the value out of this table), the whole batch under one lock of the window.
    ///
    /// After the last report the receiver unregisters before the window wakes its reader (still inside the fill), so
    /// a stream that completes with that report never sees its receiver registered. The producer's route registry
    /// lock is a leaf (receivers are called outside it), so taking it under the window's lock orders nothing new.
    func deliver(_ deliveries: consuming [KafkaDelivery], into window: ResultWindow<PassThrough>) {
        deliveries.reverseByMoving()
        window.fill { place in
            let done = state.withLock { state in
                while let delivery = deliveries.popLast() {
                    let tag = delivery.tag
                    guard let passThrough = state.passThroughs[Self.index(tag, state)].take() else { continue }
                    state.inFlight -= 1
                    switch (consume delivery).result {
                    case .success(let report): place(tag, .success(.single(report, passThrough)))
                    case .failure(let error): place(tag, .failure(error))
                    }
                }
                return Self.routeIfDone(&state)
            }
            if let done { unregister(done) }
        }
    }

    @inline(__always)
    private static func index(_ slot: UInt64, _ state: borrowing State) -> Int {
        Int(slot % UInt64(state.passThroughs.count))
    }

    /// The route to unregister, once: when the flow has finished and nothing is in flight.
    private static func routeIfDone(_ state: inout State) -> KafkaDeliveryRoute? {
        guard state.isFinished, state.inFlight == 0 else { return nil }
        return state.route.take()
    }
}
