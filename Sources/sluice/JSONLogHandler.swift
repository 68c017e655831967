import Foundation
import Logging
import SluiceConnectorConfig

/// Writes one JSON object per log record to standard error: `{"ts","level","label","message",...metadata}`.
struct JSONLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var members: [String: JSONValue] = [
            "ts": .string(ISO8601DateFormatter().string(from: Date())), "level": .string(event.level.rawValue),
            "label": .string(label), "message": .string(event.message.description),
            "source": .string("\(event.file.split(separator: "/").last ?? ""):\(event.line)"),
        ]
        for (key, value) in metadata.merging(event.metadata ?? [:], uniquingKeysWith: { $1 }) {
            members[key] = .string(value.description)
        }
        var line = JSONValue.object(members).serialized()
        line.append(UInt8(ascii: "\n"))
        FileHandle.standardError.write(Data(line))
    }
}
