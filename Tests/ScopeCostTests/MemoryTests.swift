import Testing
import ScopeModels
@testable import ScopeCost

@Suite struct MemoryTests {
    func memory(_ name: String, _ dtype: DType = .bf16, _ assumptions: ExecutionAssumptions = .init()) throws
        -> MemoryModel {
        MemoryModel(spec: try ModelCatalog.spec(named: name), precision: Precision(weights: dtype),
                    assumptions: assumptions)
    }

    /// Llama-3.2-1B: 16 layers x K and V x 8 KV heads x 64 x 2 bytes = 32 KiB per token; 128K tokens -> 4 GiB.
    @Test func llamaKVCache() throws {
        let m = try memory("llama-3.2-1b")
        #expect(m.kvCacheBytes(context: 131_072) == 4 * 1_073_741_824)
        #expect(m.kvCacheBytes(context: 131_072, batch: 4) == 16 * 1_073_741_824)
        #expect(m.convStateBytes() == 0 && m.ssmStateBytes() == 0)
    }

    /// Mamba2-1.3B: 48 layers; conv state 4352 channels x 3 earlier inputs (kernel 4); SSM state 64 heads x 64 x 128; bf16.
    @Test func mamba2StatesDoNotGrowWithContext() throws {
        let m = try memory("mamba2-1.3b")
        #expect(m.kvCacheBytes(context: 1_000_000) == 0)
        #expect(m.convStateBytes() == 48 * 4352 * 3 * 2)
        #expect(m.ssmStateBytes() == 48 * 64 * 64 * 128 * 2)
        #expect(m.decode(context: 1024).cache == m.decode(context: 1_048_576).cache)
    }

    @Test func weightsByDtype() throws {
        let params = 1_235_814_400.0
        #expect(try memory("llama-3.2-1b", .bf16).weightBytes == params * 2)
        #expect(try memory("llama-3.2-1b", .fp32).weightBytes == params * 4)
        // int4 quantises linear layers only: embeddings (tied) and norms stay bf16.
        let spec = try ModelCatalog.spec(named: "llama-3.2-1b")
        let linear = Double(spec.linearParameterCount)
        #expect(try memory("llama-3.2-1b", .int4).weightBytes == linear * (0.5 + 2.0 / 128) + (params - linear) * 2)
        #expect(try memory("llama-3.2-1b", .int8).weightBytes < memory("llama-3.2-1b", .fp16).weightBytes)
    }

    @Test func slidingWindowCapsTheKVCache() throws {
        let phi = try memory("phi-3-mini")
        #expect(phi.kvCacheBytes(context: 100_000) == phi.kvCacheBytes(context: 2047))
    }

    @Test func hybridCacheHasEveryPart() throws {
        let m = try memory("zamba2-1.2b").prefill(context: 8192)
        #expect(m.kvCache > 0 && m.convState > 0 && m.ssmState > 0 && m.weights > 0 && m.activations > 0)
        #expect(m.total == m.weights + m.kvCache + m.convState + m.ssmState + m.activations)
    }

    @Test func chunkingBoundsActivationsAndMaterialisingGrowsThem() throws {
        let whole = try memory("qwen2.5-1.5b", .bf16, ExecutionAssumptions(prefillChunking: .onePass))
            .prefill(context: 65536)
        let chunked = try memory("qwen2.5-1.5b", .bf16, ExecutionAssumptions(prefillChunking: .tokens(2048))).prefill(context: 65536)
        let eager = try memory("qwen2.5-1.5b", .bf16,
                               ExecutionAssumptions(attention: .materialized, prefillChunking: .onePass))
            .prefill(context: 65536)
        #expect(chunked.activations < whole.activations / 16)
        #expect(chunked.kvCache == whole.kvCache)
        // fp32 scores of one layer: 12 heads x 65536 x 65536 x 4 bytes = 192 GiB, which dwarfs everything else.
        #expect(eager.activations > 12 * 65536.0 * 65536 * 4 && eager.activations < 1.01 * 12 * 65536.0 * 65536 * 4)
    }
}
