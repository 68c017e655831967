import CSQLite

/// A failed SQLite call: SQLite's extended result code and message.
struct SQLiteFailure: Error, CustomStringConvertible {
    var code: Int32
    var message: String
    var description: String { "SQLite error \(code): \(message)" }

    /// Runs `body`, whose errors are SQLite failures passed through untyped `rethrows` closures (such as
    /// `String.withUTF8`'s), giving them their type back.
    static func catching<Value>(_ body: () throws -> Value) throws(SQLiteFailure) -> Value {
        do {
            return try body()
        } catch let failure as SQLiteFailure {
            throw failure
        } catch {
            throw SQLiteFailure(code: SQLITE_ERROR, message: "\(error)")
        }
    }
}

/// One SQLite connection. Not thread-safe: the journal uses it only from its writer thread (opened with
/// `SQLITE_OPEN_NOMUTEX`, SQLite's multi-thread mode, which requires exactly that).
final class SQLiteDatabase {
    let handle: OpaquePointer
    private var statements: [String: SQLiteStatement] = [:]
    /// The statements of SQL literals, by the literal's address: found without hashing the text (the hot statements
    /// run several times per append).
    private var literalStatements: [UInt: SQLiteStatement] = [:]

    init(path: String) throws(SQLiteFailure) {
        var handle: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX
        let status = sqlite3_open_v2(path, &handle, flags, nil)
        guard status == SQLITE_OK, let handle else {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            sqlite3_close_v2(handle)
            throw SQLiteFailure(code: status, message: "cannot open \(path): \(message)")
        }
        sqlite3_extended_result_codes(handle, 1)
        self.handle = handle
    }

    /// Runs SQL without results (several statements allowed).
    func execute(_ sql: String) throws(SQLiteFailure) {
        var error: UnsafeMutablePointer<CChar>?
        let status = sqlite3_exec(handle, sql, nil, nil, &error)
        if status != SQLITE_OK {
            let message = error.map { String(cString: $0) } ?? lastMessage
            sqlite3_free(error)
            throw SQLiteFailure(code: status, message: message)
        }
    }

    /// Runs a statement without parameters or results through the statement cache (no parsing after the first
    /// time): for statements run once per write, such as savepoints.
    func run(cached sql: StaticString) throws(SQLiteFailure) {
        let statement = try prepared(sql)
        try statement.run()
    }

    /// The single value of a one-row query (a pragma).
    func scalarText(_ sql: String) throws(SQLiteFailure) -> String? {
        let statement = try prepared(text: sql)
        defer { statement.reset() }
        return try statement.step() ? statement.text(0) : nil
    }

    /// A prepared statement for the SQL literal `sql`, cached for the connection's life; reset it after use.
    func prepared(_ sql: StaticString) throws(SQLiteFailure) -> SQLiteStatement {
        let key = UInt(bitPattern: sql.utf8Start)
        if let statement = literalStatements[key] { return statement }
        let statement = try prepared(text: sql.description)
        literalStatements[key] = statement
        return statement
    }

    /// A prepared statement for `sql`, cached for the connection's life; reset it after use.
    func prepared(text sql: String) throws(SQLiteFailure) -> SQLiteStatement {
        if let statement = statements[sql] { return statement }
        var raw: OpaquePointer?
        let status = sqlite3_prepare_v3(handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &raw, nil)
        guard status == SQLITE_OK, let raw else {
            throw SQLiteFailure(code: status, message: "\(lastMessage) in: \(sql)")
        }
        let statement = SQLiteStatement(handle: raw, database: handle)
        statements[sql] = statement
        return statement
    }

    var lastMessage: String { String(cString: sqlite3_errmsg(handle)) }

    /// Finalizes every statement and closes the connection (a WAL checkpoint runs if this is the last one).
    func close() {
        for statement in statements.values { statement.finalize() }
        statements = [:]
        literalStatements = [:]
        sqlite3_close_v2(handle)
    }
}

/// A prepared statement of a ``SQLiteDatabase``; same threading rule.
final class SQLiteStatement {
    private let handle: OpaquePointer
    private let database: OpaquePointer

    init(handle: OpaquePointer, database: OpaquePointer) {
        self.handle = handle
        self.database = database
    }

    func finalize() { sqlite3_finalize(handle) }

    /// Resets the statement for its next use and clears its bindings.
    func reset() {
        sqlite3_reset(handle)
        sqlite3_clear_bindings(handle)
    }

    func bind(_ index: Int32, _ value: Int64) throws(SQLiteFailure) {
        try check(sqlite3_bind_int64(handle, index, value))
    }

    /// Binds text (copied), all of its UTF-8: a NUL inside it is part of it, as it is in ``bindInPlace(_:text:)``
    /// (a length of -1 would make SQLite stop at the first NUL, and two different ids would read one row).
    func bind(_ index: Int32, _ value: String) throws(SQLiteFailure) {
        var value = value
        try check(value.withUTF8 { bindText(index, $0, csqlite_transient()) })
    }

    func bind(_ index: Int32, _ value: [UInt8]) throws(SQLiteFailure) {
        try check(value.withUnsafeBytes { bindBlob(index, $0, csqlite_transient()) })
    }

    /// Binds text that SQLite reads where it is (`SQLITE_STATIC`), without a copy: the caller keeps the bytes alive
    /// and unchanged until the statement is reset (``run()`` resets it).
    func bindInPlace(_ index: Int32, text: UnsafeBufferPointer<UInt8>) throws(SQLiteFailure) {
        try check(bindText(index, text, nil))
    }

    /// Binds a blob that SQLite reads where it is (`SQLITE_STATIC`), without a copy; same rule as
    /// ``bindInPlace(_:text:)``.
    func bindInPlace(_ index: Int32, blob: UnsafeRawBufferPointer) throws(SQLiteFailure) {
        try check(bindBlob(index, blob, nil))
    }

    /// Binds `text` with its length; `destructor` is `SQLITE_TRANSIENT` (SQLite copies it) or `nil`
    /// (`SQLITE_STATIC`). An empty buffer's base address may be nil, which SQLite would store as NULL: it is bound as
    /// empty text instead.
    private func bindText(_ index: Int32, _ text: UnsafeBufferPointer<UInt8>, _ destructor: sqlite3_destructor_type?)
        -> Int32
    {
        guard let base = text.baseAddress, text.count > 0 else {
            return sqlite3_bind_text(handle, index, "", 0, csqlite_transient())
        }
        let characters = UnsafeRawPointer(base).assumingMemoryBound(to: CChar.self)
        return sqlite3_bind_text(handle, index, characters, Int32(text.count), destructor)
    }

    /// Binds `bytes`, as ``bindText(_:_:_:)`` binds text; an empty buffer is an empty blob, not NULL.
    private func bindBlob(_ index: Int32, _ bytes: UnsafeRawBufferPointer, _ destructor: sqlite3_destructor_type?)
        -> Int32
    {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return sqlite3_bind_zeroblob(handle, index, 0) }
        return sqlite3_bind_blob(handle, index, base, Int32(bytes.count), destructor)
    }

    /// Steps once: `true` when a row is available, `false` when done.
    func step() throws(SQLiteFailure) -> Bool {
        let status = sqlite3_step(handle)
        switch status {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        default: throw SQLiteFailure(code: status, message: String(cString: sqlite3_errmsg(database)))
        }
    }

    /// Steps to completion (a statement without results).
    func run() throws(SQLiteFailure) {
        defer { reset() }
        while try step() {}
    }

    func int64(_ column: Int32) -> Int64 { sqlite3_column_int64(handle, column) }

    func isNull(_ column: Int32) -> Bool { sqlite3_column_type(handle, column) == SQLITE_NULL }

    /// A text column, all of its bytes (a NUL inside it included).
    func text(_ column: Int32) -> String {
        // SQLite's documented order: the pointer first, then the size.
        guard let text = sqlite3_column_text(handle, column) else { return "" }
        let count = Int(sqlite3_column_bytes(handle, column))
        return String(decoding: UnsafeBufferPointer(start: text, count: count), as: UTF8.self)
    }

    func blob(_ column: Int32) -> [UInt8] {
        // SQLite's documented order: the pointer first, then the size.
        let base = sqlite3_column_blob(handle, column)
        let count = Int(sqlite3_column_bytes(handle, column))
        guard count > 0, let base else { return [] }
        return Array(UnsafeRawBufferPointer(start: base, count: count))
    }

    private func check(_ status: Int32) throws(SQLiteFailure) {
        if status != SQLITE_OK { throw SQLiteFailure(code: status, message: String(cString: sqlite3_errmsg(database))) }
    }
}
