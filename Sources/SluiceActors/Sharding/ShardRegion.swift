
/// Names a kind of entity (for example `order`): its messages' type and the region that runs them.
public struct EntityTypeKey<Message: Sendable>: Hashable, Sendable {
    /// The entity type's name.
    public let name: String
    public init(_ name: String) { self.name = name }
}

/// Settings of a ``ShardRegion``.
public struct ShardRegionSettings: Sendable {
    /// At most this many entities are alive at once; starting one more passivates (stops) the least recently used
    /// idle one. Default: 100,000.
    public var maxLiveEntities: Int = 100_000
    /// An entity with nothing to do for this long is passivated; `nil` keeps idle entities. Default: 2 minutes.
    public var idleTimeout: Duration? = .seconds(120)
    /// How often idle entities are looked for. Default: 1 second.
    public var passivationInterval: Duration = .seconds(1)
    /// Each entity's mailbox capacity (a full mailbox makes the sender wait). Default: 100.
    public var entityMailboxCapacity: Int = 100
    /// What happens when an entity's handler throws. Default: restart with backoff, at most 10 times a minute.
    public var supervision: SupervisorStrategy = .restart()

    public init() {}
}

/// The entities of one type on this instance, grouped into shards (Kafka partitions).
///
/// An entity is an actor started on its first message, kept while it is used, and passivated (stopped) when idle
/// for ``ShardRegionSettings/idleTimeout`` or when ``ShardRegionSettings/maxLiveEntities`` is reached (least recently
/// used first); its next message starts it again. Messages to one entity are handled one at a time in the order
/// sent; different entities run in parallel.
public final class ShardRegion<Message: Sendable>: Sendable {
    private struct Entry {
        let ref: ActorRef<Message>
        let shard: Int32
        let node: LRUNode
        var inFlight = 0
    }

    private enum Step { case existing(ActorRef<Message>), start(LRUNode, ActorRef<Message>?), stoppedShard, full }

    private struct State {
        var entities: [String: Entry] = [:]
        var shards: [Int32: Set<String>] = [:]
        var lru = LRUList()
        var stoppedShards: Set<Int32> = []
        var passivations = 0
        var started = 0
        /// Deliveries waiting for an entity to become idle (the region is full of busy entities).
        var roomWaiters: [CheckedContinuation<Void, Never>] = []
    }

    /// The entity type this region runs.
    public let typeKey: EntityTypeKey<Message>
    public let settings: ShardRegionSettings
    private let guardian: ActorCell<GuardianCommand>
    private let makeBehavior: @Sendable (String) -> Behavior<Message>
    private let state = Locked(State())
    private let sweeper: Task<Void, Never>?

    /// Creates the region.
    /// - Parameter behavior: the behaviour of the entity with the given id (called each time one starts).
    public init(
        system: ActorSystem, typeKey: EntityTypeKey<Message>, settings: ShardRegionSettings = .init(),
        behavior: @escaping @Sendable (String) -> Behavior<Message>
    ) throws {
        self.typeKey = typeKey
        self.settings = settings
        self.makeBehavior = behavior
        self.guardian = try system.spawnGuardian(name: "sharding-\(typeKey.name)")
        if let idleTimeout = settings.idleTimeout {
            let interval = settings.passivationInterval
            let clock = system.clock
            let state = self.state
            self.sweeper = Task { [weak guardian] in
                while !Task.isCancelled {
                    do { try await clock.sleep(for: interval) } catch { return }
                    guard guardian != nil else { return }
                    Self.passivateIdle(state: state, olderThan: idleTimeout)
                }
            }
        } else {
            self.sweeper = nil
        }
    }

    deinit { sweeper?.cancel() }

    /// Delivers a message to an entity (starting it if needed), waiting while its mailbox is full.
    /// `onProcessed` is called once the entity has handled the message (or failed on it, or stopped first).
    /// - Returns: `false` if the shard was stopped or the entity could not take the message (then `onProcessed`
    ///   is called with ``MessageOutcome/dropped``).
    @discardableResult
    public func deliver(
        _ message: consuming Message, to entityID: String, shard: Int32, onProcessed: @escaping MessageReceipt
    ) async -> Bool {
        let ref: ActorRef<Message>
        do {
            while true {
                switch try entity(entityID, shard: shard) {
                case .ready(let entity):
                    ref = entity
                case .stoppedShard:
                    onProcessed(.dropped)
                    return false
                case .full:
                    await waitForIdleEntity()
                    continue
                }
                break
            }
        } catch {
            onProcessed(.failed(error))
            return false
        }
        let state = self.state
        let delivered = await ref.send(message) { outcome in
            Self.finished(state: state, entityID, ref)
            onProcessed(outcome)
        }
        if !delivered {
            Self.finished(state: state, entityID, ref)
            onProcessed(.dropped)
        }
        return delivered
    }

    private enum Lookup { case ready(ActorRef<Message>), stoppedShard, full }

    /// A message to `entityID` is done: one less in flight; wake a delivery waiting for an idle entity.
    private static func finished(state: Locked<State>, _ entityID: String, _ ref: ActorRef<Message>) {
        let waiters: [CheckedContinuation<Void, Never>] = state.withLock { state in
            // One hash of the id, and the entry changed in place.
            guard let index = state.entities.index(forKey: entityID), state.entities.values[index].ref == ref else {
                return []
            }
            state.entities.values[index].inFlight -= 1
            guard state.entities.values[index].inFlight == 0 else { return [] }
            defer { state.roomWaiters = [] }
            return state.roomWaiters
        }
        for waiter in waiters { waiter.resume() }
    }

    private func waitForIdleEntity() async {
        await withCheckedContinuation { continuation in
            let resumeNow = state.withLock { state in
                let hasIdle = state.entities.count < settings.maxLiveEntities
                    || state.entities.values.contains { $0.inFlight == 0 }
                if !hasIdle { state.roomWaiters.append(continuation) }
                return hasIdle
            }
            if resumeNow { continuation.resume() }
        }
    }

    /// The running entity for `entityID`, started if needed (passivating the least recently used idle one when
    /// the region is full).
    private func entity(_ entityID: String, shard: Int32) throws -> Lookup {
        let now = ContinuousClock.now
        let step: Step = state.withLock { state in
            if state.stoppedShards.contains(shard) { return .stoppedShard }
            if let index = state.entities.index(forKey: entityID) {
                state.entities.values[index].inFlight += 1
                let entry = state.entities.values[index]
                entry.node.lastUsed = now
                state.lru.moveToFront(entry.node)
                return .existing(entry.ref)
            }
            var evicted: ActorRef<Message>?
            if state.entities.count >= settings.maxLiveEntities {
                // Full: passivate the least recently used idle entity, or wait until one is idle.
                guard let victim = Self.leastRecentlyUsedIdle(state) else { return .full }
                evicted = Self.removeLocked(&state, victim)
                state.passivations += 1
            }
            let node = LRUNode(entityID: entityID, lastUsed: now)
            return .start(node, evicted)
        }
        switch step {
        case .stoppedShard:
            return .stoppedShard
        case .full:
            return .full
        case .existing(let ref):
            return .ready(ref)
        case .start(let node, let evicted):
            evicted?.stop()
            let behavior = Behaviors.supervise(makeBehavior(entityID), onFailure: settings.supervision)
            let cell = try guardian.spawnChildCell(
                behavior, name: "\(shard)-\(entityID)-\(ActorUID.next())", capacity: settings.entityMailboxCapacity)
            let ref = cell.ref
            let state = self.state
            // An entity that stops by itself (or gives up after its restarts) is forgotten; its next message starts
            // a new one.
            cell.addWatcher(ActorIdentity(path: "region", uid: 0)) { _ in
                let waiters: [CheckedContinuation<Void, Never>] = state.withLock { state in
                    guard let entry = state.entities[entityID], entry.ref == ref else { return [] }
                    _ = Self.removeLocked(&state, entityID)
                    defer { state.roomWaiters = [] }
                    return state.roomWaiters
                }
                for waiter in waiters { waiter.resume() }
            }
            let raced: ActorRef<Message>? = state.withLock { state in
                if var existing = state.entities[entityID] {
                    existing.inFlight += 1
                    state.entities[entityID] = existing
                    return existing.ref
                }
                state.entities[entityID] = Entry(ref: ref, shard: shard, node: node, inFlight: 1)
                state.shards[shard, default: []].insert(entityID)
                state.lru.pushFront(node)
                state.started += 1
                return nil
            }
            if let raced {
                ref.stop()
                return .ready(raced)
            }
            return .ready(ref)
        }
    }

    private static func leastRecentlyUsedIdle(_ state: State) -> String? {
        var node = state.lru.tail
        while let current = node {
            if state.entities[current.entityID]?.inFlight == 0 { return current.entityID }
            node = current.previous
        }
        return nil
    }

    private static func removeLocked(_ state: inout State, _ entityID: String) -> ActorRef<Message>? {
        guard let entry = state.entities.removeValue(forKey: entityID) else { return nil }
        state.lru.remove(entry.node)
        state.shards[entry.shard]?.remove(entityID)
        return entry.ref
    }

    private static func passivateIdle(state: Locked<State>, olderThan idleTimeout: Duration) {
        let now = ContinuousClock.now
        let idle: [ActorRef<Message>] = state.withLock { state in
            var victims: [ActorRef<Message>] = []
            var node = state.lru.tail
            while let current = node, now - current.lastUsed >= idleTimeout {
                node = current.previous
                if state.entities[current.entityID]?.inFlight == 0, let ref = removeLocked(&state, current.entityID) {
                    victims.append(ref)
                }
            }
            state.passivations += victims.count
            return victims
        }
        for ref in idle { ref.stop() }
    }

    /// Stops a shard's entities (after their current messages) and refuses its messages until ``startShard(_:)``.
    /// Used when the shard's partition is revoked.
    public func stopShard(_ shard: Int32) async {
        let refs: [ActorRef<Message>] = state.withLock { state in
            state.stoppedShards.insert(shard)
            let ids = state.shards.removeValue(forKey: shard) ?? []
            return ids.compactMap { Self.removeLocked(&state, $0) }
        }
        for ref in refs { ref.stop() }
        for ref in refs { await ref.waitForTermination() }
    }

    /// Accepts a shard's messages again (its partition was assigned).
    public func startShard(_ shard: Int32) {
        state.withLock { _ = $0.stoppedShards.remove(shard) }
    }

    /// Entities alive now.
    public var liveEntityCount: Int { state.withLock { $0.entities.count } }
    /// Entities passivated so far.
    public var passivationCount: Int { state.withLock { $0.passivations } }
    /// Entities started so far.
    public var startedCount: Int { state.withLock { $0.started } }

    /// Stops every entity.
    public func shutdown() async {
        sweeper?.cancel()
        guardian.requestStop()
        await guardian.waitForTermination()
    }
}

/// A node of the least-recently-used list.
final class LRUNode: @unchecked Sendable {
    // @unchecked Sendable: every field is read and written only under the owning region's lock.
    let entityID: String
    var lastUsed: ContinuousClock.Instant
    var previous: LRUNode?
    var next: LRUNode?

    init(entityID: String, lastUsed: ContinuousClock.Instant) {
        self.entityID = entityID
        self.lastUsed = lastUsed
    }
}

/// A doubly linked list, most recently used first (guarded by the region's lock).
struct LRUList: @unchecked Sendable {
    // @unchecked Sendable: only ever accessed inside the region's `Mutex`.
    private(set) var head: LRUNode?
    private(set) var tail: LRUNode?

    mutating func pushFront(_ node: LRUNode) {
        node.previous = nil
        node.next = head
        head?.previous = node
        head = node
        if tail == nil { tail = node }
    }

    mutating func remove(_ node: LRUNode) {
        if let previous = node.previous { previous.next = node.next } else { head = node.next }
        if let next = node.next { next.previous = node.previous } else { tail = node.previous }
        node.previous = nil
        node.next = nil
    }

    mutating func moveToFront(_ node: LRUNode) {
        guard head !== node else { return }
        remove(node)
        pushFront(node)
    }
}
