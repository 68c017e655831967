import Synchronization

/// How far an acknowledged append survives.
public enum SQLiteDurability: Sendable, Hashable {
    /// `PRAGMA synchronous = FULL`: every commit fsyncs the write-ahead log before it returns, so an acknowledged
    /// append survives a process crash (`kill -9`), an operating-system crash and a power loss. Group commit pays
    /// one fsync per transaction, not per event. The default.
    case full
    /// `PRAGMA synchronous = NORMAL`: a commit writes the write-ahead log to the operating system without fsync, so
    /// an acknowledged append survives a process crash (`kill -9`: the data is in the kernel's page cache), but the
    /// last transactions can be lost on an operating-system crash or power loss (the file stays consistent; it just
    /// ends earlier). Faster on slow disks; choose it only if losing acknowledged state on power loss is acceptable.
    case normal

    var pragmaValue: String {
        switch self {
        case .full: "FULL"
        case .normal: "NORMAL"
        }
    }
}

/// Settings of a ``SQLiteJournal``.
public struct SQLiteJournalConfiguration: Sendable {
    /// The journal file (created if missing). One file per Sluice instance: SQLite allows one writer at a time.
    public var path: String
    /// How far an acknowledged append survives. Default: ``SQLiteDurability/full``.
    public var durability: SQLiteDurability = .full
    /// At most this many operations (appends, reads) run in one transaction; more wait for the next one.
    /// Default: 4,096.
    ///
    /// Larger transactions are cheaper per append: a commit writes every page it changed to the write-ahead log, and
    /// the more appends share a transaction, the more of them share pages (the input offsets' pages above all).
    /// With 10,000 entities and 512 appends per transaction, the writer thread spent a third of its time in the
    /// kernel writing the log. Measured with `sluice-bench persistence --journals sqlite --sqlite-batch N`: 47,000
    /// events/s with 512, 60,000-74,000 with 2,048 to 16,384.
    public var maxOperationsPerTransaction: Int = 4096

    public init(path: String, durability: SQLiteDurability = .full) {
        self.path = path
        self.durability = durability
    }
}

/// What a ``SQLiteJournal`` has done so far.
public struct SQLiteJournalStatistics: Sendable, Hashable {
    /// Committed transactions that wrote something: with group commit, far fewer than ``appends``.
    public var writeTransactions: Int
    /// Committed writes (appends and snapshot saves).
    public var appends: Int
    /// Events read from the file.
    public var eventsRead: Int
}

/// The embedded journal: one SQLite file per instance, in WAL mode, written by one dedicated thread that batches
/// every append waiting for it into one transaction (group commit).
///
/// - Threads: every SQLite call runs on the journal's own OS thread, never on Swift's cooperative pool (SQLite
///   blocks on disk I/O and fsync). Callers suspend until their operation's transaction has committed.
/// - Group commit: while a transaction runs, new operations queue; the next transaction takes all of them (up to
///   ``SQLiteJournalConfiguration/maxOperationsPerTransaction``). Each append runs in a savepoint, so one rejected
///   append (a sequence conflict) does not affect the others; an append's caller is resumed only after its
///   transaction committed, so an acknowledged append is durable (see ``SQLiteDurability``).
/// - Integrity: every row carries a checksum; a damaged event fails the read with
///   ``PersistenceError/Code/corruptEvent`` naming the entity, this journal and the sequence number.
public final class SQLiteJournal: Journal {
    public let name: String
    /// The journal file.
    public let path: String
    private let writer: SQLiteWriter
    private let counters = SQLiteCounters()

    /// Opens (creating if needed) the journal file.
    /// - Throws: ``PersistenceError/Code/storageFailure`` when the file cannot be opened, is not a journal, was
    ///   written by a newer Sluice, or does not support WAL mode.
    public init(_ configuration: SQLiteJournalConfiguration) async throws(PersistenceError) {
        let name = "sqlite:\(configuration.path)"
        self.name = name
        self.path = configuration.path
        self.writer = SQLiteWriter(
            journalName: name, maxOperationsPerTransaction: configuration.maxOperationsPerTransaction)
        let counters = self.counters
        let synchronous = configuration.durability.pragmaValue
        try await writer.start { () throws(PersistenceError) -> SQLiteStore in
            try SQLiteStore.open(
                path: configuration.path, synchronous: synchronous, journalName: name, counters: counters)
        }
    }

    /// Opens the journal at `path` with the given durability.
    public convenience init(path: String, durability: SQLiteDurability = .full) async throws(PersistenceError) {
        try await self.init(SQLiteJournalConfiguration(path: path, durability: durability))
    }

    deinit { writer.requestClose() }

    public func append(_ append: JournalAppend) async throws(PersistenceError) {
        try append.validateSequenceNumbers(journal: name)
        try await writer.perform(write: true) { (store) throws(PersistenceError) in try store.append(append) }
    }

    public func submit(_ append: consuming JournalAppend, completion: @escaping @Sendable (PersistenceError?) -> Void) {
        do throws(PersistenceError) {
            try append.validateSequenceNumbers(journal: name)
        } catch {
            completion(error)
            return
        }
        writer.submit(SQLiteAppendOperation(append, completion: completion))
    }

    public func readEvents(of id: PersistenceID, from sequenceNumber: Int64, limit: Int) async throws(PersistenceError)
        -> [JournalEvent]
    {
        try await writer.perform(write: false) { (store) throws(PersistenceError) in
            try store.readEvents(of: id, from: sequenceNumber, limit: limit)
        }
    }

    public func highestSequenceNumber(of id: PersistenceID) async throws(PersistenceError) -> Int64 {
        try await writer.perform(write: false) { (store) throws(PersistenceError) in
            try store.highestSequenceNumber(of: id)
        }
    }

    public func saveSnapshot(_ snapshot: JournalSnapshot, for id: PersistenceID) async throws(PersistenceError) {
        try await writer.perform(write: true) { (store) throws(PersistenceError) in
            try store.saveSnapshot(snapshot, for: id)
        }
    }

    public func loadSnapshot(of id: PersistenceID) async throws(PersistenceError) -> JournalSnapshot? {
        try await writer.perform(write: false) { (store) throws(PersistenceError) in try store.loadSnapshot(of: id) }
    }

    public func inputOffsets(of id: PersistenceID) async throws(PersistenceError) -> [InputOffset] {
        try await writer.perform(write: false) { (store) throws(PersistenceError) in try store.inputOffsets(of: id) }
    }

    public func close() async { await writer.close() }

    /// What the journal has done so far.
    public var statistics: SQLiteJournalStatistics {
        SQLiteJournalStatistics(
            writeTransactions: writer.writeTransactions.load(ordering: .relaxed),
            appends: writer.committedWrites.load(ordering: .relaxed),
            eventsRead: counters.eventsRead.load(ordering: .relaxed))
    }
}

// MARK: - Testing hooks

extension SQLiteJournal {
    /// Holds the writer thread before its next transaction while operations keep queueing (to test group commit
    /// deterministically).
    @_spi(Testing) public func pauseWriterForTesting() { writer.pause() }

    /// Lets the writer thread go on after ``pauseWriterForTesting()``.
    @_spi(Testing) public func resumeWriterForTesting() { writer.resume() }

    /// Operations waiting for the writer thread.
    @_spi(Testing) public var pendingOperationsForTesting: Int { writer.pendingCount }

    /// Queues a write that runs `sql` the first time its batch runs, and nothing when the batch runs again after
    /// another write of it failed: a change that makes a later write of the batch fail in the first attempt only.
    @_spi(Testing) public func queueFirstAttemptWriteForTesting(_ sql: String) {
        let (runs, name) = (RunCounter(), self.name)
        writer.submit(
            write: true,
            { (store) throws(PersistenceError) in
                guard runs.next() == 0 else { return }
                do throws(SQLiteFailure) {
                    try store.database.execute(sql)
                } catch {
                    throw PersistenceError(.storageFailure, journal: name, message: "\(error)")
                }
            }, completion: { _ in })
    }

    /// Damages a stored event's payload (its checksum no longer matches), as disk damage would.
    @_spi(Testing) public func corruptEventForTesting(of id: PersistenceID, sequenceNumber: Int64)
        async throws(PersistenceError)
    {
        try await writer.perform(write: true) { (store) throws(PersistenceError) in
            try store.corruptEvent(of: id, sequenceNumber: sequenceNumber)
        }
    }
}

/// Counts the runs of a testing write.
private final class RunCounter: Sendable {
    private let count = Atomic<Int>(0)
    /// The number of earlier runs.
    func next() -> Int { count.wrappingAdd(1, ordering: .relaxed).oldValue }
}
