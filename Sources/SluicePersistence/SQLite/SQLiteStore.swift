import CSQLite
import Synchronization

/// The journal's tables and queries on one connection. Confined to the writer thread (see ``SQLiteWriter``).
///
/// Schema (version 2, in `PRAGMA user_version`):
/// - `events(entity_type, entity_id, sequence_nr, manifest, version, payload, checksum, input_topic,
///   input_partition, input_offset)`, keyed by the first three. An append's input offset is stored on its last event
///   (`NULL` on the others).
/// - `snapshots(entity_type, entity_id, sequence_nr, manifest, version, payload, checksum, offsets_through)`, the
///   latest per entity. `offsets_through` is the highest sequence number whose event's input offset is folded into
///   `input_offsets` (see below).
/// - `input_offsets(entity_type, entity_id, topic, partition_nr, offset_nr)`: the highest applied offset per input
///   partition of appends without events, and of the events folded into it when a snapshot was saved.
///
/// An entity's applied input offsets are therefore `input_offsets` merged with the offsets of its events after its
/// snapshot's `offsets_through`, a range recovery reads anyway. An append is one insert per event: version 1 also
/// updated an `input_offsets` row per append, a second B-tree search and write that cost a third of the journal's
/// time (`sluice-bench persistence --parts journal`: 95k → 150k appends/s without it).
///
/// Version 1 files are migrated when opened: the new columns are added (`NULL`: version 1 kept every offset in
/// `input_offsets`) and each snapshot's `offsets_through` is set to its entity's highest stored event (all of them
/// have nothing to fold, and every later one is read).
///
/// `checksum` is a 64-bit FNV-1a hash of the sequence number, version, manifest and payload: a damaged row is
/// reported as corrupt instead of being decoded into wrong state.
final class SQLiteStore {
    static let schemaVersion = 2

    let database: SQLiteDatabase
    let journalName: String
    /// Counts events read (for tests and recovery measurements).
    let counters: SQLiteCounters

    /// Highest stored sequence numbers, so that an append need not look its entity's up again (a B-tree search of
    /// three per append): learnt from the database or from appends, including the open transaction's. Events are
    /// never deleted, so a known highest number only grows; bounded by ``highestCacheLimit`` (emptied after a commit
    /// that leaves it larger). One lookup per append: the id is hashed once, and the entry changed in place.
    private var highest: [PersistenceID: Int64] = [:]
    /// What the open transaction's appends changed in ``highest`` (each entry's value before), so that a rollback
    /// can put it back.
    private var transactionUndo: [(id: PersistenceID, before: Int64?)] = []
    static let highestCacheLimit = 200_000

    init(database: SQLiteDatabase, journalName: String, counters: SQLiteCounters) {
        self.database = database
        self.journalName = journalName
        self.counters = counters
    }

    /// Whether no transaction is open (SQLite rolled it back, or none began).
    var isAutocommit: Bool { sqlite3_get_autocommit(database.handle) != 0 }

    func close() { database.close() }

    // MARK: Opening

    /// Opens (creating if needed) the journal file in WAL mode with the given `synchronous` level.
    static func open(path: String, synchronous: String, journalName: String, counters: SQLiteCounters)
        throws(PersistenceError) -> SQLiteStore
    {
        do {
            let database = try SQLiteDatabase(path: path)
            do {
                try database.execute("PRAGMA busy_timeout = 5000")
                let mode = try database.scalarText("PRAGMA journal_mode = WAL")
                guard mode?.lowercased() == "wal" else {
                    throw SQLiteFailure(
                        code: SQLITE_ERROR,
                        message: "WAL mode is not available for \(path) (journal_mode is \(mode ?? "unknown")); "
                            + "put the journal on a local file system")
                }
                try database.execute("PRAGMA synchronous = \(synchronous)")
                // 32 MiB of page cache (SQLite's default is 2 MiB): the events index of many entities stays in
                // memory instead of being read back from the file at every append.
                try database.execute("PRAGMA cache_size = -32768")
                // Checkpoint the WAL into the database file every 8,192 pages (32 MiB) instead of SQLite's 1,000. A
                // group-committed transaction of appends to many entities dirties hundreds of pages, so the default
                // ran a checkpoint after almost every transaction, on the writer thread; a page rewritten by several
                // transactions is now copied back once (measured: 58-61k to 70-76k appends/s, docs/benchmarks.md).
                try database.execute("PRAGMA wal_autocheckpoint = 8192")
                // The version is read inside the write transaction that migrates, so that a second opener that
                // waited for the first one's migration sees its result instead of migrating again.
                try database.execute("BEGIN IMMEDIATE")
                do {
                    let version = Int(try database.scalarText("PRAGMA user_version") ?? "0") ?? 0
                    guard version <= schemaVersion else {
                        throw SQLiteFailure(
                            code: SQLITE_ERROR,
                            message: "\(path) has journal schema version \(version), newer than this Sluice's "
                                + "\(schemaVersion): run a newer Sluice")
                    }
                    if version < schemaVersion { try database.execute(migrations(from: version)) }
                    try database.execute("COMMIT")
                } catch {
                    try? database.execute("ROLLBACK")
                    throw error
                }
            } catch {
                database.close()
                throw error
            }
            return SQLiteStore(database: database, journalName: journalName, counters: counters)
        } catch {
            throw PersistenceError(
                .storageFailure, journal: journalName, message: "cannot open the journal: \(error)")
        }
    }

    /// The statements that bring a file of schema `version` to ``schemaVersion`` (run in one transaction).
    private static func migrations(from version: Int) -> String {
        var sql = ""
        if version < 1 {
            sql += """
                CREATE TABLE IF NOT EXISTS events (
                    entity_type TEXT NOT NULL, entity_id TEXT NOT NULL, sequence_nr INTEGER NOT NULL,
                    manifest TEXT NOT NULL, version INTEGER NOT NULL, payload BLOB NOT NULL,
                    checksum INTEGER NOT NULL,
                    PRIMARY KEY (entity_type, entity_id, sequence_nr)) WITHOUT ROWID;
                CREATE TABLE IF NOT EXISTS snapshots (
                    entity_type TEXT NOT NULL, entity_id TEXT NOT NULL, sequence_nr INTEGER NOT NULL,
                    manifest TEXT NOT NULL, version INTEGER NOT NULL, payload BLOB NOT NULL,
                    checksum INTEGER NOT NULL,
                    PRIMARY KEY (entity_type, entity_id)) WITHOUT ROWID;
                CREATE TABLE IF NOT EXISTS input_offsets (
                    entity_type TEXT NOT NULL, entity_id TEXT NOT NULL, topic TEXT NOT NULL,
                    partition_nr INTEGER NOT NULL, offset_nr INTEGER NOT NULL,
                    PRIMARY KEY (entity_type, entity_id, topic, partition_nr)) WITHOUT ROWID;

                """
        }
        if version < 2 {
            sql += """
                ALTER TABLE events ADD COLUMN input_topic TEXT;
                ALTER TABLE events ADD COLUMN input_partition INTEGER;
                ALTER TABLE events ADD COLUMN input_offset INTEGER;
                ALTER TABLE snapshots ADD COLUMN offsets_through INTEGER NOT NULL DEFAULT 0;
                UPDATE snapshots SET offsets_through = coalesce((
                    SELECT max(sequence_nr) FROM events
                    WHERE events.entity_type = snapshots.entity_type AND events.entity_id = snapshots.entity_id), 0);

                """
        }
        return sql + "PRAGMA user_version = \(schemaVersion);"
    }

    // MARK: Events

    func highestSequenceNumber(of id: PersistenceID) throws(PersistenceError) -> Int64 {
        try storage(id, nil) { () throws(SQLiteFailure) -> Int64 in
            let statement = try database.prepared(
                "SELECT max(sequence_nr) FROM events WHERE entity_type = ?1 AND entity_id = ?2")
            defer { statement.reset() }
            try statement.bind(1, id.entityType)
            try statement.bind(2, id.entityID)
            guard try statement.step(), !statement.isNull(0) else { return 0 }
            return statement.int64(0)
        }
    }

    /// The writer's transaction ended: what its appends stored is known from now on if it committed, and
    /// forgotten if it was rolled back.
    func transactionEnded(committed: Bool) {
        defer { transactionUndo.removeAll(keepingCapacity: true) }
        guard committed else {
            for (id, before) in transactionUndo.reversed() { highest[id] = before }
            return
        }
        if highest.count > Self.highestCacheLimit { highest = [:] }
    }

    /// Stores an append after checking its sequence numbers (in the open transaction; the writer undoes it if it
    /// fails).
    func append(_ append: JournalAppend) throws(PersistenceError) {
        let id = append.persistenceID
        let cached = self.highest.index(forKey: id)
        let highest: Int64
        if let cached {
            highest = self.highest.values[cached]
        } else {
            highest = try highestSequenceNumber(of: id)
        }
        if let first = append.events.first, first.sequenceNumber != highest + 1 {
            throw PersistenceError(
                .sequenceConflict, journal: journalName, persistenceID: id, sequenceNumber: first.sequenceNumber,
                message: "the entity's highest stored sequence number is \(highest), so the next must be "
                    + "\(highest + 1): another writer appended to this entity (is it running twice?), or its state "
                    + "is stale; restart the entity to recover its state")
        }
        for event in append.events {
            // The append's input offset goes on its last event (the others keep NULL).
            let offset = event.sequenceNumber == append.events.last?.sequenceNumber ? append.inputOffset : nil
            try storage(id, event.sequenceNumber) { () throws(SQLiteFailure) in
                try insertEvent(event, of: id, inputOffset: offset)
            }
        }
        if append.events.isEmpty, let offset = append.inputOffset {
            try storage(id, nil) { () throws(SQLiteFailure) in try raiseInputOffset(offset, of: id) }
        }
        if let snapshot = append.snapshot {
            try saveSnapshot(snapshot, for: id, storedThrough: max(highest, append.events.last?.sequenceNumber ?? 0))
        }
        // Last: an append that failed halfway is undone (its transaction or savepoint rolled back) and noted nowhere.
        if let last = append.events.last {
            if let cached {
                transactionUndo.append((id, highest))
                self.highest.values[cached] = last.sequenceNumber
            } else {
                transactionUndo.append((id, nil))
                self.highest[id] = last.sequenceNumber
            }
        }
    }

    /// Inserts one event row. Its texts and payload are bound in place (``SQLiteStatement/bindInPlace(_:text:)``):
    /// copying them, as a plain bind does, cost a `malloc` and a copy per parameter on the writer thread, five per
    /// event; the statement runs (and is reset) while the strings and the array are borrowed.
    private func insertEvent(_ event: JournalEvent, of id: PersistenceID, inputOffset: InputOffset?)
        throws(SQLiteFailure)
    {
        let statement = try database.prepared(
            """
            INSERT INTO events (entity_type, entity_id, sequence_nr, manifest, version, payload, checksum,
                input_topic, input_partition, input_offset)
            VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
            """)
        var (type, entityID, manifest) = (id.entityType, id.entityID, event.manifest)
        var topic = inputOffset?.topic ?? ""
        let checksum = Checksum.of(
            sequenceNumber: event.sequenceNumber, version: event.version, manifest: event.manifest,
            payload: event.payload)
        try SQLiteFailure.catching {
            try type.withUTF8 { type in
                try entityID.withUTF8 { entityID in
                    try manifest.withUTF8 { manifest in
                        try topic.withUTF8 { topic in
                            try event.payload.withUnsafeBytes { payload in
                                // Whatever happens, no binding outlives the borrowed bytes.
                                defer { statement.reset() }
                                try statement.bindInPlace(1, text: type)
                                try statement.bindInPlace(2, text: entityID)
                                try statement.bind(3, event.sequenceNumber)
                                try statement.bindInPlace(4, text: manifest)
                                try statement.bind(5, Int64(event.version))
                                try statement.bindInPlace(6, blob: payload)
                                try statement.bind(7, checksum)
                                if let inputOffset {
                                    try statement.bindInPlace(8, text: topic)
                                    try statement.bind(9, Int64(inputOffset.partition))
                                    try statement.bind(10, inputOffset.offset)
                                }
                                try statement.run()
                            }
                        }
                    }
                }
            }
        }
    }

    func readEvents(of id: PersistenceID, from sequenceNumber: Int64, limit: Int) throws(PersistenceError)
        -> [JournalEvent]
    {
        let rows = try storage(id, sequenceNumber) { () throws(SQLiteFailure) -> [(JournalEvent, Int64)] in
            let statement = try database.prepared(
                """
                SELECT sequence_nr, manifest, version, payload, checksum FROM events
                WHERE entity_type = ?1 AND entity_id = ?2 AND sequence_nr >= ?3
                ORDER BY sequence_nr LIMIT ?4
                """)
            defer { statement.reset() }
            try statement.bind(1, id.entityType)
            try statement.bind(2, id.entityID)
            try statement.bind(3, sequenceNumber)
            try statement.bind(4, Int64(max(limit, 0)))
            var rows: [(JournalEvent, Int64)] = []
            while try statement.step() {
                let event = JournalEvent(
                    sequenceNumber: statement.int64(0), manifest: statement.text(1), version: Int(statement.int64(2)),
                    payload: statement.blob(3))
                rows.append((event, statement.int64(4)))
            }
            return rows
        }
        counters.eventsRead.wrappingAdd(rows.count, ordering: .relaxed)
        var events: [JournalEvent] = []
        events.reserveCapacity(rows.count)
        for (event, checksum) in rows {
            let expected = Checksum.of(
                sequenceNumber: event.sequenceNumber, version: event.version, manifest: event.manifest,
                payload: event.payload)
            guard expected == checksum else {
                throw PersistenceError(
                    .corruptEvent, journal: journalName, persistenceID: id, sequenceNumber: event.sequenceNumber,
                    message: "the stored event does not match its checksum (the file was damaged or edited); "
                        + "restore the journal file from a backup, or delete this entity's events to start it afresh")
            }
            events.append(event)
        }
        return events
    }

    // MARK: Snapshots

    /// Binds the columns events and snapshots share, `(entity_type, entity_id, sequence_nr, manifest, version,
    /// payload, checksum)` as `?1`…`?7`, the checksum computed over the stored fields.
    private static func bindRow(
        _ statement: SQLiteStatement, id: PersistenceID, sequenceNumber: Int64, manifest: String, version: Int,
        payload: [UInt8]
    ) throws(SQLiteFailure) {
        try statement.bind(1, id.entityType)
        try statement.bind(2, id.entityID)
        try statement.bind(3, sequenceNumber)
        try statement.bind(4, manifest)
        try statement.bind(5, Int64(version))
        try statement.bind(6, payload)
        try statement.bind(
            7, Checksum.of(sequenceNumber: sequenceNumber, version: version, manifest: manifest, payload: payload))
    }

    func saveSnapshot(_ snapshot: JournalSnapshot, for id: PersistenceID) throws(PersistenceError) {
        try saveSnapshot(snapshot, for: id, storedThrough: highestSequenceNumberCached(of: id))
    }

    /// Saves the entity's snapshot, first folding the input offsets of its events up to `storedThrough` (its highest
    /// stored sequence number) into `input_offsets`, so that reading its offsets need not go back further than this
    /// snapshot.
    private func saveSnapshot(_ snapshot: JournalSnapshot, for id: PersistenceID, storedThrough: Int64)
        throws(PersistenceError)
    {
        try storage(id, snapshot.sequenceNumber) { () throws(SQLiteFailure) in
            let fold = try database.prepared(
                """
                INSERT INTO input_offsets (entity_type, entity_id, topic, partition_nr, offset_nr)
                SELECT ?1, ?2, input_topic, input_partition, max(input_offset) FROM events
                WHERE entity_type = ?1 AND entity_id = ?2 AND input_offset IS NOT NULL
                    AND sequence_nr > coalesce(
                        (SELECT offsets_through FROM snapshots WHERE entity_type = ?1 AND entity_id = ?2), 0)
                GROUP BY input_topic, input_partition
                ON CONFLICT (entity_type, entity_id, topic, partition_nr)
                DO UPDATE SET offset_nr = max(offset_nr, excluded.offset_nr)
                """)
            try fold.bind(1, id.entityType)
            try fold.bind(2, id.entityID)
            try fold.run()
            let statement = try database.prepared(
                """
                INSERT OR REPLACE INTO snapshots
                    (entity_type, entity_id, sequence_nr, manifest, version, payload, checksum, offsets_through)
                VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                """)
            try Self.bindRow(
                statement, id: id, sequenceNumber: snapshot.sequenceNumber, manifest: snapshot.manifest,
                version: snapshot.version, payload: snapshot.payload)
            try statement.bind(8, storedThrough)
            try statement.run()
        }
    }

    /// The highest stored sequence number, from the cache when it is known.
    private func highestSequenceNumberCached(of id: PersistenceID) throws(PersistenceError) -> Int64 {
        if let known = highest[id] { return known }
        return try highestSequenceNumber(of: id)
    }

    /// Raises the entity's recorded offset of the offset's input partition to the offset (it never goes down).
    private func raiseInputOffset(_ offset: InputOffset, of id: PersistenceID) throws(SQLiteFailure) {
        let statement = try database.prepared(
            """
            INSERT INTO input_offsets (entity_type, entity_id, topic, partition_nr, offset_nr)
            VALUES (?1, ?2, ?3, ?4, ?5)
            ON CONFLICT (entity_type, entity_id, topic, partition_nr)
            DO UPDATE SET offset_nr = max(offset_nr, excluded.offset_nr)
            """)
        try statement.bind(1, id.entityType)
        try statement.bind(2, id.entityID)
        try statement.bind(3, offset.topic)
        try statement.bind(4, Int64(offset.partition))
        try statement.bind(5, offset.offset)
        try statement.run()
    }

    func loadSnapshot(of id: PersistenceID) throws(PersistenceError) -> JournalSnapshot? {
        let row = try storage(id, nil) { () throws(SQLiteFailure) -> (JournalSnapshot, Int64)? in
            let statement = try database.prepared(
                """
                SELECT sequence_nr, manifest, version, payload, checksum FROM snapshots
                WHERE entity_type = ?1 AND entity_id = ?2
                """)
            defer { statement.reset() }
            try statement.bind(1, id.entityType)
            try statement.bind(2, id.entityID)
            guard try statement.step() else { return nil }
            let snapshot = JournalSnapshot(
                sequenceNumber: statement.int64(0), manifest: statement.text(1), version: Int(statement.int64(2)),
                payload: statement.blob(3))
            return (snapshot, statement.int64(4))
        }
        guard let (snapshot, checksum) = row else { return nil }
        let expected = Checksum.of(
            sequenceNumber: snapshot.sequenceNumber, version: snapshot.version, manifest: snapshot.manifest,
            payload: snapshot.payload)
        guard expected == checksum else {
            throw PersistenceError(
                .corruptSnapshot, journal: journalName, persistenceID: id, sequenceNumber: snapshot.sequenceNumber,
                message: "the stored snapshot does not match its checksum (the file was damaged or edited); delete "
                    + "the snapshot row to recover from the events alone")
        }
        return snapshot
    }

    // MARK: Input offsets

    /// The entity's applied input offsets: `input_offsets`, merged with the offsets of its events after its
    /// snapshot's `offsets_through` (those not folded yet).
    func inputOffsets(of id: PersistenceID) throws(PersistenceError) -> [InputOffset] {
        try storage(id, nil) { () throws(SQLiteFailure) -> [InputOffset] in
            let statement = try database.prepared(
                """
                SELECT topic, partition_nr, max(offset_nr) FROM (
                    SELECT topic, partition_nr, offset_nr FROM input_offsets
                    WHERE entity_type = ?1 AND entity_id = ?2
                    UNION ALL
                    SELECT input_topic, input_partition, input_offset FROM events
                    WHERE entity_type = ?1 AND entity_id = ?2 AND input_offset IS NOT NULL
                        AND sequence_nr > coalesce(
                            (SELECT offsets_through FROM snapshots WHERE entity_type = ?1 AND entity_id = ?2), 0))
                GROUP BY topic, partition_nr ORDER BY topic, partition_nr
                """)
            defer { statement.reset() }
            try statement.bind(1, id.entityType)
            try statement.bind(2, id.entityID)
            var offsets: [InputOffset] = []
            while try statement.step() {
                offsets.append(
                    InputOffset(
                        topic: statement.text(0), partition: Int32(statement.int64(1)), offset: statement.int64(2)))
            }
            return offsets
        }
    }

    // MARK: Testing

    /// Overwrites a stored event's payload without updating its checksum, as disk damage would.
    func corruptEvent(of id: PersistenceID, sequenceNumber: Int64) throws(PersistenceError) {
        try storage(id, sequenceNumber) { () throws(SQLiteFailure) in
            let statement = try database.prepared(
                """
                UPDATE events SET payload = x'0badc0de' || payload
                WHERE entity_type = ?1 AND entity_id = ?2 AND sequence_nr = ?3
                """)
            try statement.bind(1, id.entityType)
            try statement.bind(2, id.entityID)
            try statement.bind(3, sequenceNumber)
            try statement.run()
        }
    }

    /// Runs SQLite calls, turning their failures into errors that name the entity, the journal and the sequence
    /// number.
    private func storage<Value>(
        _ id: PersistenceID, _ sequenceNumber: Int64?, _ body: () throws(SQLiteFailure) -> Value
    ) throws(PersistenceError) -> Value {
        do throws(SQLiteFailure) {
            return try body()
        } catch {
            let hint =
                switch error.code & 0xff {
                case SQLITE_CONSTRAINT: "a row with this key exists already"
                case SQLITE_FULL: "the disk is full"
                case SQLITE_CORRUPT, SQLITE_NOTADB: "the journal file is damaged: restore it from a backup"
                case SQLITE_BUSY, SQLITE_LOCKED: "another process holds the journal file: give each instance its own"
                case SQLITE_IOERR: "an I/O error occurred: check the disk"
                default: "see SQLite's message"
                }
            throw PersistenceError(
                .storageFailure, journal: journalName, persistenceID: id, sequenceNumber: sequenceNumber,
                message: "\(error) (\(hint))")
        }
    }
}

/// Counters shared between the writer thread and readers of the journal's statistics.
final class SQLiteCounters: Sendable {
    /// Events read from the file.
    let eventsRead = Atomic<Int>(0)
}

/// The 64-bit FNV-1a hash stored with each row to detect damage (not an authenticity check).
enum Checksum {
    static func of(sequenceNumber: Int64, version: Int, manifest: String, payload: [UInt8]) -> Int64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        @inline(__always) func mix(_ byte: UInt8) {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01b3
        }
        var sequence = UInt64(bitPattern: sequenceNumber).littleEndian
        withUnsafeBytes(of: &sequence) { for byte in $0 { mix(byte) } }
        var versionBits = UInt64(bitPattern: Int64(version)).littleEndian
        withUnsafeBytes(of: &versionBits) { for byte in $0 { mix(byte) } }
        for byte in manifest.utf8 { mix(byte) }
        mix(0)
        for byte in payload { mix(byte) }
        return Int64(bitPattern: hash)
    }
}
