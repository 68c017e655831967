// Appends events to a SQLite journal from several entities at once and prints `ack <entity> <sequence number>`
// after each append returns (that is, once it is acknowledged as durable). The crash-safety test kills this process
// with SIGKILL mid-stream and checks that the journal holds every acknowledged event.
//
// Usage: sluice-persistence-crash-helper <journal path> <entities> <events per entity> [full|normal]
//
// Two more modes run a counter entity per key behind a Kafka consumer (CounterConsumer.swift):
//   sluice-persistence-crash-helper counter-consumer <bootstrap> <topic> <group> <journal path>
//   sluice-persistence-crash-helper counter-report <journal path> <key>...
import Foundation
import SluicePersistence
import Synchronization

let arguments = CommandLine.arguments
if arguments.count > 1, let mode = CounterMode(rawValue: arguments[1]) {
    exit(await mode.run(Array(arguments.dropFirst(2))))
}
guard arguments.count >= 4, let entities = Int(arguments[2]), let eventsPerEntity = Int64(arguments[3]) else {
    FileHandle.standardError.write(
        Data(
            "usage: sluice-persistence-crash-helper <journal path> <entities> <events per entity> [full|normal]\n".utf8)
    )
    exit(2)
}
let durability: SQLiteDurability = arguments.count > 4 && arguments[4] == "normal" ? .normal : .full

/// Writes whole lines to stdout, unbuffered (one `write` per line, so a SIGKILL loses no printed line).
final class LineOutput: Sendable {
    private let lock = Mutex(())
    func write(_ line: String) {
        lock.withLock { _ in FileHandle.standardOutput.write(Data((line + "\n").utf8)) }
    }
}

let output = LineOutput()
do {
    let journal = try await SQLiteJournal(path: arguments[1], durability: durability)
    try await withThrowingTaskGroup(of: Void.self) { group in
        for entity in 0..<entities {
            group.addTask {
                let id = PersistenceID(entityType: "crash", entityID: "e\(entity)")
                var sequenceNumber = try await journal.highestSequenceNumber(of: id)
                while sequenceNumber < eventsPerEntity {
                    sequenceNumber += 1
                    let payload = Array("event \(sequenceNumber) of e\(entity)".utf8)
                    try await journal.append(
                        JournalAppend(
                            persistenceID: id,
                            events: [
                                JournalEvent(
                                    sequenceNumber: sequenceNumber, manifest: "crash", version: 1, payload: payload)
                            ]))
                    output.write("ack e\(entity) \(sequenceNumber)")
                }
            }
        }
        try await group.waitForAll()
    }
    await journal.close()
    output.write("done")
} catch {
    FileHandle.standardError.write(Data("crash helper failed: \(error)\n".utf8))
    exit(1)
}
