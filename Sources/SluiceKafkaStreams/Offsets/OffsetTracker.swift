import DequeModule

/// Tracks, for one partition, the offsets handed downstream and which of them were acknowledged, and knows the
/// highest offset that may be committed: everything below it was acknowledged.
///
/// Acknowledgements may arrive in any order (parallel stages, entities); the committable position never passes
/// the lowest unacknowledged offset. Offsets must be registered in increasing order (as a partition delivers
/// them); gaps (compaction, transaction markers) are fine. Not thread-safe: ``PartitionLedger`` guards it.
struct OffsetTracker: Sendable {
    /// Registered offsets not yet popped, in increasing order, with whether each was acknowledged.
    private var window = Deque<(offset: Int64, isAcknowledged: Bool)>()
    /// The offset after the last one registered.
    private(set) var nextRegistered: Int64?
    /// The committable position: the lowest unacknowledged registered offset, or the offset after the last
    /// registered one when all are acknowledged. Every registered offset below it was acknowledged.
    private(set) var committable: Int64?
    /// Offsets registered but not yet acknowledged.
    private(set) var outstanding = 0

    init() {}

    /// Registers an offset handed downstream. Offsets at or below one already registered are ignored.
    /// - Returns: whether the offset was registered.
    @discardableResult
    mutating func register(_ offset: Int64) -> Bool {
        if let nextRegistered, offset < nextRegistered { return false }
        window.append((offset, false))
        nextRegistered = offset + 1
        outstanding += 1
        // With nothing outstanding before it, everything below this offset is done (or does not exist).
        if window.count == 1 { committable = offset }
        return true
    }

    /// Acknowledges a registered offset. Unknown or repeated acknowledgements are ignored.
    /// - Returns: whether this acknowledgement was new.
    @discardableResult
    mutating func acknowledge(_ offset: Int64) -> Bool {
        guard let index = indexOf(offset), !window[index].isAcknowledged else { return false }
        window[index].isAcknowledged = true
        outstanding -= 1
        while let first = window.first, first.isAcknowledged {
            window.removeFirst()
            committable = first.offset + 1
        }
        if let first = window.first { committable = first.offset }
        return true
    }

    /// Binary search: the window is sorted by offset.
    private func indexOf(_ offset: Int64) -> Int? {
        // Acknowledgements mostly come in order: the oldest registered offset first.
        if let first = window.first, first.offset == offset { return 0 }
        var low = 0
        var high = window.count - 1
        while low <= high {
            let middle = (low + high) / 2
            let value = window[middle].offset
            if value == offset { return middle }
            if value < offset { low = middle + 1 } else { high = middle - 1 }
        }
        return nil
    }
}
