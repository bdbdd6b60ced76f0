#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import ScopeSupport

/// One line of a results log: what the static worker writes and `ssm-scope results import` reads.
public enum ResultRecord: Sendable, Codable {
    case run(environment: RunEnvironment, plan: SweepPlan, planHash: String)
    case point(PointResult)
    case failure(PointFailure)
    case maxContext(MaxContextResult)
}

/// Results as JSON lines, one record per line, each written and flushed to disk before the next point starts:
/// the file-based store of machines that run the static worker.
public final class ResultLog: ResultSink {
    public let path: String
    private let fd: Int32

    /// Opens `path` for appending (creating it).
    public init(path: String) throws {
        self.path = path
        fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        guard fd >= 0 else { throw ScopeError("cannot write results log '\(path)'") }
    }

    deinit { close(fd) }

    public func append(_ record: ResultRecord) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var data = try encoder.encode(record)
        data.append(UInt8(ascii: "\n"))
        let written = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == data.count, fsync(fd) == 0 else { throw ScopeError("cannot write results log '\(path)'") }
    }

    public func record(_ outcome: PointOutcome, run: Int64) throws {
        switch outcome {
        case .measured(let r): try append(.point(r))
        case .failed(let config, let reason, let oom):
            try append(.failure(PointFailure(config: config, reason: reason, outOfMemory: oom)))
        }
    }

    public func record(_ result: MaxContextResult, run: Int64) throws { try append(.maxContext(result)) }

    /// Every record of a log; a torn last line (the writer was killed mid-write) is ignored.
    public static func read(path: String) throws -> [ResultRecord] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ScopeError("cannot read results log '\(path)'")
        }
        let lines = data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: true)
        var records: [ResultRecord] = []
        for (index, line) in lines.enumerated() {
            do {
                records.append(try JSONDecoder().decode(ResultRecord.self, from: Data(line)))
            } catch {
                if index == lines.count - 1 && data.last != UInt8(ascii: "\n") { break }
                throw ScopeError("\(path):\(index + 1): not a results record; is this an ssm-scope-worker log?")
            }
        }
        return records
    }
}
