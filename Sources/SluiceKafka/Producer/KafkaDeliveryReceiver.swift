import Synchronization

/// Receives the delivery reports of many messages at once: the fast alternative to a closure per message.
///
/// Register a receiver with ``KafkaProducer/register(_:)``, send with ``KafkaProducer/send(_:route:tag:)`` and a
/// tag of your choosing (an index into your own table of what each message stands for), and the producer's poll
/// thread calls ``receiveDeliveries(_:)`` with every report of one librdkafka delivery batch that belongs to this
/// receiver. Sending then costs no allocation and no reference counting per message, and the receiver can take
/// its own lock once per batch.
///
/// ```swift
/// final class Counter: KafkaDeliveryReceiver {
///     let delivered = Atomic<Int>(0)
///     func receiveDeliveries(_ deliveries: [KafkaDelivery]) {
///         delivered.add(deliveries.count, ordering: .relaxed)
///     }
/// }
/// let route = try producer.register(counter)
/// try await producer.send(message, route: route, tag: 0)
/// ```
public protocol KafkaDeliveryReceiver: AnyObject, Sendable {
    /// Called on the producer's poll thread with reports in librdkafka's order (within a partition, the order
    /// the messages were sent in).
    /// The receiver owns the array: it can move the reports out instead of copying them (each copy retains the
    /// report's topic name).
    /// - Important: Keep it short and never block in it: every producer's report waits for it.
    func receiveDeliveries(_ deliveries: consuming [KafkaDelivery])
}

/// One message's outcome, with the tag it was sent with.
public struct KafkaDelivery: Sendable {
    /// The tag given to ``KafkaProducer/send(_:route:tag:)``.
    public var tag: UInt64
    /// Where the message was stored, or why it was not delivered.
    public var result: Result<KafkaDeliveryReport, KafkaError>

    /// Creates an outcome (the producer makes them; tests of receivers may too).
    public init(tag: UInt64, result: Result<KafkaDeliveryReport, KafkaError>) {
        self.tag = tag
        self.result = result
    }
}

/// A registered ``KafkaDeliveryReceiver`` of one producer; give it to ``KafkaProducer/send(_:route:tag:)``.
public struct KafkaDeliveryRoute: Hashable, Sendable {
    /// The receiver's place in its producer's route table (never 0: route 0 is the closures' table).
    let index: UInt64
    /// The producer the route belongs to, so that a route of another producer is refused (a random number per
    /// producer: an object's address can be reused by the next producer).
    let producerID: UInt64
}

/// The registered receivers of one producer, by route index, and how a message's librdkafka opaque encodes its
/// route and tag.
final class DeliveryRouteTable: Sendable {
    /// Bits of the opaque that carry the tag; the bits above carry the route.
    static let tagBits: UInt64 = 48
    /// The largest tag a message can carry.
    static let maxTag: UInt64 = (1 << tagBits) - 1
    /// Route 0: the message's tag is a ticket of the closures' ``DeliveryHandlerTable``.
    static let closureRoute: UInt64 = 0
    /// Route indexes 1 ... 65535.
    private static let maxRoutes = 1 << (64 - tagBits)

    private struct State {
        var receivers: [(any KafkaDeliveryReceiver)?] = [nil]
        /// Unregistered routes, oldest first. A route is reused only when no fresh one is left, and then the one
        /// freed longest ago, so that a report still in flight for a receiver unregistered too early (which the
        /// documentation forbids) is dropped rather than given to its successor.
        var freeIndexes: [Int] = []
    }
    private let state = Mutex(State())

    static func opaque(route: UInt64, tag: UInt64) -> UInt64 { route << tagBits | tag }
    static func route(ofOpaque bits: UInt64) -> UInt64 { bits >> tagBits }
    static func tag(ofOpaque bits: UInt64) -> UInt64 { bits & maxTag }

    /// Adds `receiver`; `nil` when 65,535 receivers are registered already.
    func register(_ receiver: any KafkaDeliveryReceiver) -> UInt64? {
        state.withLock { state in
            if state.receivers.count < Self.maxRoutes {
                state.receivers.append(receiver)
                return UInt64(state.receivers.count - 1)
            }
            guard !state.freeIndexes.isEmpty else { return nil }
            let index = state.freeIndexes.removeFirst()  // rare: only once 65,535 routes were handed out
            state.receivers[index] = receiver
            return UInt64(index)
        }
    }

    /// Removes a receiver; returns whether it was registered.
    func unregister(_ index: UInt64) -> Bool {
        state.withLock { state in
            guard index > 0, index < state.receivers.count, state.receivers[Int(index)] != nil else { return false }
            state.receivers[Int(index)] = nil
            state.freeIndexes.append(Int(index))
            return true
        }
    }

    /// How many receivers are registered.
    var count: Int { state.withLock { state in state.receivers.count - 1 - state.freeIndexes.count } }

    func receiver(_ index: UInt64) -> (any KafkaDeliveryReceiver)? {
        state.withLock { state in index < state.receivers.count ? state.receivers[Int(index)] : nil }
    }
}
