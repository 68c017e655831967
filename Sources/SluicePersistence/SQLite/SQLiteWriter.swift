import Foundation
import Synchronization

/// Work for the writer thread: runs inside a transaction, and completes (resumes its caller) only after the
/// transaction has ended.
protocol SQLiteOperation: AnyObject, Sendable {
    /// Whether the operation writes: a batch with writes is an immediate transaction and each write runs in a
    /// savepoint, so that one failed write does not undo the others.
    var isWrite: Bool { get }
    /// Runs the operation; returns `false` if it failed (its own error is kept for ``complete(transactionFailure:)``).
    func execute(_ store: SQLiteStore) -> Bool
    /// Resumes the caller: with the operation's own result, or with `transactionFailure` when the transaction did
    /// not commit.
    func complete(transactionFailure: PersistenceError?)
}

/// One operation and whoever waits for its result (a suspended caller, or a completion callback).
///
/// `@unchecked Sendable`: `result` is written by the writer thread in ``execute(_:)`` and read once in
/// ``complete(transactionFailure:)``, after the transaction, by the task the writer thread creates for its batch's
/// completions. The operation reaches the writer thread through the writer's lock (which orders the submitting
/// thread's initialisation before the writer's accesses), and creating the task orders the writer's last write of
/// `result` before the task's read; no two threads ever touch `result` at the same time.
final class SQLiteOperationBox<Value: Sendable>: SQLiteOperation, @unchecked Sendable {
    let isWrite: Bool
    private let body: @Sendable (SQLiteStore) throws(PersistenceError) -> Value
    private let completion: @Sendable (Result<Value, PersistenceError>) -> Void
    private var result: Result<Value, PersistenceError>?

    init(
        isWrite: Bool, body: @escaping @Sendable (SQLiteStore) throws(PersistenceError) -> Value,
        completion: @escaping @Sendable (Result<Value, PersistenceError>) -> Void
    ) {
        self.isWrite = isWrite
        self.body = body
        self.completion = completion
    }

    func execute(_ store: SQLiteStore) -> Bool {
        do throws(PersistenceError) {
            result = .success(try body(store))
            return true
        } catch {
            result = .failure(error)
            return false
        }
    }

    func complete(transactionFailure: PersistenceError?) {
        if let transactionFailure {
            completion(.failure(transactionFailure))
        } else if let result {
            completion(result)
        } else {
            preconditionFailure("a committed transaction ran every operation of its batch")
        }
    }
}

/// An append for the writer thread, and whoever waits for it: the journal's hot path, so one object without a
/// closure around the work or a `Result` around the outcome.
///
/// `@unchecked Sendable`: `failure` is written by the writer thread in ``execute(_:)`` and read once in
/// ``complete(transactionFailure:)``, after the transaction, by the task the writer thread creates for its batch's
/// completions (or by the submitting thread when the journal was closed, in which case the writer never saw it); the
/// same ordering as ``SQLiteOperationBox``'s `result`.
final class SQLiteAppendOperation: SQLiteOperation, @unchecked Sendable {
    var isWrite: Bool { true }
    private let append: JournalAppend
    private let completion: @Sendable (PersistenceError?) -> Void
    private var failure: PersistenceError?

    init(_ append: JournalAppend, completion: @escaping @Sendable (PersistenceError?) -> Void) {
        self.append = append
        self.completion = completion
    }

    func execute(_ store: SQLiteStore) -> Bool {
        // A batch whose first attempt failed runs again: only this run's outcome counts.
        failure = nil
        do throws(PersistenceError) {
            try store.append(append)
            return true
        } catch {
            failure = error
            return false
        }
    }

    func complete(transactionFailure: PersistenceError?) { completion(transactionFailure ?? failure) }
}

/// The journal's writer: one OS thread that owns the SQLite connection and runs every operation, batching whatever
/// has queued up into one transaction (group commit).
///
/// SQLite calls block (disk I/O, fsync), so they never run on Swift's cooperative pool, which has one thread per
/// core: callers enqueue an operation and suspend; the thread resumes them after the transaction commits.
///
/// `@unchecked Sendable`: the mutable fields (`pending`, `isClosing`, `isPaused`, `hasExited`, `exitWaiters`) are
/// only accessed while holding `condition`'s lock; the store is confined to the thread (a local of ``run(store:)``).
final class SQLiteWriter: @unchecked Sendable {
    private let condition = NSCondition()
    private var pending: [any SQLiteOperation] = []
    private var isClosing = false
    private var isPaused = false
    private var hasExited = false
    private var exitWaiters: [CheckedContinuation<Void, Never>] = []

    let journalName: String
    let maxOperationsPerTransaction: Int
    /// Committed transactions that contained at least one write.
    let writeTransactions = Atomic<Int>(0)
    /// Write operations committed.
    let committedWrites = Atomic<Int>(0)

    init(journalName: String, maxOperationsPerTransaction: Int) {
        self.journalName = journalName
        self.maxOperationsPerTransaction = max(maxOperationsPerTransaction, 1)
    }

    /// Starts the thread: `open` runs on it first; its failure is returned and the thread ends.
    func start(open: @escaping @Sendable () throws(PersistenceError) -> SQLiteStore) async throws(PersistenceError) {
        let opened: Result<Void, PersistenceError> = await withCheckedContinuation { continuation in
            let thread = Thread { [self] in
                let store: SQLiteStore
                do throws(PersistenceError) {
                    store = try open()
                } catch {
                    markExited()
                    continuation.resume(returning: .failure(error))
                    return
                }
                continuation.resume(returning: .success(()))
                run(store: store)
                store.close()
                markExited()
            }
            thread.name = "sluice-sqlite-journal"
            thread.stackSize = 1 << 20
            thread.start()
        }
        try opened.get()
    }

    /// Queues `body` for the writer thread and waits until its transaction has ended.
    func perform<Value: Sendable>(
        write isWrite: Bool, _ body: @escaping @Sendable (SQLiteStore) throws(PersistenceError) -> Value
    ) async throws(PersistenceError) -> Value {
        let result: Result<Value, PersistenceError> = await withCheckedContinuation { continuation in
            submit(write: isWrite, body) { continuation.resume(returning: $0) }
        }
        return try result.get()
    }

    /// Queues `body` for the writer thread; `completion` runs in a task the writer starts once the transaction has
    /// ended (at once, on the caller's thread, if the journal is closed). Operations run in the order they were
    /// submitted.
    func submit<Value: Sendable>(
        write isWrite: Bool, _ body: @escaping @Sendable (SQLiteStore) throws(PersistenceError) -> Value,
        completion: @escaping @Sendable (Result<Value, PersistenceError>) -> Void
    ) {
        submit(SQLiteOperationBox(isWrite: isWrite, body: body, completion: completion))
    }

    /// Queues `operation` for the writer thread: it runs in the order submitted, and is completed from a task the
    /// writer starts once its transaction has ended (at once, on the caller's thread, if the journal is closed).
    func submit(_ operation: some SQLiteOperation) {
        condition.lock()
        let accepted = !isClosing
        if accepted {
            pending.append(operation)
            condition.signal()
        }
        condition.unlock()
        if !accepted { operation.complete(transactionFailure: closedError) }
    }

    /// The thread's loop: take everything queued (up to the batch limit), run it as one transaction, complete it.
    private func run(store: SQLiteStore) {
        while true {
            condition.lock()
            while !isClosing && (pending.isEmpty || isPaused) { condition.wait() }
            if pending.isEmpty {
                condition.unlock()
                return
            }
            let count = min(pending.count, maxOperationsPerTransaction)
            let batch = Array(pending.prefix(count))
            pending.removeFirst(count)
            condition.unlock()
            runTransaction(batch, store: store)
        }
    }

    /// Runs a batch as one transaction and completes its operations.
    ///
    /// Optimistic first: every operation runs straight in the transaction (a savepoint per write costs two more
    /// statements each). Only if a write fails is the transaction rolled back and the batch run again with each write
    /// in its own savepoint, so that the failed write alone is undone and the others are stored.
    private func runTransaction(_ batch: [any SQLiteOperation], store: SQLiteStore) {
        if case .writeFailed = attempt(batch, store: store, isolatingWrites: false) {
            _ = attempt(batch, store: store, isolatingWrites: true)
        }
    }

    private enum Attempt { case done, writeFailed }

    private func attempt(_ batch: [any SQLiteOperation], store: SQLiteStore, isolatingWrites: Bool) -> Attempt {
        let writes = batch.reduce(0) { $0 + ($1.isWrite ? 1 : 0) }
        var storedWrites = 0
        var failure: PersistenceError?
        do throws(SQLiteFailure) {
            try store.database.run(cached: writes > 0 ? "BEGIN IMMEDIATE" : "BEGIN")
        } catch {
            failure = storageFailure(error, "cannot begin a transaction")
        }
        if failure == nil {
            for operation in batch {
                if operation.isWrite && isolatingWrites {
                    let (stored, transactionFailure) = runInSavepoint(operation, store: store)
                    if stored { storedWrites += 1 }
                    failure = transactionFailure
                } else if operation.execute(store) {
                    if operation.isWrite { storedWrites += 1 }
                } else if operation.isWrite && !store.isAutocommit {
                    // A write failed, perhaps halfway: undo the whole attempt and isolate the writes.
                    try? store.database.run(cached: "ROLLBACK")
                    store.transactionEnded(committed: false)
                    return .writeFailed
                }
                // SQLite rolls a whole transaction back by itself on some errors (disk full, I/O errors): then no
                // operation of the batch is stored.
                if failure == nil && store.isAutocommit {
                    failure = PersistenceError(
                        .storageFailure, journal: journalName,
                        message: "SQLite rolled the transaction back (\(store.database.lastMessage)); check the disk")
                }
                if failure != nil { break }
            }
        }
        if failure == nil {
            do throws(SQLiteFailure) {
                try store.database.run(cached: "COMMIT")
            } catch {
                failure = storageFailure(error, "the transaction did not commit")
            }
        }
        if failure != nil, !store.isAutocommit {
            try? store.database.run(cached: "ROLLBACK")
        }
        store.transactionEnded(committed: failure == nil)
        if failure == nil && storedWrites > 0 {
            writeTransactions.wrappingAdd(1, ordering: .relaxed)
            committedWrites.wrappingAdd(storedWrites, ordering: .relaxed)
        }
        // The callers are resumed from a task, not from this thread: their completions (an entity's next write, its
        // receipts and replies) would otherwise take the writer's time, and the writer is what limits the journal.
        let outcome = failure
        Task { for operation in batch { operation.complete(transactionFailure: outcome) } }
        return .done
    }

    /// Runs a write in a savepoint, undoing just this write if it fails. Returns whether the write is stored, and a
    /// failure only when the transaction as a whole cannot go on.
    private func runInSavepoint(_ operation: any SQLiteOperation, store: SQLiteStore) -> (Bool, PersistenceError?) {
        do throws(SQLiteFailure) {
            try store.database.run(cached: "SAVEPOINT op")
        } catch {
            return (false, storageFailure(error, "cannot start a savepoint"))
        }
        if operation.execute(store) {
            do throws(SQLiteFailure) {
                try store.database.run(cached: "RELEASE op")
            } catch {
                return (false, storageFailure(error, "cannot release a savepoint"))
            }
            return (true, nil)
        }
        if store.isAutocommit { return (false, nil) }  // the whole transaction is gone; the caller reports it
        do throws(SQLiteFailure) {
            try store.database.execute("ROLLBACK TO op; RELEASE op")
        } catch {
            return (false, storageFailure(error, "cannot roll a failed write back"))
        }
        return (false, nil)
    }

    private func storageFailure(_ error: SQLiteFailure, _ what: String) -> PersistenceError {
        PersistenceError(.storageFailure, journal: journalName, message: "\(what): \(error)")
    }

    private func markExited() {
        condition.lock()
        hasExited = true
        isClosing = true
        let waiters = exitWaiters
        exitWaiters = []
        let orphans = pending
        pending = []
        condition.unlock()
        for orphan in orphans { orphan.complete(transactionFailure: closedError) }
        for waiter in waiters { waiter.resume() }
    }

    private var closedError: PersistenceError {
        PersistenceError(.journalClosed, journal: journalName, message: "the journal was closed; open it again")
    }

    /// Stops taking operations; the thread finishes what is queued, closes the connection and ends.
    func requestClose() {
        condition.lock()
        isClosing = true
        condition.broadcast()
        condition.unlock()
    }

    /// ``requestClose()``, then waits until the thread has ended.
    func close() async {
        requestClose()
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            condition.lock()
            let exited = hasExited
            if !exited { exitWaiters.append(continuation) }
            condition.unlock()
            if exited { continuation.resume() }
        }
    }

    // MARK: Testing

    /// Holds the thread before its next transaction (operations keep queueing).
    func pause() {
        condition.lock()
        isPaused = true
        condition.unlock()
    }

    /// Lets the thread go on.
    func resume() {
        condition.lock()
        isPaused = false
        condition.broadcast()
        condition.unlock()
    }

    /// Operations waiting for the thread.
    var pendingCount: Int {
        condition.lock()
        defer { condition.unlock() }
        return pending.count
    }
}
