import Foundation

/// Wakes a consumer's poll thread: librdkafka calls ``queueEventCallback`` (from its own threads) when a message or
/// event lands on an empty queue, and the hand-over buffer signals when it has room again. A signal that arrives
/// while the poll thread is busy is remembered, so the next wait returns at once and nothing is missed.
final class RDKafkaPollSignal: @unchecked Sendable {
    // @unchecked Sendable: `isPending` is only read and written while holding `condition`.
    private let condition = NSCondition()
    private var isPending = false

    func notify() {
        condition.lock()
        isPending = true
        condition.signal()
        condition.unlock()
    }

    /// Waits until notified or until `timeout` passes.
    func wait(timeout: TimeInterval) {
        condition.lock()
        if !isPending { _ = condition.wait(until: Date(timeIntervalSinceNow: timeout)) }
        isPending = false
        condition.unlock()
    }

    var opaque: UnsafeMutableRawPointer { Unmanaged.passUnretained(self).toOpaque() }
}

/// librdkafka's queue event callback: wakes the poll thread whose signal is `opaque`. The signal outlives every queue
/// it is registered on (callbacks are disabled before the queues are destroyed).
func queueEventCallback(_ rk: OpaquePointer?, _ opaque: UnsafeMutableRawPointer?) {
    guard let opaque else { return }
    Unmanaged<RDKafkaPollSignal>.fromOpaque(opaque).takeUnretainedValue().notify()
}
