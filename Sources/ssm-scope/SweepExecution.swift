import Foundation
import ScopeBench
import ScopeEngine
import ScopeModels
import ScopeReport
import ScopeStore
import ScopeSupport

/// Runs a plan into the store: one run record, each point committed as measured, optional max-context
/// searches, then the report.
enum SweepExecution {
    struct Outcome {
        var runID: Int64
        var summary: SweepSummary
    }

    static func execute(plan: SweepPlan, store: ResultsStore, resume: Bool, quiet: Bool) throws -> Outcome {
        try plan.validate(knownBackends: Backends.names)
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
        let runner = NativeRunner(settings: plan.settings, memoryLimit: plan.memoryLimit) { name, limit in
            try Backends.make(name, memoryLimit: limit)
        }
        let measurers: [String: PointMeasurer] = Dictionary(uniqueKeysWithValues: Backends.names.map { ($0, runner) })
        let limit = plan.memoryLimit ?? HostEnvironment.physicalMemory
        let sweep = SweepRunner(plan: plan, measurers: measurers, sink: store, run: runID, skip: skip,
                                progress: progress) { point in
            try MaxContextExecution.search(model: point.model, batch: point.batch, dtype: point.dtype,
                                           backend: point.backend, memoryLimit: limit, measure: false,
                                           prefillChunk: plan.settings.prefillChunk, progress: nil)
        }
        Interruption.install()
        let summary = try sweep.execute()
        if !summary.interrupted { try store.finishRun(runID) }
        return Outcome(runID: runID, summary: summary)
    }
}

/// The longest-context search behind `max-context` and sweeps.
enum MaxContextExecution {
    /// Searches with the allocation probe (exact memory schedule, no arithmetic) or, with `measure`, by running
    /// the model on the backend at every probe.
    static func search(model: String, batch: Int, dtype: String, backend: String, memoryLimit: Int, measure: Bool,
                       prefillChunk: Int?, progress: ProgressLine?) throws -> MaxContextResult {
        let spec = try ModelCatalog.resolve(model)
        guard let type = ElementType(name: dtype) else {
            throw ScopeError("dtype '\(dtype)' cannot run on an engine; use fp32, bf16 or fp16")
        }
        return try ContextSearch.maxContext(
            spec: spec, batch: batch, type: type, memoryLimit: memoryLimit, limit: 1 << 30,
            method: measure ? "measured" : "probe", backendName: backend,
            makeBackend: { limit in
                measure ? try Backends.make(backend, memoryLimit: limit) as Backend
                    : MemoryProbeBackend(standingInFor: backend, memoryLimit: limit)
            },
            source: { measure ? RandomWeights(seed: 0) as WeightSource : ShapeOnlyWeights() }, prefillChunk: prefillChunk,
            progress: { probe in
                progress?.note("  \(probe.tokens) tokens: " + (probe.fits ? "fits" : "out of memory")
                    + " (peak \(Format.bytes(Double(probe.peakBytes))))")
            })
    }
}

/// Writes a report for runs of a store: the HTML file and a markdown summary beside it.
enum ReportWriter {
    static func write(store: ResultsStore, runs: [Int64]?, html path: String) throws -> (html: String, markdown: String) {
        let data = try ReportDataBuilder.build(store: store, runs: runs)
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
