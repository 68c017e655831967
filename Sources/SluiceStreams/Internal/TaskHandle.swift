/// Owns a stage's background task and cancels it when the stage's iterator goes away, so a stream that is
/// dropped or cancelled releases everything it started.
final class TaskHandle: Sendable {
    private let task: Task<Void, Never>

    init(_ task: Task<Void, Never>) { self.task = task }

    func cancel() { task.cancel() }

    deinit { task.cancel() }
}
