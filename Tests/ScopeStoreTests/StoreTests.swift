import Foundation
import GRDB
import ScopeBench
import ScopeCost
import Testing
@testable import ScopeStore

func temporaryDatabase() -> String {
    FileManager.default.temporaryDirectory.appendingPathComponent("ssm-scope-\(UUID().uuidString).sqlite").path
}

func environment(_ command: String = "ssm-scope sweep") -> RunEnvironment {
    RunEnvironment(device: "cpu: test", driver: "", os: "Linux", cpu: "test cpu", backend: "cpu", dtype: "fp32",
                   gitRevision: "abc123", commandLine: command, startedAt: "2026-11-23T00:00:00Z", costDevice: nil)
}

func result(_ model: String, context: Int, ttft: Double) -> PointResult {
    let s = Statistics([ttft, ttft * 1.1, ttft * 0.9])
    return PointResult(config: PointConfig(model: model, context: context), ttft: s, tpot: Statistics([0.001] + Array(repeating: 0.001, count: 15)),
                       endToEnd: s, prefillTokensPerSecond: Double(context) / ttft, decodeTokensPerSecond: 1000,
                       peakEngineBytes: 1 << 20, weightBytes: 1 << 19, cacheBytes: 1 << 10, peakProcessBytes: 1 << 25,
                       prefillBreakdown: ["linear": ttft * 0.6, "attention_prefill": ttft * 0.3],
                       decodeBreakdown: ["linear": 0.0008], energy: nil, notes: "prefill in one pass")
}

@Suite struct StoreTests {
    @Test func pointsAndFailuresRoundTrip() throws {
        let store = try ResultsStore(path: temporaryDatabase())
        let run = try store.startRun(environment(), planHash: "plan-1")
        let measured = result("tiny-llama", context: 1024, ttft: 0.2)
        try store.record(.measured(measured), run: run)
        let failed = PointConfig(model: "tiny-llama", context: 1 << 20)
        try store.record(.failed(failed, reason: "out of memory: 4 GiB requested", outOfMemory: true), run: run)
        try store.finishRun(run)

        let points = try store.points()
        #expect(points.count == 1 && points[0].result == measured && points[0].runID == run)
        let failures = try store.failures()
        #expect(failures.count == 1 && failures[0].failure.config == failed && failures[0].failure.outOfMemory)
        let runs = try store.runs()
        #expect(runs.count == 1 && runs[0].status == "complete" && runs[0].pointCount == 1 && runs[0].failureCount == 1)
        #expect(runs[0].environment.gitRevision == "abc123")
    }

    @Test func resumeSkipsStoredKeys() throws {
        let path = temporaryDatabase()
        do {
            let store = try ResultsStore(path: path)
            let run = try store.startRun(environment(), planHash: "plan-2")
            try store.record(.measured(result("a", context: 1024, ttft: 0.1)), run: run)
            try store.record(.failed(PointConfig(model: "a", context: 2048), reason: "boom", outOfMemory: false), run: run)
            // The process dies here: the run stays "running".
        }
        let reopened = try ResultsStore(path: path)
        let run = try #require(try reopened.latestRun(planHash: "plan-2"))
        #expect(run.status == "running")
        let keys = try reopened.storedKeys(run: run.id)
        #expect(keys == [PointConfig(model: "a", context: 1024).key, PointConfig(model: "a", context: 2048).key])
        #expect(try reopened.latestRun(planHash: "other") == nil)
    }

    @Test func breakdownsAreQueryableBySQL() throws {
        let path = temporaryDatabase()
        let store = try ResultsStore(path: path)
        let run = try store.startRun(environment())
        try store.record(.measured(result("m", context: 4096, ttft: 1.0)), run: run)
        let queue = try DatabaseQueue(path: path)
        let attention = try queue.read { db in
            try Double.fetchOne(db, sql: "SELECT seconds FROM breakdowns WHERE phase = 'prefill' AND category = 'attention'")
        }
        #expect(attention == 0.3)
    }

    /// A file written by the first schema version opens with the current one, keeping its data.
    @Test func migratesAVersionOneFile() throws {
        let path = temporaryDatabase()
        let queue = try DatabaseQueue(path: path)
        try ResultsStore.migrator.migrate(queue, upTo: "v1: runs, points, breakdowns, failures")
        try queue.write { db in
            try db.execute(sql: """
                INSERT INTO runs (started_at, status, plan_hash, device, driver, os, cpu, backend, dtype, git_revision,
                                  command_line, environment_json)
                VALUES ('2026-01-01T00:00:00Z', 'complete', '', 'cpu', '', 'Linux', 'x', 'cpu', 'fp32', 'old', 'old run', ?)
                """, arguments: [try ResultsStore.json(environment("old run"))])
            #expect(try !db.tableExists("max_context"))
        }
        let store = try ResultsStore(path: path)
        #expect(try store.runs().map(\.environment.commandLine) == ["old run"])
        let limit = MaxContextResult(model: "m", backend: "cpu", dtype: "fp32", batch: 1, memoryLimitBytes: 1 << 30,
                                     tokens: 5000, reachedSearchLimit: false, peakBytesAtLimit: 1 << 29,
                                     method: "probe", prefill: "prefill in one pass", probes: [])
        try store.record(limit, run: 1)
        #expect(try store.maxContexts().map(\.result) == [limit])
    }

    @Test func notADatabaseGivesAClearError() throws {
        let path = temporaryDatabase()
        try Data("this is not sqlite".utf8).write(to: URL(fileURLWithPath: path))
        do {
            _ = try ResultsStore(path: path)
            Issue.record("expected an error")
        } catch {
            #expect("\(error)" == "\(path) is not an ssm-scope results file (not SQLite); pass another --db")
        }
    }
}
