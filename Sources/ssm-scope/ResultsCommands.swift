import ArgumentParser
import ScopeCost
import Foundation
import ScopeBackends
import ScopeBench
import ScopeCommandLine
import ScopeReport
import ScopeStore
import ScopeSupport

struct ResultsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "results", abstract: "List, show and export stored results.",
        subcommands: [List.self, Show.self, Export.self, Import.self])

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The runs in the results file.")
        @OptionGroup var store: StoreOptions

        func run() throws {
            let store = try ExistingStore.open(self.store.db)
            var table = TextTable(header: ["run", "started", "status", "device", "backend", "dtype", "points", "failed",
                                           "command"], rightAligned: [0, 6, 7])
            for r in try store.runs() {
                table.rows.append([String(r.id), r.environment.startedAt, r.status == "running" ? "incomplete" : r.status,
                                   r.environment.device, r.environment.backend, r.environment.dtype,
                                   String(r.pointCount), String(r.failureCount), r.environment.commandLine])
            }
            print(table.rows.isEmpty ? "no runs in \(store.path)" : table.render())
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The points and failures of runs.")
        @Argument(help: "Run ids (default: the latest run).")
        var runs: [Int64] = []
        @OptionGroup var store: StoreOptions

        func run() throws {
            let store = try ExistingStore.open(self.store.db)
            let ids = try ExistingStore.runs(runs, in: store)
            for id in ids {
                let r = try store.run(id)
                print("run \(id): \(r.environment.device), \(r.environment.backend)/\(r.environment.dtype), "
                    + "\(r.environment.startedAt), git \(r.environment.gitRevision)")
                print(ResultTables.points(try store.points(runs: [id]).map(\.result),
                                          failures: try store.failures(runs: [id]).map(\.failure)))
                for m in try store.maxContexts(runs: [id]).map(\.result) {
                    print("max context of \(m.model): \(m.reachedSearchLimit ? ">= " : "")\(m.tokens) tokens under "
                        + "\(Format.bytes(Double(m.memoryLimitBytes))) [\(m.method)]")
                }
            }
        }
    }

    struct Export: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Export points as CSV, JSON or markdown.")
        @Argument(help: "Run ids (default: all runs).")
        var runs: [Int64] = []
        @Option(help: "csv, json or md.")
        var format: String = "csv"
        @Option(help: "Write to this file instead of standard output.")
        var output: String?
        @OptionGroup var store: StoreOptions

        func validate() throws {
            if !["csv", "json", "md"].contains(format) { throw ValidationError("--format must be csv, json or md") }
        }

        func run() throws {
            let store = try ExistingStore.open(self.store.db)
            let ids = runs.isEmpty ? nil : try ExistingStore.runs(runs, in: store)
            let points = try store.points(runs: ids)
            let text: String
            switch format {
            case "json": text = try ResultExport.json(points)
            case "md": text = MarkdownSummary.render(try ReportDataBuilder.build(store: store, runs: ids))
            default: text = ResultExport.csv(points)
            }
            if let output {
                try ReportWriter.atomicWrite(text, to: output)
                print("wrote \(points.count) points to \(output)")
            } else {
                print(text)
            }
        }
    }
}

extension ResultsCommand {
    struct Import: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Store a JSON-lines log written by ssm-scope-worker (e.g. on a GPU machine) as a run.")
        @Argument(help: "The log file.")
        var log: String
        @OptionGroup var store: StoreOptions

        func run() throws {
            let records = try ResultLog.read(path: log)
            guard case .run(let environment, _, let planHash)? = records.first else {
                throw ScopeError("\(log): the first line is not a run record; is this an ssm-scope-worker log?")
            }
            let store = try ResultsStore(path: self.store.db)
            let run = try store.startRun(environment, planHash: planHash)
            var points = 0, failures = 0, searches = 0
            for record in records.dropFirst() {
                switch record {
                case .run: throw ScopeError("\(log): holds more than one run; split it")
                case .point(let p):
                    try store.record(.measured(p), run: run)
                    points += 1
                case .failure(let f):
                    try store.record(.failed(f.config, reason: f.reason, outOfMemory: f.outOfMemory), run: run)
                    failures += 1
                case .maxContext(let m):
                    try store.record(m, run: run)
                    searches += 1
                }
            }
            try store.finishRun(run)
            print("imported \(points) points, \(failures) failures, \(searches) max-context searches as run \(run) "
                + "into \(store.path)")
        }
    }
}

struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report", abstract: "Write the HTML report and markdown summary of stored runs.")
    @Argument(help: "Run ids (default: all runs).")
    var runs: [Int64] = []
    @Option(help: "The HTML file to write (the markdown summary goes beside it).")
    var output: String = "ssm-scope-report.html"
    @Option(help: "A JSON efficiency profile for the predictions beside the measurements (from 'ssm-scope calibrate').")
    var efficiency: String?
    @OptionGroup var store: StoreOptions

    func run() throws {
        let store = try ExistingStore.open(self.store.db)
        let ids = runs.isEmpty ? nil : try ExistingStore.runs(runs, in: store)
        let profile = try efficiency.map { (profile: try EfficiencyFile.load($0), source: $0) }
        let files = try ReportWriter.write(store: store, runs: ids, html: output, efficiency: profile)
        print("report: \(files.html) and \(files.markdown)")
    }
}

struct CompareCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compare",
        abstract: "Two runs side by side, or one plan measured on two backends in one run, with ratio columns.",
        discussion: """
            'ssm-scope compare RUN_A RUN_B' compares two stored runs. With plan flags instead of run ids, e.g. \
            'ssm-scope compare --backend native --backend torch --model llama-3.2-1b --context 1k..64k --dtype bf16', \
            it measures the plan on both backends as one run, prints both and their ratio per model and context, \
            and writes the report.
            """)
    @Argument(help: "Two run ids (or none, with plan flags).")
    var runs: [Int64] = []
    @OptionGroup var planOptions: PlanOptions
    @Option(help: "Where to write the HTML report when measuring (a markdown summary goes beside it).")
    var report: String = "ssm-scope-report.html"
    @Flag(help: "Continue the latest run of the same plan, skipping points already stored.")
    var resume = false
    @OptionGroup var store: StoreOptions

    func validate() throws {
        let measures = !planOptions.models.isEmpty || planOptions.spec != nil
        if runs.isEmpty ? !measures : (runs.count != 2 || measures || !planOptions.backends.isEmpty || resume) {
            throw ValidationError("give two run ids, or plan flags with two backends "
                + "(e.g. --backend native --backend torch --model llama-3.2-1b), not both")
        }
    }

    func run() throws {
        if runs.isEmpty { return try measureBackends() }
        let store = try ExistingStore.open(self.store.db)
        let a = try store.run(runs[0]), b = try store.run(runs[1])
        print("A = run \(a.id): \(a.environment.device), \(a.environment.backend)/\(a.environment.dtype)")
        print("B = run \(b.id): \(b.environment.device), \(b.environment.backend)/\(b.environment.dtype)")
        print(ResultTables.compare(try store.points(runs: [a.id]).map(\.result),
                                   try store.points(runs: [b.id]).map(\.result), labels: ("A", "B")))
    }

    /// Measures the plan on its two backends in one run, then prints them side by side per weight type.
    private func measureBackends() throws {
        let plan = MeasuringBackends.resolve(try planOptions.plan(defaults: MeasuringBackends.defaultPlan(for:)))
        guard plan.backends.count == 2 else {
            throw ScopeError("compare measures two backends; give --backend twice (e.g. --backend native --backend "
                + "torch), not \(plan.backends.count)")
        }
        let outcome = try SweepExecution.execute(plan: plan, database: store.db, resume: resume,
                                                 quiet: planOptions.protocolOptions.quiet)
        let store = outcome.store
        let points = try store.points(runs: [outcome.runID]).map(\.result)
        let (a, b) = (plan.backends[0], plan.backends[1])
        for dtype in plan.dtypes {
            if plan.dtypes.count > 1 { print("\(dtype):") }
            let of = { (backend: String) in points.filter { $0.config.backend == backend && $0.config.dtype == dtype } }
            print(ResultTables.compare(of(a), of(b), labels: (a, b)))
        }
        var seen = Set<String>()
        for p in points where seen.insert("\(p.config.backend)|\(p.config.model)").inserted {
            print("\(p.config.backend) \(p.config.model): \(p.notes)")
        }
        let failed = try store.failures(runs: [outcome.runID]).count
        if failed > 0 {
            print("\(failed) point\(failed == 1 ? "" : "s") failed; 'ssm-scope results show \(outcome.runID)' gives the "
                + "reasons")
        }
        let files = try ReportWriter.write(store: store, runs: [outcome.runID], html: report)
        print("report: \(files.html) and \(files.markdown)")
        if outcome.summary.interrupted { throw ExitCode(130) }
    }
}

/// Opening a results file that must already exist.
enum ExistingStore {
    static func open(_ path: String) throws -> ResultsStore {
        guard FileManager.default.fileExists(atPath: path) else {
            throw ScopeError("no results file at \(path); run 'ssm-scope sweep' first or pass --db")
        }
        return try ResultsStore(path: path)
    }

    /// The given run ids (checked), or the latest run when none are given.
    static func runs(_ ids: [Int64], in store: ResultsStore) throws -> [Int64] {
        if ids.isEmpty {
            guard let last = try store.runs().last else { throw ScopeError("no runs in \(store.path)") }
            return [last.id]
        }
        for id in ids { _ = try store.run(id) }
        return ids
    }
}

/// Flat exports of points.
enum ResultExport {
    static func csv(_ points: [StoredPoint]) -> String {
        var lines = ["run,model,context,batch,generate,backend,dtype,ttft_median_s,ttft_stddev_s,tpot_median_s,"
            + "e2e_median_s,prefill_tok_s,decode_tok_s,peak_engine_bytes,peak_rss_bytes,weight_bytes,cache_bytes"]
        for s in points {
            let p = s.result, c = p.config
            lines.append([String(s.runID), c.model, String(c.context), String(c.batch), String(c.generate), c.backend,
                          c.dtype, String(p.ttft.median), String(p.ttft.stddev), String(p.tpot.median),
                          String(p.endToEnd.median), String(p.prefillTokensPerSecond), String(p.decodeTokensPerSecond),
                          String(p.peakEngineBytes), String(p.peakProcessBytes), String(p.weightBytes),
                          String(p.cacheBytes)].joined(separator: ","))
        }
        return lines.joined(separator: "\n")
    }

    static func json(_ points: [StoredPoint]) throws -> String {
        struct Row: Encodable {
            let run: Int64
            let point: PointResult
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: try encoder.encode(points.map { Row(run: $0.runID, point: $0.result) }), as: UTF8.self)
    }
}
