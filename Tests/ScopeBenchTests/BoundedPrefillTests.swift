import Foundation
import ScopeBackends
import ScopeBench
import ScopeCost
import ScopeEngine
import ScopeModels
import ScopeSupport
import Testing

/// Prefill under a memory limit: chunking keeps the workspace bounded, and the max-context probe sees the same
/// memory as the measured run. The measured runs chunk explicitly by 8192 tokens (the automatic rule's 32768-token
/// passes would need CPU prefills of 40K+ tokens here); the automatic rule is checked on the probe.
@Suite struct BoundedPrefillTests {
    /// Under this cap one pass over tiny-hybrid fits up to ~9.8K tokens; 8192-token chunks up to ~29K.
    static let limit = 144 << 20

    func runner(_ chunking: PrefillChunking) -> NativeRunner {
        NativeRunner(settings: ProtocolSettings(warmups: 0, repeats: 1, profile: false, prefillChunking: chunking),
                     memoryLimit: Self.limit) { name, limit, dtype in try BackendRegistry.make(name, memoryLimit: limit, dtype: dtype) }
    }

    /// A context that runs out of memory in one pass fits when chunked, and from one context to a longer one the
    /// measured peak grows by exactly what the KV cache grows: the workspace does not grow.
    @Test func chunkingFitsWhatOnePassCannotWithABoundedWorkspace() throws {
        let short = PointConfig(model: "tiny-hybrid", context: 10240, generate: 0)
        let long = PointConfig(model: "tiny-hybrid", context: 12288, generate: 0)
        guard case .failed(_, let reason, true) = try runner(.onePass).measure(short) else {
            Issue.record("one pass over \(short.context) tokens should run out of memory under 144 MiB")
            return
        }
        #expect(reason.hasPrefix("out of memory"))
        let chunked = runner(.tokens(8192))
        guard case .measured(let a) = try chunked.measure(short), case .measured(let b) = try chunked.measure(long)
        else {
            Issue.record("8192-token chunks should fit \(short.context) and \(long.context) tokens under 144 MiB")
            return
        }
        #expect(a.notes == "prefill chunked by 8192 tokens (explicit)" && b.notes == a.notes)
        let kvPerToken = 2 * 2 * 2 * 32 * 4  // 2 attention layers x K and V x 2 KV heads x head dim 32 x fp32
        #expect(b.cacheBytes - a.cacheBytes == (long.context - short.context) * kvPerToken)
        #expect(b.peakEngineBytes - a.peakEngineBytes == b.cacheBytes - a.cacheBytes)
        #expect(b.peakEngineBytes <= Self.limit)

        // The allocation probe that max-context runs reaches the very same peak.
        let spec = try ModelCatalog.spec(named: "tiny-hybrid")
        let probe = MemoryProbeBackend(standingInFor: "cpu", memoryLimit: Self.limit)
        let executor = ModelExecutor(spec: spec, weights: try ModelWeights(spec: spec, source: ShapeOnlyWeights(),
                                                                           type: .fp32, backend: probe),
                                     backend: probe)
        let steps = NativeRunner.decodeStepsPerRepeat(ProtocolSettings(), generate: long.generate)
        let cache = try executor.replayPrefillShapes(batch: 1, length: long.context, capacity: long.context + steps,
                                                     chunking: .tokens(8192))
        _ = try executor.step([0], cache: cache)
        #expect(probe.memory.peak == b.peakEngineBytes)
    }

    /// max-context follows the same rule as the sweep: the probe search finds more than one pass allows, says how
    /// the prefill at the limit ran, and its answer is exact on the probe (one token more no longer fits).
    @Test func maxContextSearchChunksLikeTheSweep() throws {
        let limit = 640 << 20  // one pass over tiny-hybrid fits some 50K tokens: past one automatic pass
        func search(_ chunking: PrefillChunking) throws -> MaxContextResult {
            try MaxContextProbe.search(model: "tiny-hybrid", batch: 1, dtype: "fp32", backend: "cpu",
                                       memoryLimit: limit, measure: false, prefillChunking: chunking,
                                       progress: nil)
        }
        let onePass = try search(.onePass), automatic = try search(.automatic)
        #expect(onePass.tokens > PrefillChunking.automaticPassTokens && onePass.tokens < 57344)
        #expect(automatic.tokens > 2 * onePass.tokens && !automatic.reachedSearchLimit)
        #expect(onePass.prefill == "prefill in one pass (chunking off)")
        #expect(automatic.prefill == "prefill chunked by 32768 tokens (automatic: workspace bound)")
        #expect(automatic.probes.contains { $0.tokens == automatic.tokens + 1 && !$0.fits })
        // An SSM's memory no longer grows with the context at all.
        let ssm = try MaxContextProbe.search(model: "tiny-mamba2", batch: 1, dtype: "fp32", backend: "cpu",
                                             memoryLimit: limit, measure: false, prefillChunking: .automatic,
                                             progress: nil)
        #expect(ssm.reachedSearchLimit)
    }
}
