import Foundation
import SluiceTesting
import Testing

@testable import SluicePersistence

/// The SQLite journal's file format: files of the previous schema are migrated in place when opened.
@Suite struct SQLiteSchemaTests {
    let a = PersistenceID(entityType: "account", entityID: "a")
    let b = PersistenceID(entityType: "account", entityID: "b")

    /// Writes a journal file as Sluice with schema version 1 did: every append's input offset in `input_offsets`.
    func writeVersion1File(at path: String) throws {
        let database = try SQLiteDatabase(path: path)
        defer { database.close() }
        try database.execute(
            """
            PRAGMA journal_mode = WAL;
            BEGIN IMMEDIATE;
            CREATE TABLE events (
                entity_type TEXT NOT NULL, entity_id TEXT NOT NULL, sequence_nr INTEGER NOT NULL,
                manifest TEXT NOT NULL, version INTEGER NOT NULL, payload BLOB NOT NULL, checksum INTEGER NOT NULL,
                PRIMARY KEY (entity_type, entity_id, sequence_nr)) WITHOUT ROWID;
            CREATE TABLE snapshots (
                entity_type TEXT NOT NULL, entity_id TEXT NOT NULL, sequence_nr INTEGER NOT NULL,
                manifest TEXT NOT NULL, version INTEGER NOT NULL, payload BLOB NOT NULL, checksum INTEGER NOT NULL,
                PRIMARY KEY (entity_type, entity_id)) WITHOUT ROWID;
            CREATE TABLE input_offsets (
                entity_type TEXT NOT NULL, entity_id TEXT NOT NULL, topic TEXT NOT NULL,
                partition_nr INTEGER NOT NULL, offset_nr INTEGER NOT NULL,
                PRIMARY KEY (entity_type, entity_id, topic, partition_nr)) WITHOUT ROWID;
            PRAGMA user_version = 1;
            COMMIT;
            """)
        for id in [a, b] {
            for event in testEvents(id, 1...3) {
                let checksum = Checksum.of(
                    sequenceNumber: event.sequenceNumber, version: event.version, manifest: event.manifest,
                    payload: event.payload)
                try database.execute(
                    "INSERT INTO events VALUES ('\(id.entityType)', '\(id.entityID)', \(event.sequenceNumber), "
                        + "'\(event.manifest)', \(event.version), x'\(hex(event.payload))', \(checksum))")
            }
        }
        let state: [UInt8] = [42]
        let snapshotChecksum = Checksum.of(sequenceNumber: 2, version: 1, manifest: "state", payload: state)
        try database.execute(
            """
            INSERT INTO snapshots VALUES ('account', 'a', 2, 'state', 1, x'2a', \(snapshotChecksum));
            INSERT INTO input_offsets VALUES ('account', 'a', 'in', 0, 30), ('account', 'a', 'in', 1, 4),
                ('account', 'b', 'in', 0, 31);
            """)
    }

    func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

    func userVersion(at path: String) throws -> String? {
        let database = try SQLiteDatabase(path: path)
        defer { database.close() }
        return try database.scalarText("PRAGMA user_version")
    }

    @Test func aVersion1FileIsMigratedAndKeepsItsEventsSnapshotsAndOffsets() async throws {
        let directory = try TemporaryDirectory.make()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("journal.db").path
        try writeVersion1File(at: path)

        let journal = try await SQLiteJournal(path: path)
        #expect(try await journal.readEvents(of: a, from: 1, limit: 10) == testEvents(a, 1...3))
        #expect(try await journal.loadSnapshot(of: a)?.sequenceNumber == 2)
        #expect(
            try await journal.inputOffsets(of: a) == [
                InputOffset(topic: "in", partition: 0, offset: 30), InputOffset(topic: "in", partition: 1, offset: 4),
            ])
        // Appends after the migration store their offsets the new way; the old ones still count.
        try await journal.append(
            JournalAppend(
                persistenceID: a, events: testEvents(a, 4...4), inputOffset: InputOffset(topic: "in", partition: 1, offset: 5)))
        try await journal.append(
            JournalAppend(
                persistenceID: b, events: testEvents(b, 4...4), inputOffset: InputOffset(topic: "in", partition: 0, offset: 29)))
        await journal.close()
        #expect(try userVersion(at: path) == "\(SQLiteStore.schemaVersion)")

        let reopened = try await SQLiteJournal(path: path)
        #expect(
            try await reopened.inputOffsets(of: a) == [
                InputOffset(topic: "in", partition: 0, offset: 30), InputOffset(topic: "in", partition: 1, offset: 5),
            ])
        #expect(try await reopened.inputOffsets(of: b) == [InputOffset(topic: "in", partition: 0, offset: 31)])
        #expect(try await reopened.readEvents(of: b, from: 1, limit: 10) == testEvents(b, 1...4))
        await reopened.close()
    }

    @Test func aFileOfANewerSchemaIsRefusedWithAClearError() async throws {
        let directory = try TemporaryDirectory.make()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("journal.db").path
        do {
            let database = try SQLiteDatabase(path: path)
            defer { database.close() }
            try database.execute("PRAGMA user_version = \(SQLiteStore.schemaVersion + 1)")
        }
        let error = await persistenceError { _ = try await SQLiteJournal(path: path) }
        #expect(error?.code == .storageFailure)
        #expect(error.map { "\($0)" }?.contains("run a newer Sluice") == true)
    }
}
