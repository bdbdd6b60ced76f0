import ScopeCost
import ScopeEngine
import ScopeModels
import Testing

@Suite struct EngineMemoryTests {
    /// The engine's cache is exactly what the cost model predicts for fp32 caches.
    @Test(arguments: ["tiny-llama", "tiny-mamba2", "tiny-hybrid"])
    func cacheBytesMatchTheCostModel(name: String) throws {
        let spec = try ModelCatalog.spec(named: name)
        let executor = try randomExecutor(spec)
        let (_, cache) = try executor.prefill([tokens(300, vocab: spec.vocabSize)], capacity: 512)
        let memory = MemoryModel(spec: spec, precision: Precision(weights: .fp32))
        #expect(Double(cache.kvBytes) == memory.kvCacheBytes(context: 512))
        #expect(Double(cache.stateBytes) == memory.convStateBytes() + memory.ssmStateBytes())
        #expect(cache.length == 300)
    }

    @Test func highWaterMarkCoversWeightsCacheAndActivations() throws {
        let spec = try ModelCatalog.spec(named: "tiny-llama")
        let executor = try randomExecutor(spec)
        let weightBytes = executor.backend.memory.inUse
        #expect(Double(weightBytes) == MemoryModel(spec: spec, precision: Precision(weights: .fp32)).weightBytes)
        executor.backend.memory.resetPeak()
        let (_, cache) = try executor.prefill([tokens(256, vocab: spec.vocabSize)])
        let peak = executor.backend.memory.peak
        #expect(peak > weightBytes + cache.byteCount)
        #expect(executor.backend.memory.inUse == weightBytes + cache.byteCount, "activations are freed after the pass")
    }

    @Test func memoryLimitGivesOutOfMemory() throws {
        let spec = try ModelCatalog.spec(named: "tiny-llama")
        let executor = try randomExecutor(spec, memoryLimit: 16 * 1024 * 1024)
        let message = thrownMessage { _ = try executor.prefill([tokens(4096, vocab: spec.vocabSize)]) }
        #expect(message?.hasPrefix("out of memory") == true)
        #expect(executor.backend.memory.inUse < 16 * 1024 * 1024)
    }

    @Test func profileAttributesTimeToOperatorKinds() throws {
        let spec = try ModelCatalog.spec(named: "tiny-hybrid")
        let executor = try randomExecutor(spec)
        executor.backend.startProfile()
        _ = try executor.prefill([tokens(128, vocab: spec.vocabSize)])
        let profile = try executor.backend.finishProfile()
        for kind in [OperatorKind.linear, .attentionPrefill, .ssdChunkScan, .conv1d, .rmsNorm, .gatedRMSNorm,
                     .embedding, .lmHead, .rope] {
            #expect((profile.seconds[kind] ?? 0) > 0, "\(kind) was not timed")
        }
        #expect(profile.calls[.lmHead] == 1)
    }
}

/// The allocation probe replays one pass of each length a chunked prefill makes; that must reach the high-water
/// mark of the whole prefill, i.e. a pass's allocations must not depend on the tokens before it.
@Suite struct ShapeReplayTests {
    @Test(arguments: ["tiny-llama", "tiny-mamba2", "tiny-hybrid"])
    func replayReachesTheWholePrefillsPeak(name: String) throws {
        let spec = try ModelCatalog.spec(named: name)
        for (batch, length, chunking) in [(1, 20000, PrefillChunking.automatic), (3, 7000, .automatic),
                                          (2, 1000, .tokens(96)), (1, 4096, .onePass)] {
            func probeExecutor() throws -> ModelExecutor {
                let probe = MemoryProbeBackend(standingInFor: "cpu", memoryLimit: nil)
                let weights = try ModelWeights(spec: spec, source: ShapeOnlyWeights(), type: .fp32, backend: probe)
                return ModelExecutor(spec: spec, weights: weights, backend: probe)
            }
            let whole = try probeExecutor(), replayed = try probeExecutor()
            let prompts = Array(repeating: [Int32](repeating: 0, count: length), count: batch)
            let (_, wholeCache) = try whole.prefill(prompts, capacity: length + 1, chunking: chunking)
            _ = try whole.step(Array(repeating: 0, count: batch), cache: wholeCache)
            let cache = try replayed.replayPrefillShapes(batch: batch, length: length, capacity: length + 1,
                                                         chunking: chunking)
            #expect(cache.length == length)
            _ = try replayed.step(Array(repeating: 0, count: batch), cache: cache)
            #expect(replayed.backend.memory.peak == whole.backend.memory.peak, "\(name) B=\(batch) L=\(length)")
        }
    }
}
