internal import CRDKafka

/// An error from the Kafka client: what went wrong, librdkafka's error code and name where there is one,
/// and where in Sluice it was raised.
///
/// Compare errors by ``code``; codes are extensible, so switch with a `default` branch.
public struct KafkaError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure this is.
    public var code: Code
    /// librdkafka's error code, when the failure came from librdkafka.
    public var librdkafkaCode: KafkaErrorCode?
    /// A human-readable message that says what went wrong and, where possible, how to fix it.
    public var message: String
    /// Whether trying the same operation again may succeed (librdkafka's retriable flag, or a transient condition).
    public var isRetriable: Bool
    /// Whether the client is unusable after this error and must be recreated.
    public var isFatal: Bool
    /// The Sluice source location that raised the error.
    public var file: String
    /// The line in ``file``.
    public var line: UInt

    /// What kind of failure a ``KafkaError`` is. New codes may be added; switch with a `default` branch.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Kind: String {
            case unsupportedLibrary, invalidConfiguration, clientCreation, produce, delivery, queueFull, consume
            case commit, offsets, rebalance, subscription, admin, timedOut, closed, fatal, metadata, topicExists
            case unknownTopic, seek, partitions, connection
        }
        private let kind: Kind
        private init(_ kind: Kind) { self.kind = kind }

        /// The loaded librdkafka is older than Sluice supports.
        public static let unsupportedLibrary = Code(.unsupportedLibrary)
        /// A configuration property is unknown or has an invalid value.
        public static let invalidConfiguration = Code(.invalidConfiguration)
        /// librdkafka refused to create the client.
        public static let clientCreation = Code(.clientCreation)
        /// A message could not be handed to the producer.
        public static let produce = Code(.produce)
        /// A message was accepted but not delivered (the delivery report carried an error).
        public static let delivery = Code(.delivery)
        /// The producer's local queue is full (only surfaced when the caller asked not to wait).
        public static let queueFull = Code(.queueFull)
        /// The consumer reported an error while fetching.
        public static let consume = Code(.consume)
        /// An offset commit failed.
        public static let commit = Code(.commit)
        /// Storing, querying or resetting offsets failed.
        public static let offsets = Code(.offsets)
        /// Applying a rebalance (assign or revoke) failed.
        public static let rebalance = Code(.rebalance)
        /// Subscribing or unsubscribing failed.
        public static let subscription = Code(.subscription)
        /// An admin operation (create or delete topics, describe) failed.
        public static let admin = Code(.admin)
        /// An operation did not finish within its timeout.
        public static let timedOut = Code(.timedOut)
        /// The client was already closed.
        public static let closed = Code(.closed)
        /// librdkafka raised a fatal error: the client must be recreated.
        public static let fatal = Code(.fatal)
        /// A metadata request failed.
        public static let metadata = Code(.metadata)
        /// The topic to create already exists.
        public static let topicExists = Code(.topicExists)
        /// The topic or partition does not exist.
        public static let unknownTopic = Code(.unknownTopic)
        /// A seek failed.
        public static let seek = Code(.seek)
        /// librdkafka reported a client-level problem: a broker connection failed, all brokers are down,
        /// authentication failed. librdkafka keeps reconnecting on its own.
        public static let connection = Code(.connection)
        /// Pausing or resuming partitions failed.
        public static let partitions = Code(.partitions)

        public var description: String { kind.rawValue }
    }

    /// Creates an error.
    public init(
        code: Code, message: String, librdkafkaCode: KafkaErrorCode? = nil, isRetriable: Bool = false,
        isFatal: Bool = false, file: String = #fileID, line: UInt = #line
    ) {
        self.code = code
        self.message = message
        self.librdkafkaCode = librdkafkaCode
        self.isRetriable = isRetriable
        self.isFatal = isFatal
        self.file = file
        self.line = line
    }

    public var description: String {
        var text = "KafkaError.\(code): \(message)"
        if let librdkafkaCode { text += " [\(librdkafkaCode.name)]" }
        return text
    }
}

extension KafkaError {
    /// Wraps a librdkafka error code, classifying timeouts, unknown topics and fatal errors.
    static func rdkafka(
        _ raw: rd_kafka_resp_err_t, as code: Code, context: String, file: String = #fileID, line: UInt = #line
    ) -> KafkaError {
        let errorCode = KafkaErrorCode(raw)
        var effective = code
        switch errorCode {
        case .timedOut, .messageTimedOut, .requestTimedOut: effective = code == .delivery ? code : .timedOut
        case .unknownTopic, .unknownTopicOrPartition, .unknownPartition:
            effective = code == .delivery || code == .produce ? code : .unknownTopic
        case .topicAlreadyExists: effective = .topicExists
        case .fatal: effective = .fatal
        default: break
        }
        return KafkaError(
            code: effective, message: "\(context): \(errorCode.message)", librdkafkaCode: errorCode,
            isRetriable: errorCode.isRetriableByDefault, isFatal: errorCode == .fatal, file: file, line: line)
    }

    /// Wraps an `rd_kafka_error_t` (and destroys it), keeping librdkafka's retriable and fatal flags.
    static func consuming(
        _ error: OpaquePointer, as code: Code, context: String, file: String = #fileID, line: UInt = #line
    ) -> KafkaError {
        defer { rd_kafka_error_destroy(error) }
        let raw = rd_kafka_error_code(error)
        let text = rd_kafka_error_string(error).map { String(cString: $0) } ?? ""
        var result = KafkaError.rdkafka(raw, as: code, context: context, file: file, line: line)
        result.message = "\(context): \(text)"
        result.isRetriable = rd_kafka_error_is_retriable(error) != 0 || result.isRetriable
        result.isFatal = rd_kafka_error_is_fatal(error) != 0
        return result
    }

    static func closed(_ what: String, file: String = #fileID, line: UInt = #line) -> KafkaError {
        KafkaError(code: .closed, message: "\(what): the client is closed; create a new one", file: file, line: line)
    }
}

/// A librdkafka error code (`rd_kafka_resp_err_t`), with the names Sluice's callers commonly match on.
public struct KafkaErrorCode: Hashable, Sendable, CustomStringConvertible {
    /// The numeric code, as librdkafka defines it (negative for local errors, positive for broker errors).
    public let rawValue: Int32

    public init(rawValue: Int32) { self.rawValue = rawValue }
    init(_ raw: rd_kafka_resp_err_t) { self.rawValue = raw.rawValue }

    var raw: rd_kafka_resp_err_t { rd_kafka_resp_err_t(rawValue: rawValue) }

    public static let noError = KafkaErrorCode(RD_KAFKA_RESP_ERR_NO_ERROR)
    public static let timedOut = KafkaErrorCode(RD_KAFKA_RESP_ERR__TIMED_OUT)
    public static let messageTimedOut = KafkaErrorCode(RD_KAFKA_RESP_ERR__MSG_TIMED_OUT)
    public static let requestTimedOut = KafkaErrorCode(RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT)
    public static let queueFull = KafkaErrorCode(RD_KAFKA_RESP_ERR__QUEUE_FULL)
    public static let unknownTopic = KafkaErrorCode(RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC)
    public static let unknownPartition = KafkaErrorCode(RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION)
    public static let unknownTopicOrPartition = KafkaErrorCode(RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
    public static let topicAlreadyExists = KafkaErrorCode(RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
    public static let allBrokersDown = KafkaErrorCode(RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
    public static let transport = KafkaErrorCode(RD_KAFKA_RESP_ERR__TRANSPORT)
    public static let purgedInQueue = KafkaErrorCode(RD_KAFKA_RESP_ERR__PURGE_QUEUE)
    public static let purgedInFlight = KafkaErrorCode(RD_KAFKA_RESP_ERR__PURGE_INFLIGHT)
    public static let messageSizeTooLarge = KafkaErrorCode(RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE)
    public static let noOffset = KafkaErrorCode(RD_KAFKA_RESP_ERR__NO_OFFSET)
    public static let partitionEOF = KafkaErrorCode(RD_KAFKA_RESP_ERR__PARTITION_EOF)
    public static let fatal = KafkaErrorCode(RD_KAFKA_RESP_ERR__FATAL)
    public static let rebalanceInProgress = KafkaErrorCode(RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS)
    public static let illegalGeneration = KafkaErrorCode(RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION)
    public static let unknownMemberID = KafkaErrorCode(RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID)
    public static let notCoordinator = KafkaErrorCode(RD_KAFKA_RESP_ERR_NOT_COORDINATOR)
    public static let coordinatorLoadInProgress = KafkaErrorCode(RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS)
    public static let coordinatorNotAvailable = KafkaErrorCode(RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE)
    public static let state = KafkaErrorCode(RD_KAFKA_RESP_ERR__STATE)
    public static let assignmentLost = KafkaErrorCode(RD_KAFKA_RESP_ERR__ASSIGNMENT_LOST)

    /// librdkafka's symbolic name, for example `_MSG_TIMED_OUT` or `UNKNOWN_TOPIC_OR_PART`.
    public var name: String { String(cString: rd_kafka_err2name(raw)) }
    /// librdkafka's human-readable description.
    public var message: String { String(cString: rd_kafka_err2str(raw)) }
    public var description: String { "\(name) (\(rawValue))" }

    /// Broker-side errors that Kafka documents as retriable, plus the local transient ones.
    var isRetriableByDefault: Bool {
        switch self {
        case .timedOut, .messageTimedOut, .requestTimedOut, .queueFull, .allBrokersDown, .transport,
            .rebalanceInProgress, .notCoordinator, .coordinatorLoadInProgress, .coordinatorNotAvailable:
            return true
        default:
            return false
        }
    }
}
