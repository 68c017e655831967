/// A first-in, first-out ring of optional slots that moves its elements in and out, never copying them.
///
/// `Deque` would do the same job, but writing into one of its slots goes through `_modify`, which moves the old value
/// into a local, yields it, and writes it back from inside a closure: the write-back copies the element (a retain of
/// every reference it holds) and releases the local right after. An array's subscript is addressed in place, so
/// assigning to a slot or `take()`-ing from one moves.
struct SlotRing<Element> {
    /// The slots; the count is zero or a power of two.
    private var slots: [Element?] = []
    /// Where the first slot is.
    private var head = 0
    /// How many slots are in use, from `head` on (wrapping).
    private(set) var count = 0

    var isEmpty: Bool { count == 0 }

    /// Whether the first slot holds an element.
    var isFirstFilled: Bool { count > 0 && slots[head] != nil }

    /// Adds a slot at the end, holding `element` (or nothing yet).
    mutating func append(_ element: consuming Element?) {
        if count == slots.count { grow() }
        slots[(head + count) & (slots.count - 1)] = element
        count += 1
    }

    /// Stores `element` in the slot `offset` places after the first one (which must be in use).
    mutating func put(_ element: consuming Element, at offset: Int) {
        precondition(offset >= 0 && offset < count, "slot \(offset) is not in use (\(count) are)")
        slots[(head + offset) & (slots.count - 1)] = element
    }

    /// Removes the first slot and returns what it held; `nil` when there is no slot or it was empty.
    mutating func removeFirst() -> Element? {
        guard count > 0 else { return nil }
        let element = slots[head].take()
        head = (head + 1) & (slots.count - 1)
        count -= 1
        return element
    }

    /// Doubles the slots (at least 16), moving the elements in order to the start.
    private mutating func grow() {
        let size = Swift.max(16, slots.count * 2)
        var larger: [Element?] = []
        larger.reserveCapacity(size)
        for index in 0..<count { larger.append(slots[(head + index) & (slots.count - 1)].take()) }
        while larger.count < size { larger.append(nil) }
        slots = larger
        head = 0
    }
}
