import Foundation
import GRDB
import ScopeBench
import ScopeCost
import ScopeSupport

/// A run as stored: its id, environment, status and the plan it executes.
public struct StoredRun: Sendable, Hashable {
    public var id: Int64
    public var environment: RunEnvironment
    /// "running" until the run finishes ("complete"); a run left "running" was interrupted.
    public var status: String
    /// Identity of the sweep plan, for `sweep --resume`.
    public var planHash: String
    public var pointCount: Int
    public var failureCount: Int
}

/// A stored measurement with the run it belongs to.
public struct StoredPoint: Sendable, Hashable {
    public var id: Int64
    public var runID: Int64
    public var result: PointResult
}

/// Results in one SQLite file: runs with their environment, measured points with their operator breakdowns,
/// failed points with their reasons, and max-context searches. Every write is its own transaction, so an
/// interrupted sweep loses at most the point in flight. Opening a file migrates its schema to the current one.
public final class ResultsStore {
    public let path: String
    private let queue: DatabaseQueue

    /// Schema versions in order; each is applied once to every file.
    public static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1: runs, points, breakdowns, failures") { db in
            try db.create(table: "runs") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("started_at", .text).notNull()
                t.column("status", .text).notNull()
                t.column("plan_hash", .text).notNull().defaults(to: "")
                t.column("device", .text).notNull()
                t.column("driver", .text).notNull()
                t.column("os", .text).notNull()
                t.column("cpu", .text).notNull()
                t.column("backend", .text).notNull()
                t.column("dtype", .text).notNull()
                t.column("git_revision", .text).notNull()
                t.column("command_line", .text).notNull()
                t.column("environment_json", .text).notNull()
            }
            try db.create(table: "points") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("run_id", .integer).notNull().references("runs")
                t.column("key", .text).notNull()
                t.column("model", .text).notNull()
                t.column("context", .integer).notNull()
                t.column("batch", .integer).notNull()
                t.column("generate", .integer).notNull()
                t.column("backend", .text).notNull()
                t.column("dtype", .text).notNull()
                t.column("ttft_median", .double).notNull()
                t.column("ttft_stddev", .double).notNull()
                t.column("tpot_median", .double).notNull()
                t.column("e2e_median", .double).notNull()
                t.column("prefill_tokens_per_second", .double).notNull()
                t.column("decode_tokens_per_second", .double).notNull()
                t.column("peak_engine_bytes", .integer).notNull()
                t.column("peak_process_bytes", .integer).notNull()
                t.column("result_json", .text).notNull()
                t.column("recorded_at", .text).notNull()
            }
            try db.create(index: "points_by_run_key", on: "points", columns: ["run_id", "key"])
            try db.create(table: "breakdowns") { t in
                t.column("point_id", .integer).notNull().references("points", onDelete: .cascade)
                t.column("phase", .text).notNull()
                t.column("kind", .text).notNull()
                t.column("category", .text).notNull()
                t.column("seconds", .double).notNull()
            }
            try db.create(table: "failures") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("run_id", .integer).notNull().references("runs")
                t.column("key", .text).notNull()
                t.column("config_json", .text).notNull()
                t.column("reason", .text).notNull()
                t.column("out_of_memory", .boolean).notNull()
                t.column("recorded_at", .text).notNull()
            }
        }
        migrator.registerMigration("v2: max-context searches") { db in
            try db.create(table: "max_context") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("run_id", .integer).notNull().references("runs")
                t.column("model", .text).notNull()
                t.column("tokens", .integer).notNull()
                t.column("reached_search_limit", .boolean).notNull()
                t.column("memory_limit_bytes", .integer).notNull()
                t.column("method", .text).notNull()
                t.column("result_json", .text).notNull()
            }
        }
        return migrator
    }

    /// Opens (creating if needed) the store at `path` and brings its schema up to date.
    public init(path: String) throws {
        self.path = path
        do {
            queue = try DatabaseQueue(path: path)
            let migrator = Self.migrator
            if try queue.read({ try migrator.hasBeenSuperseded($0) }) {
                throw ScopeError("\(path) was written by a newer ssm-scope; upgrade ssm-scope to read it")
            }
            try migrator.migrate(queue)
        } catch let error as ScopeError {
            throw error
        } catch let error as DatabaseError where error.resultCode == .SQLITE_NOTADB {
            throw ScopeError("\(path) is not an ssm-scope results file (not SQLite); pass another --db")
        } catch {
            throw ScopeError("cannot open results file \(path): \(error.localizedDescription); pass another --db")
        }
    }

    // MARK: Runs

    /// Records the start of a run and returns its id.
    public func startRun(_ environment: RunEnvironment, planHash: String = "") throws -> Int64 {
        try queue.write { db in
            try db.execute(sql: """
                INSERT INTO runs (started_at, status, plan_hash, device, driver, os, cpu, backend, dtype, git_revision,
                                  command_line, environment_json)
                VALUES (?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [environment.startedAt, planHash, environment.device, environment.driver,
                                 environment.os, environment.cpu, environment.backend, environment.dtype,
                                 environment.gitRevision, environment.commandLine, try Self.json(environment)])
            return db.lastInsertedRowID
        }
    }

    public func finishRun(_ id: Int64, status: String = "complete") throws {
        try queue.write { db in
            try db.execute(sql: "UPDATE runs SET status = ? WHERE id = ?", arguments: [status, id])
        }
    }

    /// Every run, oldest first, with point and failure counts.
    public func runs() throws -> [StoredRun] {
        try queue.read { db in
            try Row.fetchAll(db, sql: """
                SELECT r.id, r.status, r.plan_hash, r.environment_json,
                       (SELECT count(*) FROM points p WHERE p.run_id = r.id) AS points,
                       (SELECT count(*) FROM failures f WHERE f.run_id = r.id) AS failures
                FROM runs r ORDER BY r.id
                """).map { row in
                StoredRun(id: row["id"], environment: try Self.decode(RunEnvironment.self, row["environment_json"]),
                          status: row["status"], planHash: row["plan_hash"], pointCount: row["points"],
                          failureCount: row["failures"])
            }
        }
    }

    public func run(_ id: Int64) throws -> StoredRun {
        guard let run = try runs().first(where: { $0.id == id }) else {
            throw ScopeError("no run \(id) in \(path); 'ssm-scope results list' shows the runs")
        }
        return run
    }

    /// The most recent run of a plan, for resuming it.
    public func latestRun(planHash: String) throws -> StoredRun? {
        try runs().last { $0.planHash == planHash }
    }

    // MARK: Points

    /// Stores a measured or failed point in its own transaction.
    public func record(_ outcome: PointOutcome, run: Int64) throws {
        let now = ISO8601DateFormatter().string(from: Date())
        try queue.write { db in
            switch outcome {
            case .measured(let r):
                let c = r.config
                try db.execute(sql: """
                    INSERT INTO points (run_id, key, model, context, batch, generate, backend, dtype, ttft_median,
                                        ttft_stddev, tpot_median, e2e_median, prefill_tokens_per_second,
                                        decode_tokens_per_second, peak_engine_bytes, peak_process_bytes, result_json,
                                        recorded_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """, arguments: [run, c.key, c.model, c.context, c.batch, c.generate, c.backend, c.dtype,
                                     r.ttft.median, r.ttft.stddev, r.tpot.median, r.endToEnd.median,
                                     r.prefillTokensPerSecond, r.decodeTokensPerSecond, r.peakEngineBytes,
                                     r.peakProcessBytes, try Self.json(r), now])
                let point = db.lastInsertedRowID
                for (phase, breakdown) in [("prefill", r.prefillBreakdown), ("decode", r.decodeBreakdown)] {
                    for (kind, seconds) in breakdown.sorted(by: { $0.key < $1.key }) {
                        let category = OperatorKind(rawValue: kind)?.category.rawValue ?? "other"
                        try db.execute(sql: """
                            INSERT INTO breakdowns (point_id, phase, kind, category, seconds) VALUES (?, ?, ?, ?, ?)
                            """, arguments: [point, phase, kind, category, seconds])
                    }
                }
            case .failed(let config, let reason, let outOfMemory):
                try db.execute(sql: """
                    INSERT INTO failures (run_id, key, config_json, reason, out_of_memory, recorded_at)
                    VALUES (?, ?, ?, ?, ?, ?)
                    """, arguments: [run, config.key, try Self.json(config), reason, outOfMemory, now])
            }
        }
    }

    /// Keys of points (measured or failed) already stored for a run.
    public func storedKeys(run: Int64) throws -> Set<String> {
        try queue.read { db in
            Set(try String.fetchAll(db, sql: "SELECT key FROM points WHERE run_id = ? UNION SELECT key FROM failures WHERE run_id = ?",
                                    arguments: [run, run]))
        }
    }

    /// Measured points of the given runs (all runs when nil), in the order they were recorded.
    public func points(runs ids: [Int64]? = nil) throws -> [StoredPoint] {
        try queue.read { db in
            try Row.fetchAll(db, sql: "SELECT id, run_id, result_json FROM points ORDER BY id").compactMap { row in
                let runID: Int64 = row["run_id"]
                guard ids?.contains(runID) ?? true else { return nil }
                return StoredPoint(id: row["id"], runID: runID,
                                   result: try Self.decode(PointResult.self, row["result_json"]))
            }
        }
    }

    /// Failed points of the given runs (all when nil).
    public func failures(runs ids: [Int64]? = nil) throws -> [(runID: Int64, failure: PointFailure)] {
        try queue.read { db in
            try Row.fetchAll(db, sql: "SELECT run_id, config_json, reason, out_of_memory FROM failures ORDER BY id")
                .compactMap { row in
                    let runID: Int64 = row["run_id"]
                    guard ids?.contains(runID) ?? true else { return nil }
                    return (runID, PointFailure(config: try Self.decode(PointConfig.self, row["config_json"]),
                                                reason: row["reason"], outOfMemory: row["out_of_memory"]))
                }
        }
    }

    // MARK: Max context

    public func record(_ result: MaxContextResult, run: Int64) throws {
        try queue.write { db in
            try db.execute(sql: """
                INSERT INTO max_context (run_id, model, tokens, reached_search_limit, memory_limit_bytes, method,
                                         result_json)
                VALUES (?, ?, ?, ?, ?, ?, ?)
                """, arguments: [run, result.model, result.tokens, result.reachedSearchLimit, result.memoryLimitBytes,
                                 result.method, try Self.json(result)])
        }
    }

    public func maxContexts(runs ids: [Int64]? = nil) throws -> [(runID: Int64, result: MaxContextResult)] {
        try queue.read { db in
            try Row.fetchAll(db, sql: "SELECT run_id, result_json FROM max_context ORDER BY id").compactMap { row in
                let runID: Int64 = row["run_id"]
                guard ids?.contains(runID) ?? true else { return nil }
                return (runID, try Self.decode(MaxContextResult.self, row["result_json"]))
            }
        }
    }

    // MARK: JSON columns

    static func json<T: Encodable>(_ value: T) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    static func decode<T: Decodable>(_ type: T.Type, _ text: String) throws -> T {
        try JSONDecoder().decode(type, from: Data(text.utf8))
    }
}
