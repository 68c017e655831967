/// A building block for custom stages: runs a stage's upstream in a background task that feeds a bounded channel, started on the first pull and
/// cancelled when the reading side goes away. This is an asynchronous boundary: upstream and downstream run
/// concurrently, with at most `capacity` elements between them.
public final class Pump<Element: Sendable>: @unchecked Sendable {
    // @unchecked Sendable: `handle` is only touched by `next()`, which the stream's single reading task calls;
    // everything shared with the background task (`channel`) is Sendable.
    /// The channel between the background task and the reader.
    public let channel: StreamChannel<Element>
    private let produce: @Sendable (StreamChannel<Element>) async throws -> Void
    private var handle: TaskHandle?

    /// Creates a pump; `produce` sends into the channel, and returning finishes it (throwing fails it).
    public init(capacity: Int, produce: @escaping @Sendable (StreamChannel<Element>) async throws -> Void) {
        self.channel = StreamChannel(capacity: capacity)
        self.produce = produce
    }

    /// Starts the background task if needed.
    public func start() {
        guard handle == nil else { return }
        let channel = self.channel
        let produce = self.produce
        handle = TaskHandle(
            Task {
                do {
                    try await produce(channel)
                    channel.finish()
                } catch {
                    channel.fail(error)
                }
            })
    }

    /// The next element from the background task.
    public func next() async throws -> Element? {
        start()
        return try await channel.receive()
    }

    /// Stops the background task.
    public func cancel() { handle?.cancel() }
}
