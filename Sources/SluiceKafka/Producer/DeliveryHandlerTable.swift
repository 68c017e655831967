import Synchronization

/// The delivery handlers of the messages librdkafka holds, one slot per message, reused through a lock-free free
/// list. A message's librdkafka opaque is its slot's ticket (slot index + 1, as a pointer-sized integer), so sending
/// allocates nothing per message; the delivery callback takes the handler back out and frees the slot.
///
/// Slots live in chunks that are never moved or freed before the table: chunk `k` holds `1024 << k` slots, so 22
/// chunks cover every 32-bit ticket and a ticket maps to its chunk with one bit scan. The table only grows (to the
/// largest number of messages ever outstanding at once, which librdkafka's `queue.buffering.max.messages` bounds).
///
/// `@unchecked Sendable`, and why it is safe:
/// - `head` and every slot's `next` link are atomics; `chunkHandlers` / `chunkLinks` entries are atomics written
///   once (under `growthLock`) before any ticket of their chunk is published.
/// - A slot's `handler` is plain memory with exactly one owner at a time: the free list (nobody touches it), then the
///   sender that popped the ticket (writes it), then librdkafka (holds the ticket in the message opaque), then the
///   one delivery callback for that message (moves it out), then the free list again. Every hand-over is a
///   happens-before edge: pushing is a releasing compare-exchange on `head` and popping an acquiring one (all
///   writes to `head` are read-modify-writes, so they continue the release sequence); the sender-to-callback edge
///   goes through librdkafka's own locked queues (`rd_kafka_produceva` to the delivery report op).
/// - The ABA problem of a lock-free stack is avoided by a 32-bit tag in `head` bumped on every change.
final class DeliveryHandlerTable: @unchecked Sendable {
    typealias Handler = KafkaProducer.DeliveryHandler

    /// One slot. The handler is wrapped in a concrete struct so that it is stored at its natural abstraction: as the
    /// pointee of a generic `UnsafeMutablePointer<Slot>` Swift would wrap every closure in a reabstraction thunk,
    /// a heap object per message.
    private struct Slot {
        var handler: Handler?
    }

    private static let firstChunkShift = 10
    private static let maxChunks = 22

    /// Top of the free list: `tag << 32 | ticket`, ticket 0 = empty.
    private let head = Atomic<UInt64>(0)
    /// Per chunk: the base address of its handler slots, 0 while not allocated.
    private let chunkHandlers: UnsafeMutablePointer<Atomic<UInt>>
    /// Per chunk: the base address of its free-list links (`Atomic<UInt32>`, the next free ticket), 0 while not allocated.
    private let chunkLinks: UnsafeMutablePointer<Atomic<UInt>>
    /// Serialises growth (rare: only when every slot is in use).
    private let growthLock = Mutex<Int>(0)

    init() {
        chunkHandlers = .allocate(capacity: Self.maxChunks)
        chunkLinks = .allocate(capacity: Self.maxChunks)
        for chunk in 0..<Self.maxChunks {
            (chunkHandlers + chunk).initialize(to: Atomic(0))
            (chunkLinks + chunk).initialize(to: Atomic(0))
        }
    }

    deinit {
        for chunk in 0..<Self.maxChunks {
            let count = 1 << (Self.firstChunkShift + chunk)
            let handlers = chunkHandlers[chunk].load(ordering: .acquiring)
            if handlers != 0 {
                // Drops the handlers of messages librdkafka never reported (destroyed without a close).
                let pointer = UnsafeMutablePointer<Slot>(bitPattern: handlers)!
                pointer.deinitialize(count: count)
                pointer.deallocate()
            }
            let links = chunkLinks[chunk].load(ordering: .acquiring)
            if links != 0 {
                let pointer = UnsafeMutablePointer<Atomic<UInt32>>(bitPattern: links)!
                pointer.deinitialize(count: count)
                pointer.deallocate()
            }
        }
        chunkHandlers.deinitialize(count: Self.maxChunks)
        chunkHandlers.deallocate()
        chunkLinks.deinitialize(count: Self.maxChunks)
        chunkLinks.deallocate()
    }

    /// Stores `handler` in a free slot and returns its ticket (never 0), or `nil` when all 4 billion slots are used.
    @inline(__always)
    func claim(_ handler: @escaping Handler) -> UInt32? {
        while true {
            if let ticket = pop() {
                handlerSlot(ticket).pointee.handler = handler
                return ticket
            }
            guard grow() else { return nil }
        }
    }

    /// Takes the handler out of a claimed slot and frees the slot.
    @inline(__always)
    func take(_ ticket: UInt32) -> Handler? {
        let slot = handlerSlot(ticket)
        let handler = slot.move().handler
        slot.initialize(to: Slot(handler: nil))
        push(first: ticket, last: ticket)
        return handler
    }

    // MARK: - Slots

    @inline(__always)
    private static func locate(_ ticket: UInt32) -> (chunk: Int, offset: Int) {
        // Tickets 1... map to n = ticket - 1 + 1024: chunk k holds n in [1024 << k, 2048 << k).
        let n = UInt(ticket) - 1 + (1 << firstChunkShift)
        let chunk = (UInt.bitWidth - 1 - n.leadingZeroBitCount) - firstChunkShift
        return (chunk, Int(n - (1 << (UInt(firstChunkShift) + UInt(chunk)))))
    }

    @inline(__always)
    private func handlerSlot(_ ticket: UInt32) -> UnsafeMutablePointer<Slot> {
        let (chunk, offset) = Self.locate(ticket)
        return UnsafeMutablePointer<Slot>(bitPattern: chunkHandlers[chunk].load(ordering: .relaxed))! + offset
    }

    @inline(__always)
    private func link(_ ticket: UInt32) -> UnsafeMutablePointer<Atomic<UInt32>> {
        let (chunk, offset) = Self.locate(ticket)
        return UnsafeMutablePointer<Atomic<UInt32>>(bitPattern: chunkLinks[chunk].load(ordering: .relaxed))! + offset
    }

    // MARK: - Free list (a Treiber stack of tickets with an ABA tag)

    @inline(__always)
    private func pop() -> UInt32? {
        var current = head.load(ordering: .acquiring)
        while true {
            let ticket = UInt32(truncatingIfNeeded: current)
            if ticket == 0 { return nil }
            // May read a link that another thread is rewriting; the tag makes the exchange below fail then.
            let next = link(ticket).pointee.load(ordering: .relaxed)
            let tag = (current >> 32) &+ 1
            let (exchanged, original) = head.compareExchange(
                expected: current, desired: tag << 32 | UInt64(next), successOrdering: .acquiringAndReleasing,
                failureOrdering: .acquiring)
            if exchanged { return ticket }
            current = original
        }
    }

    /// Pushes the chain `first` ... `last` (already linked from `first` to `last`).
    @inline(__always)
    private func push(first: UInt32, last: UInt32) {
        let lastLink = link(last)
        var current = head.load(ordering: .relaxed)
        while true {
            lastLink.pointee.store(UInt32(truncatingIfNeeded: current), ordering: .relaxed)
            let tag = (current >> 32) &+ 1
            let (exchanged, original) = head.compareExchange(
                expected: current, desired: tag << 32 | UInt64(first), successOrdering: .releasing,
                failureOrdering: .relaxed)
            if exchanged { return }
            current = original
        }
    }

    /// Adds the next chunk to the free list unless another thread already made room; `false` when the table is full.
    private func grow() -> Bool {
        growthLock.withLock { chunkCount in
            if UInt32(truncatingIfNeeded: head.load(ordering: .acquiring)) != 0 { return true }
            guard chunkCount < Self.maxChunks else { return false }
            let chunk = chunkCount
            let count = 1 << (Self.firstChunkShift + chunk)
            let handlers = UnsafeMutablePointer<Slot>.allocate(capacity: count)
            handlers.initialize(repeating: Slot(handler: nil), count: count)
            let links = UnsafeMutablePointer<Atomic<UInt32>>.allocate(capacity: count)
            // The first ticket of chunk k is 1024 * (2^k - 1) + 1; link each slot to the next one.
            let firstTicket = UInt32((1 << (Self.firstChunkShift + chunk)) - (1 << Self.firstChunkShift) + 1)
            for offset in 0..<count {
                (links + offset).initialize(to: Atomic(offset + 1 < count ? firstTicket + UInt32(offset + 1) : 0))
            }
            chunkHandlers[chunk].store(UInt(bitPattern: handlers), ordering: .releasing)
            chunkLinks[chunk].store(UInt(bitPattern: links), ordering: .releasing)
            chunkCount += 1
            push(first: firstTicket, last: firstTicket + UInt32(count - 1))
            return true
        }
    }
}
