import ArgumentParser
import Foundation
import ScopeBackends
import ScopeBench
import ScopeCommandLine
import ScopeCost
import ScopeModels
import ScopeReport
import ScopeStore
import ScopeSupport

struct SweepCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sweep",
        abstract: "Measure models x contexts x batch x generation length x backend x dtype; store every point; "
            + "write the report.",
        discussion: """
            With no plan flags and no --spec it runs the default sweep for the device present: on a machine \
            without a GPU, the three tiny models from 512 to 8K tokens on the CPU, plus their longest context \
            under 2 GiB; with a GPU, Llama-3.2-1B, Mamba2-1.3B and Zamba2-1.2B from 1K to 64K in bf16 on it, plus \
            their longest context in its memory.
            """)

    @OptionGroup var planOptions: PlanOptions

    @Flag(help: "Continue the latest run of the same plan, skipping points already stored.")
    var resume = false

    @Option(help: "Where to write the HTML report (a markdown summary goes beside it).")
    var report: String = "ssm-scope-report.html"

    @Flag(name: .customLong("no-report"), help: "Do not write the report.")
    var noReport = false

    @OptionGroup var store: StoreOptions

    func run() throws {
        let plan = try planOptions.plan(defaults: MeasuringBackends.defaultPlan(for:))
        let outcome = try SweepExecution.execute(plan: plan, database: store.db, resume: resume,
                                                 quiet: planOptions.protocolOptions.quiet)
        let store = outcome.store
        if !noReport {
            let files = try ReportWriter.write(store: store, runs: [outcome.runID], html: report)
            print("report: \(files.html) and \(files.markdown)")
        }
        print("results: \(store.path) (run \(outcome.runID)); 'ssm-scope results show \(outcome.runID)' lists them")
        if outcome.summary.interrupted { throw ExitCode(130) }
    }
}

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run", abstract: "Measure one model at one or more contexts and store the points.")

    @OptionGroup var point: ModelPointOptions

    @Option(help: "Contexts: 1k,4k or 1k..32k.")
    var context: String = "1k"

    @Option(help: "Tokens generated for the end-to-end latency.")
    var generate: Int = 16

    @OptionGroup var store: StoreOptions
    @OptionGroup var protocolOptions: ProtocolOptions

    func run() throws {
        let plan = try point.plan(contexts: try SizeParsing.tokenList(context), generate: generate,
                                  settings: try protocolOptions.settings(), memoryLimit: try protocolOptions.limit())
        let outcome = try SweepExecution.execute(plan: plan, database: store.db, resume: false,
                                                 quiet: protocolOptions.quiet)
        let store = outcome.store
        print(ResultTables.points(try store.points(runs: [outcome.runID]).map(\.result),
                                  failures: try store.failures(runs: [outcome.runID]).map(\.failure)))
        if outcome.summary.interrupted { throw ExitCode(130) }
    }
}

struct ProfileCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "profile",
        abstract: "Operator breakdown of one model at one context: time by operator kind and category.")

    @OptionGroup var point: ModelPointOptions

    @Option(help: "Context length.")
    var context: String = "4k"

    @OptionGroup var store: StoreOptions
    @OptionGroup var protocolOptions: ProtocolOptions

    func run() throws {
        var settings = try protocolOptions.settings()
        settings.profile = true
        let plan = try point.plan(contexts: [try SizeParsing.tokens(context)], generate: 0, settings: settings,
                                  memoryLimit: try protocolOptions.limit())
        let outcome = try SweepExecution.execute(plan: plan, database: store.db, resume: false,
                                                 quiet: protocolOptions.quiet)
        let store = outcome.store
        if let point = try store.points(runs: [outcome.runID]).first {
            print(ResultTables.breakdown(point.result))
        } else if let failure = try store.failures(runs: [outcome.runID]).first {
            throw ScopeError("\(failure.failure.config.label) failed: \(failure.failure.reason)")
        }
    }
}

struct MaxContextCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "max-context",
        abstract: "The longest context a model fits in a memory limit: doubling, then bisection to the token.",
        discussion: """
            By default each probe runs the executor on an allocation-only backend: the exact memory schedule of \
            the real engine without its arithmetic, so the search takes seconds. --measure runs the model for real \
            at every probe (slow on a CPU). Each probe splits its prefill as a sweep's point would             (--prefill-chunk, automatic by default), and the table says how the prefill at the limit ran.
            """)

    @Option(name: .customLong("model"), help: "Model (repeat for several).")
    var models: [String]

    @Option(name: .customLong("memory-limit"), help: "Memory to fit in, e.g. 24GiB (default: this machine's).")
    var memoryLimit: String?

    @Option(help: "Sequences per batch.")
    var batch: String = "1"

    @Option(help: "Backend: \(BackendRegistry.names.joined(separator: ", ")).")
    var backend: String = "cpu"

    @Option(help: "Weight type: fp32, bf16, fp16 (on cuda, fp16 also computes in fp16; the others in bf16).")
    var dtype: String = "fp32"

    @Option(name: .customLong("prefill-chunk"), help: ArgumentHelp(PrefillChunkOption.help))
    var prefillChunk: String?

    @Flag(help: "Run the model at every probe instead of the allocation probe.")
    var measure = false

    @OptionGroup var store: StoreOptions

    func run() throws {
        let limit = try memoryLimit.map { Int(try SizeParsing.bytes($0, what: "--memory-limit")) }
            ?? BackendRegistry.memoryCapacity(of: backend)
        let batch = try SizeParsing.tokens(self.batch, what: "batch size")
        let chunking = try PrefillChunkOption.chunking(prefillChunk)
        for model in models { _ = try ModelCatalog.resolve(model) }
        _ = try BackendRegistry.make(backend, memoryLimit: nil)
        let store = try ResultsStore(path: self.store.db)
        let run = try store.startRun(HostEnvironment.record(backend: backend, dtype: dtype))
        let progress = ProgressLine()
        var table = TextTable(header: ["model", "max context", "peak at limit", "memory limit", "method", "prefill"],
                              rightAligned: [1, 2, 3])
        for model in models {
            progress.note("searching \(model) under \(Format.bytes(Double(limit)))")
            let result = try MaxContextProbe.search(model: model, batch: batch, dtype: dtype, backend: backend,
                                                    memoryLimit: limit, measure: measure, prefillChunking: chunking) { probe in
                progress.note("  \(probe.tokens) tokens: " + (probe.fits ? "fits" : "out of memory")
                    + " (peak \(Format.bytes(Double(probe.peakBytes))))")
            }
            try store.record(result, run: run)
            table.rows.append([model, result.reachedSearchLimit ? ">= \(result.tokens)" : String(result.tokens),
                               Format.bytes(Double(result.peakBytesAtLimit)), Format.bytes(Double(limit)),
                               result.method, result.prefill ?? "-"])
        }
        try store.finishRun(run)
        print(table.render())
    }
}

/// One model on one backend and weight type: the options `run` and `profile` share.
struct ModelPointOptions: ParsableArguments {
    @Argument(help: "A catalog name or a config.json path.")
    var model: String

    @Option(help: "Sequences per batch.")
    var batch: String = "1"

    @Option(help: "\(MeasuringBackends.help)")
    var backend: String = "cpu"

    @Option(help: "Weight type: fp32, bf16, fp16 (on cuda, fp16 also computes in fp16; the others in bf16).")
    var dtype: String = "fp32"

    func plan(contexts: [Int], generate: Int, settings: ProtocolSettings, memoryLimit: Int?) throws -> SweepPlan {
        SweepPlan(models: [model], contexts: contexts, batches: [try SizeParsing.tokens(batch, what: "batch size")],
                  generate: [generate], backends: [backend], dtypes: [dtype], settings: settings,
                  memoryLimit: memoryLimit)
    }
}
