import Foundation
public import SluiceKafka

/// Where a message's entity id comes from.
public struct EntityIDExtractor: Sendable, CustomStringConvertible {
    enum Kind: Sendable {
        case messageKey
        case header(String)
        case jsonField([String])
    }
    let kind: Kind

    /// The message key (UTF-8): the default, and the only source that needs no repartitioning, since producers
    /// already partition by key.
    public static let messageKey = EntityIDExtractor(kind: .messageKey)
    /// The value of a header.
    public static func header(_ name: String) -> EntityIDExtractor { EntityIDExtractor(kind: .header(name)) }
    /// A field of a JSON object value; a dotted path (`customer.id`) reaches into nested objects.
    public static func jsonField(_ path: String) -> EntityIDExtractor {
        EntityIDExtractor(kind: .jsonField(path.split(separator: ".").map(String.init)))
    }

    /// Whether ids come from the key, so messages are already partitioned by entity.
    public var isMessageKey: Bool { if case .messageKey = kind { true } else { false } }

    /// The entity id of `message`.
    /// - Throws: ``EntityIDError`` naming what was missing.
    public func entityID(of message: KafkaConsumerMessage) throws -> String {
        switch kind {
        case .messageKey:
            guard let key = message.key, !key.isEmpty else { throw EntityIDError.missing("the message has no key", message.topicPartition, message.offset) }
            return String(decoding: key, as: UTF8.self)
        case .header(let name):
            guard let value = message.header(name) else {
                throw EntityIDError.missing("no header '\(name)'", message.topicPartition, message.offset)
            }
            return value
        case .jsonField(let path):
            guard let value = message.value,
                var current = try? JSONSerialization.jsonObject(with: Data(value), options: [.fragmentsAllowed])
            else {
                throw EntityIDError.missing("the value is not JSON", message.topicPartition, message.offset)
            }
            for field in path {
                guard let object = current as? [String: Any], let next = object[field] else {
                    throw EntityIDError.missing("no JSON field '\(path.joined(separator: "."))'", message.topicPartition, message.offset)
                }
                current = next
            }
            switch current {
            case let string as String: return string
            case let number as NSNumber: return number.stringValue
            default: throw EntityIDError.missing("JSON field '\(path.joined(separator: "."))' is not a string or number", message.topicPartition, message.offset)
            }
        }
    }

    public var description: String {
        switch kind {
        case .messageKey: "message key"
        case .header(let name): "header '\(name)'"
        case .jsonField(let path): "JSON field '\(path.joined(separator: "."))'"
        }
    }
}

/// A message's entity id could not be found.
public enum EntityIDError: Error, Sendable, CustomStringConvertible {
    case missing(String, KafkaTopicPartition, Int64)

    public var description: String {
        switch self {
        case .missing(let what, let partition, let offset): "cannot find the entity id of \(partition)@\(offset): \(what)"
        }
    }
}
