#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import ScopeBackends
import ScopeBench
import ScopeCommandLine
import ScopeSupport

/// The static measuring binary: same engines and protocol as `ssm-scope`, results as JSON lines.
@main
struct Worker: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ssm-scope-worker",
        abstract: "Measure on machines without a Swift toolchain; write results as JSON lines for "
            + "'ssm-scope results import'.",
        subcommands: [WorkerSweep.self, WorkerDoctor.self, WorkerSelfTest.self])
}

struct WorkerSweep: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sweep", abstract: "Run a sweep plan and append every result to a JSON-lines log.")

    @OptionGroup var planOptions: PlanOptions

    @Option(help: "The results log to append to (JSON lines).")
    var out: String = "ssm-scope-results.jsonl"

    @Flag(help: "Skip points already in the log.")
    var resume = false

    func run() throws {
        let plan = MeasuringBackends.resolve(try planOptions.plan(defaults: MeasuringBackends.defaultPlan(for:)))
        try MeasuringBackends.validate(plan)
        var skip = Set<String>()
        if resume {
            for record in try ResultLog.read(path: out) {
                switch record {
                case .point(let p): skip.insert(p.config.key)
                case .failure(let f): skip.insert(f.config.key)
                default: break
                }
            }
        }
        let log = try ResultLog(path: out)
        if skip.isEmpty {
            let environment = MachineFacts.environment(
                backend: plan.backends.joined(separator: ","), dtype: plan.dtypes.joined(separator: ","),
                gitRevision: getenvString("SSM_SCOPE_GIT_REVISION") ?? "unknown (static worker)",
                commandLine: CommandLine.arguments.joined(separator: " "), startedAt: MachineFacts.now)
            try log.append(.run(environment: environment, plan: plan, planHash: plan.hash))
        }
        let sweep = MeasuringBackends.sweep(plan: plan, sink: log, run: 0, skip: skip, progress: ProgressLine(quiet: planOptions.protocolOptions.quiet))
        Interruption.install()
        let summary = try sweep.execute()
        print("results: \(out); import them with 'ssm-scope results import \(out)'")
        if summary.interrupted { throw ExitCode(130) }
    }
}

struct WorkerDoctor: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor", abstract: "Show the CUDA libraries and GPUs found here (exits 0 without them).")

    func run() throws { print(MachineDoctor.report()) }
}

struct WorkerSelfTest: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "selftest",
        abstract: "Check the CUDA backend against the CPU engine, the golden fixtures and prefill/step parity.")

    @Option(help: "The golden fixtures folder.")
    var fixtures = "Tests/ScopeEngineTests/Fixtures"

    func run() throws {
        // Each progress line is flushed, so that it survives a check that crashes the process.
        let results = try CUDASelfTest.run(fixtures: fixtures) { print($0); fflush(nil) }
        print(CUDASelfTest.table(results))
        print(CUDASelfTest.energyLine())
        if results.contains(where: { !$0.passed }) { throw ExitCode(1) }
    }
}

func getenvString(_ name: String) -> String? {
    guard let value = getenv(name) else { return nil }
    return String(cString: value)
}
