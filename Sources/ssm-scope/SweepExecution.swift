import Foundation
import ScopeBackends
import ScopeBench
import ScopeCost
import ScopeEngine
import ScopeModels
import ScopeReport
import ScopeStore
import ScopeSupport

/// Runs a plan into the store: one run record, each point committed as measured, optional max-context
/// searches, then the report.
enum SweepExecution {
    struct Outcome {
        var store: ResultsStore
        var runID: Int64
        var summary: SweepSummary
    }

    /// Checks the plan, and only then opens (or creates) the results file at `database`, so that a rejected plan
    /// writes nothing.
    static func execute(plan: SweepPlan, database: String, resume: Bool, quiet: Bool) throws -> Outcome {
        let plan = MeasuringBackends.resolve(plan)
        try MeasuringBackends.validate(plan)
        let store = try ResultsStore(path: database)
        var runID: Int64
        var skip = Set<String>()
        if resume {
            guard let previous = try store.latestRun(planHash: plan.hash) else {
                throw ScopeError("nothing to resume: \(store.path) has no run of this plan; run without --resume")
            }
            runID = previous.id
            skip = try store.storedKeys(run: runID)
        } else {
            let environment = HostEnvironment.record(backend: plan.backends.joined(separator: ","),
                                                     dtype: plan.dtypes.joined(separator: ","))
            runID = try store.startRun(environment, planHash: plan.hash)
        }
        let progress = ProgressLine(quiet: quiet)
        if !quiet { progress.note("run \(runID) -> \(store.path)") }
        let sweep = MeasuringBackends.sweep(plan: plan, sink: store, run: runID, skip: skip, progress: progress)
        Interruption.install()
        let summary = try sweep.execute()
        if !summary.interrupted { try store.finishRun(runID) }
        return Outcome(store: store, runID: runID, summary: summary)
    }
}

/// Writes a report for runs of a store: the HTML file and a markdown summary beside it.
enum ReportWriter {
    static func write(store: ResultsStore, runs: [Int64]?, html path: String,
                      efficiency: (profile: EfficiencyProfile, source: String)? = nil)
        throws -> (html: String, markdown: String) {
        let data = try ReportDataBuilder.build(store: store, runs: runs, efficiency: efficiency)
        let markdownPath = (path.hasSuffix(".html") ? String(path.dropLast(5)) : path) + ".md"
        try atomicWrite(HTMLReport.render(data), to: path)
        try atomicWrite(MarkdownSummary.render(data), to: markdownPath)
        return (path, markdownPath)
    }

    /// Writes to a temporary file beside `path`, then renames, so a reader never sees half a file.
    static func atomicWrite(_ text: String, to path: String) throws {
        let temporary = path + ".partial"
        do {
            try text.write(toFile: temporary, atomically: false, encoding: .utf8)
            if FileManager.default.fileExists(atPath: path) { try FileManager.default.removeItem(atPath: path) }
            try FileManager.default.moveItem(atPath: temporary, toPath: path)
        } catch {
            try? FileManager.default.removeItem(atPath: temporary)
            throw ScopeError("cannot write \(path): \(error.localizedDescription)")
        }
    }
}
