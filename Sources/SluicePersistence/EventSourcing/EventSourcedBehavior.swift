/// What a command handler decides: events to persist, then what to do once they are durable and applied.
///
/// ```swift
/// .persist(.added(2)).thenReply { state in state.value }   // persist, apply, reply with the new state's value
/// .reply(state.value)                                       // no events: reply with the current state
/// .none                                                     // nothing at all
/// .persist(.closed).thenStop()                              // persist, apply, then stop the entity
/// ```
public struct Effect<Event: Sendable, State: Sendable, Reply: Sendable>: Sendable {
    /// The events to persist (in order, atomically), before anything else happens.
    public let events: [Event]
    let reply: (@Sendable (State) -> Reply)?
    let stops: Bool

    init(events: [Event], reply: (@Sendable (State) -> Reply)?, stops: Bool) {
        self.events = events
        self.reply = reply
        self.stops = stops
    }

    /// Persist nothing, reply nothing.
    public static var none: Effect { Effect(events: [], reply: nil, stops: false) }

    /// Persist `events` (atomically, in order); they are applied to the state once durable.
    public static func persist(_ events: Event...) -> Effect { Effect(events: events, reply: nil, stops: false) }

    /// Persist `events` (atomically, in order); they are applied to the state once durable.
    public static func persist(_ events: [Event]) -> Effect { Effect(events: events, reply: nil, stops: false) }

    /// Persist nothing and reply `reply`.
    public static func reply(_ reply: Reply) -> Effect { Effect(events: [], reply: { _ in reply }, stops: false) }

    /// Persist nothing and stop the entity.
    public static var stop: Effect { Effect(events: [], reply: nil, stops: true) }

    /// After the events are durable and applied, reply with a value computed from the new state.
    public func thenReply(_ reply: @escaping @Sendable (State) -> Reply) -> Effect {
        Effect(events: events, reply: reply, stops: stops)
    }

    /// After the events are durable and applied (and any reply sent), stop the entity.
    public func thenStop() -> Effect { Effect(events: events, reply: reply, stops: true) }
}

/// An entity whose state is the fold of its events: the command handler decides which events a command causes
/// (an ``Effect``), the event handler applies one event to the state. Both must be pure and deterministic:
/// recovery replays the same events through the event handler to rebuild the same state.
///
/// Events and snapshots are stored through codecs (``PersistenceCodec``) that record a manifest and version with
/// each value, so later code can still read them.
public struct EventSourcedBehavior<Command: Sendable, Event: Sendable, State: Sendable, Reply: Sendable>: Sendable {
    /// The command handler's result type.
    public typealias CommandEffect = Effect<Event, State, Reply>

    /// The entity's identity in the journal.
    public var persistenceID: PersistenceID
    /// The state before the first event.
    public var emptyState: State
    /// Decides what a command does, given the current state.
    public var commandHandler: @Sendable (State, Command) -> CommandEffect
    /// Applies one event to the state.
    public var eventHandler: @Sendable (State, Event) -> State
    /// How events are stored.
    public var eventCodec: PersistenceCodec<Event>
    /// How snapshots of the state are stored.
    public var snapshotCodec: PersistenceCodec<State>
    /// Save a snapshot whenever the sequence number crosses a multiple of this (in the same write as the events
    /// that crossed it), so recovery replays at most this many events after the snapshot; `nil`: never.
    public var snapshotEvery: Int?

    public init(
        persistenceID: PersistenceID, emptyState: State, eventCodec: PersistenceCodec<Event>,
        snapshotCodec: PersistenceCodec<State>, snapshotEvery: Int? = nil,
        commandHandler: @escaping @Sendable (State, Command) -> CommandEffect,
        eventHandler: @escaping @Sendable (State, Event) -> State
    ) {
        self.persistenceID = persistenceID
        self.emptyState = emptyState
        self.eventCodec = eventCodec
        self.snapshotCodec = snapshotCodec
        self.snapshotEvery = snapshotEvery.map { max($0, 1) }
        self.commandHandler = commandHandler
        self.eventHandler = eventHandler
    }
}

extension EventSourcedBehavior where Event: Codable, State: Codable {
    /// A behaviour whose events and snapshots are stored as JSON, version 1.
    public init(
        persistenceID: PersistenceID, emptyState: State, snapshotEvery: Int? = nil,
        commandHandler: @escaping @Sendable (State, Command) -> CommandEffect,
        eventHandler: @escaping @Sendable (State, Event) -> State
    ) {
        self.init(
            persistenceID: persistenceID, emptyState: emptyState, eventCodec: .json(), snapshotCodec: .json(),
            snapshotEvery: snapshotEvery, commandHandler: commandHandler, eventHandler: eventHandler)
    }
}
