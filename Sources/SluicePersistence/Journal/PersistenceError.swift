/// A failure of the persistence layer: what went wrong, for which entity, in which journal, at which sequence
/// number, and what to do about it.
public struct PersistenceError: Error, Sendable, CustomStringConvertible {
    /// The kind of failure (extensible: switch with a `default`).
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let description: String
        init(_ description: String) { self.description = description }

        /// An append's first sequence number is not the highest stored plus one: another writer appended to the
        /// same entity, or the entity's in-memory sequence number is stale.
        public static let sequenceConflict = Code("sequence conflict")
        /// A stored event is damaged (its checksum does not match, or it is missing from the sequence).
        public static let corruptEvent = Code("corrupt event")
        /// A stored snapshot is damaged (its checksum does not match).
        public static let corruptSnapshot = Code("corrupt snapshot")
        /// A stored event is intact but its codec cannot decode it (unknown manifest or version, changed shape).
        public static let undecodableEvent = Code("undecodable event")
        /// A stored snapshot is intact but its codec cannot decode it.
        public static let undecodableSnapshot = Code("undecodable snapshot")
        /// An event or snapshot could not be encoded.
        public static let encodingFailed = Code("encoding failed")
        /// The storage itself failed (I/O error, disk full, database locked or damaged).
        public static let storageFailure = Code("storage failure")
        /// The journal was closed.
        public static let journalClosed = Code("journal closed")
        /// The entity stopped (it asked to, or a journal write failed) and takes no more commands.
        public static let entityStopped = Code("entity stopped")
        /// An argument was invalid (for example non-contiguous sequence numbers in one append).
        public static let invalidArgument = Code("invalid argument")
        /// The entity's partition of a partitioned journal (the Kafka changelog) is not restored on this instance:
        /// it is not assigned here, its restore has not finished, or a failed write requires restoring it again.
        public static let partitionNotRestored = Code("partition not restored")
        /// The journal's storage does not match its input: a changelog topic with another partition count than the
        /// input topic, or records placed by another partitioner.
        public static let partitionMismatch = Code("partition mismatch")
    }

    /// The kind of failure.
    public var code: Code
    /// The entity concerned, when there is one.
    public var persistenceID: PersistenceID?
    /// The journal concerned (its ``Journal/name``).
    public var journal: String
    /// The sequence number concerned, when there is one.
    public var sequenceNumber: Int64?
    /// What happened and what to do about it.
    public var message: String

    public init(
        _ code: Code, journal: String, persistenceID: PersistenceID? = nil, sequenceNumber: Int64? = nil,
        message: String
    ) {
        self.code = code
        self.journal = journal
        self.persistenceID = persistenceID
        self.sequenceNumber = sequenceNumber
        self.message = message
    }

    public var description: String {
        var text = "\(code)"
        if let persistenceID { text += " for entity \(persistenceID)" }
        text += " in journal \(journal)"
        if let sequenceNumber { text += " at sequence number \(sequenceNumber)" }
        return text + ": " + message
    }
}
