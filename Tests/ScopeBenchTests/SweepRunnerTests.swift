import ScopeBackends
import ScopeBench
import ScopeEngine
import Testing

/// Records what reaches the sink.
final class MemorySink: ResultSink {
    var outcomes: [String] = []
    var maxContexts: [MaxContextResult] = []
    func record(_ outcome: PointOutcome, run: Int64) throws {
        switch outcome {
        case .measured(let r): outcomes.append("ok \(r.config.key)")
        case .failed(let c, let reason, _): outcomes.append("failed \(c.key): \(reason)")
        }
    }
    func record(_ result: MaxContextResult, run: Int64) throws { maxContexts.append(result) }
}

@Suite struct SweepRunnerTests {
    func runner() -> NativeRunner {
        NativeRunner(settings: ProtocolSettings(warmups: 0, repeats: 2, decodeSteps: 16, profile: true),
                     memoryLimit: nil) { name, limit, dtype in try BackendRegistry.make(name, memoryLimit: limit, dtype: dtype) }
    }

    /// A repeat runs one decode step more than TPOT takes: the step that recorded a CUDA graph is left out of TPOT
    /// (it stays in end-to-end latency), otherwise the last one.
    @Test func theRecordingStepIsNotATPOTSample() {
        let steps = NativeRunner.decodeStepsPerRepeat(ProtocolSettings(decodeSteps: 16), generate: 4)
        #expect(steps == 17)
        let seconds = [0.004] + Array(repeating: 0.001, count: 16)
        #expect(NativeRunner.tpotSamples(seconds, firstStepRecorded: true, count: 16) == Array(seconds[1...]))
        #expect(NativeRunner.tpotSamples(seconds, firstStepRecorded: false, count: 16) == Array(seconds[..<16]))
        #expect(NativeRunner.decodeStepsPerRepeat(ProtocolSettings(decodeSteps: 16), generate: 128) == 129)
    }

    @Test func measuresEveryPointFollowingTheProtocol() throws {
        let sink = MemorySink()
        let plan = SweepPlan(models: ["tiny-mamba2"], contexts: [64, 128], generate: [4],
                             settings: ProtocolSettings(warmups: 0, repeats: 2))
        let summary = try SweepRunner(plan: plan, measurers: ["cpu": runner()], sink: sink, run: 1, skip: [],
                                      progress: ProgressLine(quiet: true), probeSearch: nil).execute()
        #expect(summary.measured == 2 && summary.failed == 0)
        guard case .measured(let r) = try runner().measure(PointConfig(model: "tiny-mamba2", context: 64, generate: 4))
        else {
            Issue.record("expected a measurement")
            return
        }
        #expect(r.ttft.count == 2 && r.tpot.count == 32 && r.endToEnd.count == 2)
        #expect(r.ttft.min > 0 && r.endToEnd.median >= r.ttft.min)
        #expect(abs(r.prefillTokensPerSecond - 64 / r.ttft.median) < 1e-6)
        #expect(r.peakEngineBytes > r.weightBytes + r.cacheBytes && r.peakProcessBytes > 0)
        #expect((r.prefillBreakdown["ssd_chunk_scan"] ?? 0) > 0 && (r.decodeBreakdown["ssd_step"] ?? 0) > 0)
    }

    @Test func skipsStoredPointsOnResume() throws {
        let sink = MemorySink()
        let plan = SweepPlan(models: ["tiny-llama"], contexts: [32, 64, 128], settings: ProtocolSettings(warmups: 0, repeats: 1, profile: false))
        let done = Set(plan.points.prefix(2).map(\.key))
        let summary = try SweepRunner(plan: plan, measurers: ["cpu": runner()], sink: sink, run: 1, skip: done,
                                      progress: ProgressLine(quiet: true), probeSearch: nil).execute()
        #expect(summary.skipped == 2 && summary.measured == 1)
        #expect(sink.outcomes == ["ok \(plan.points[2].key)"])
    }

    /// A point measured with a known copy bandwidth carries its decode floor: weights and cache over it.
    @Test func pointsCarryTheirDecodeFloor() throws {
        let bandwidth = 1e10
        let measuring = NativeRunner(settings: ProtocolSettings(warmups: 0, repeats: 1, profile: false),
                                     memoryLimit: nil, copyBandwidth: { $0 == "cpu" ? bandwidth : nil }) { name, limit, dtype in
            try BackendRegistry.make(name, memoryLimit: limit, dtype: dtype)
        }
        guard case .measured(let r) = try measuring.measure(PointConfig(model: "tiny-llama", context: 64)) else {
            Issue.record("expected a measured point")
            return
        }
        #expect(r.decodeFloorSeconds == Double(r.weightBytes + r.cacheBytes) / bandwidth)
        #expect(r.decodeFloorFraction.map { $0 > 0 } == true)
        guard case .measured(let plain) = try runner().measure(PointConfig(model: "tiny-llama", context: 64)) else {
            Issue.record("expected a measured point")
            return
        }
        #expect(plain.decodeFloorSeconds == nil)
    }

    @Test func outOfMemoryIsAStoredResultAndTheSweepGoesOn() throws {
        let sink = MemorySink()
        let limited = NativeRunner(settings: ProtocolSettings(warmups: 0, repeats: 1, profile: false),
                                   memoryLimit: 24 << 20) { name, limit, dtype in try BackendRegistry.make(name, memoryLimit: limit, dtype: dtype) }
        let plan = SweepPlan(models: ["tiny-llama"], contexts: [64, 16384], settings: ProtocolSettings(warmups: 0, repeats: 1, profile: false))
        let summary = try SweepRunner(plan: plan, measurers: ["cpu": limited], sink: sink, run: 1, skip: [],
                                      progress: ProgressLine(quiet: true), probeSearch: nil).execute()
        #expect(summary.measured == 1 && summary.failed == 1)
        #expect(sink.outcomes[1].contains("out of memory"))
        // Weights that do not fit are a failed point too, not a crash.
        let tiny = NativeRunner(settings: ProtocolSettings(warmups: 0, repeats: 1, profile: false),
                                memoryLimit: 1 << 20) { name, limit, dtype in try BackendRegistry.make(name, memoryLimit: limit, dtype: dtype) }
        guard case .failed(_, let reason, true) = try tiny.measure(PointConfig(model: "tiny-llama", context: 8)) else {
            Issue.record("expected an out-of-memory failure")
            return
        }
        #expect(reason.hasSuffix("while loading the weights"))
    }

    /// The probe finds the exact longest context: one more token no longer fits on the real backend either.
    @Test func maxContextProbeAgreesWithTheRealBackend() throws {
        let limit = 24 << 20
        let result = try MaxContextProbe.search(model: "tiny-llama", batch: 1, dtype: "fp32", backend: "cpu",
                                                memoryLimit: limit, measure: false, prefillChunking: .automatic, progress: nil)
        #expect(!result.reachedSearchLimit && result.tokens > 1000)
        let measured = try MaxContextProbe.search(model: "tiny-llama", batch: 1, dtype: "fp32", backend: "cpu",
                                                  memoryLimit: limit, measure: true, prefillChunking: .automatic, progress: nil)
        #expect(measured.tokens == result.tokens && measured.method == "measured")
        #expect(result.probes.contains { $0.tokens == result.tokens && $0.fits })
        #expect(result.probes.contains { $0.tokens == result.tokens + 1 && !$0.fits })
    }

    @Test func contextSearchBisectsToTheToken() {
        let answer = ContextSearch.largest(limit: 1 << 30) { $0 <= 123_457 }
        #expect(answer.tokens == 123_457 && !answer.reachedLimit)
        #expect(ContextSearch.largest(limit: 4096) { _ in true } == (4096, true))
        #expect(ContextSearch.largest(limit: 4096) { _ in false }.tokens == 0)
        #expect(ContextSearch.largest(start: 1024, limit: 1 << 20) { $0 <= 10 }.tokens == 10)
    }
}

/// Counts what a sweep asks of it.
final class CountingMeasurer: PointMeasurer {
    var measured = 0, released = 0
    func measure(_ point: PointConfig) throws -> PointOutcome {
        measured += 1
        return .failed(point, reason: "not measured", outOfMemory: false)
    }
    func release() { released += 1 }
}

@Suite struct SweepBackendSwitchTests {
    /// A backend's models and memory are released before the next backend starts, so the second one measures on
    /// a machine that is not holding the first one's memory.
    @Test func releasesTheLastBackendBeforeTheNext() throws {
        let a = CountingMeasurer(), b = CountingMeasurer()
        let plan = SweepPlan(models: ["tiny-llama"], contexts: [32, 64], backends: ["a", "b"])
        _ = try SweepRunner(plan: plan, measurers: ["a": a, "b": b], sink: MemorySink(), run: 1, skip: [],
                            progress: ProgressLine(quiet: true), probeSearch: nil).execute()
        #expect(a.measured == 2 && b.measured == 2)
        #expect(a.released == 1 && b.released == 1)
    }
}
