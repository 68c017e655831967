import Dispatch
import Foundation

/// Appends lines to standard output or a file on a serial dispatch queue of its own, so that the blocking write
/// never runs on Swift's cooperative thread pool.
public final class LineWriter: Sendable {
    private let handle: FileHandle
    private let queue: DispatchQueue
    private let closesHandle: Bool

    /// Standard output.
    public static func standardOutput() -> LineWriter { LineWriter(handle: .standardOutput, closesHandle: false, label: "stdout") }

    /// A file, created if missing, appended to.
    public init(appendingTo path: String) throws {
        if !FileManager.default.fileExists(atPath: path) {
            guard FileManager.default.createFile(atPath: path, contents: nil) else {
                throw CocoaError(.fileWriteNoPermission, userInfo: [NSFilePathErrorKey: path])
            }
        }
        guard let handle = FileHandle(forWritingAtPath: path) else {
            throw CocoaError(.fileWriteNoPermission, userInfo: [NSFilePathErrorKey: path])
        }
        handle.seekToEndOfFile()
        self.handle = handle
        self.closesHandle = true
        self.queue = DispatchQueue(label: "sluice.file.\(path)")
    }

    private init(handle: FileHandle, closesHandle: Bool, label: String) {
        self.handle = handle
        self.closesHandle = closesHandle
        self.queue = DispatchQueue(label: "sluice.\(label)")
    }

    /// Writes `lines`, each followed by a newline; returns once written (handed to the kernel).
    public func write(_ lines: [[UInt8]]) async throws {
        var data = Data()
        for line in lines {
            data.append(contentsOf: line)
            data.append(UInt8(ascii: "\n"))
        }
        let handle = self.handle
        let bytes = data
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            queue.async {
                do {
                    try handle.write(contentsOf: bytes)
                    continuation.resume()
                } catch {
                    continuation.resume(throwing: error)
                }
            }
        }
    }

    deinit {
        if closesHandle { try? handle.close() }
    }
}
