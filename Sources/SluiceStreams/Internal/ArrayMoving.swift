extension Array {
    /// Reverses the array in place by moving its elements, so that `popLast()` then takes them out in their
    /// original order, each moved rather than copied.
    ///
    /// Stages take chunks apart this way: iterating an array copies each element (a retain of every reference it
    /// holds) and dropping the array releases the originals, per element and per stage. `Array.reverse()` itself
    /// swaps through copies (3% of the bridge benchmark's samples when tried); a buffer pointer's swaps move.
    package mutating func reverseByMoving() {
        withUnsafeMutableBufferPointer { $0.reverse() }
    }
}
