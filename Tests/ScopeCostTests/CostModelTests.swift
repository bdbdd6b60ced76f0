import Testing
import ScopeModels
@testable import ScopeCost

/// FLOP counts of one small model of each family, worked out by hand from the shapes in
/// `Sources/ScopeModels/Catalog/tiny-*.json` and the per-operator formulas documented in `CostModel`.
@Suite struct HandCheckedFlopTests {
    func flops(_ name: String, _ phase: Phase) throws -> CostTotals {
        let model = CostModel(spec: try ModelCatalog.spec(named: name), precision: Precision(weights: .fp32))
        return CostTotals(model.operators(phase))
    }

    /// tiny-llama: hidden 256, 4 layers, 8 heads / 2 KV heads of 32, MLP 704, vocab 2048.
    /// Per layer and token: q 256x256, k,v 256x64, o 256x256, gate+up 256x1408, down 704x256 = 704,512 weights
    /// -> 1,409,024 FLOPs. Decode at context 1023 attends to 1024 keys: 1024 x 8 heads x (4 x 32 + 5) = 1,089,536.
    @Test func tinyLlamaDecodeStep() throws {
        let t = try flops("tiny-llama", .decode(context: 1023))
        #expect(t.flopsByCategory[.gemm, default: 0] == 4 * 1_409_024)
        #expect(t.flopsByCategory[.attention, default: 0] == 4 * 1_089_536)
        #expect(t.flopsByCategory[.lmHead, default: 0] == 2 * 256 * 2048)
        // 9 RMSNorms (2 a layer + final) x 4 x 256; rope 3 x (8+2) heads x 32 dims; gated SiLU 6 x 704;
        // two residual adds of 256.
        #expect(t.flopsByCategory[.norm, default: 0] == 9 * 1024)
        #expect(t.flopsByCategory[.elementwise, default: 0] == 4 * (960 + 4224 + 512))
        #expect(t.flops == 11_074_816)
    }

    /// Prefill of 64 tokens: the same linear work per token, 64 x 65 / 2 = 2080 causal query-key pairs per head,
    /// and the LM head on the last token only.
    @Test func tinyLlamaPrefill() throws {
        let t = try flops("tiny-llama", .prefill(tokens: 64))
        #expect(t.flopsByCategory[.gemm, default: 0] == 64 * 4 * 1_409_024)
        #expect(t.flopsByCategory[.attention, default: 0] == 4 * 2080 * 8 * 133)
        #expect(t.flopsByCategory[.lmHead, default: 0] == 2 * 256 * 2048)
        #expect(t.flopsByCategory[.norm, default: 0] == 8 * 64 * 1024 + 1024)
        #expect(t.flops == 372_594_688)
    }

    /// tiny-mamba2: hidden 256, 6 layers, 8 heads of 64 (inner 512), 1 group, state 64, conv 4.
    /// in_proj 256 -> 2x512 + 2x64 + 8 = 1160; conv over 640 channels; out_proj 512 -> 256.
    /// Per layer: norm 1024 + in_proj 593,920 + conv 640 x 13 = 8,320 + SSD step 8x64x64x6 + 512x3 = 198,144
    /// + gated norm 2,048 + out_proj 262,144 + residual 256 = 1,065,856.
    @Test func tinyMamba2DecodeStepIsIndependentOfContext() throws {
        let short = try flops("tiny-mamba2", .decode(context: 1024))
        let long = try flops("tiny-mamba2", .decode(context: 1_048_576))
        #expect(short.flops == 6 * 1_065_856 + 1024 + 2 * 256 * 2048)
        #expect(long.flops == short.flops)
        #expect(short.flopsByCategory[.ssmScan, default: 0] == 6 * 198_144)
        #expect(short.flopsByCategory[.conv, default: 0] == 6 * 8_320)
    }

    /// SSD prefill of 128 tokens with chunk 64: per token 8 heads x (2x64x64 + 4x64x64 + 3x64) + 2x64x64 (C B^T)
    /// = 206,336, plus passing 2 chunk states of 8x64x64 (x2 FLOPs) = 131,072 per layer.
    @Test func tinyMamba2PrefillScan() throws {
        let t = try flops("tiny-mamba2", .prefill(tokens: 128))
        #expect(t.flopsByCategory[.ssmScan, default: 0] == exactly(6 * (128 * 206_336 + 131_072)))
        #expect(t.flopsByCategory[.gemm, default: 0] == exactly(6 * 128 * 2 * (256 * 1160 + 512 * 256)))
    }

    /// tiny-hybrid (Bamba layout): attention on layers 2 and 5 (8 heads / 2 KV of 32, rope on 16 dims), Mamba-2
    /// elsewhere, a gated MLP of 512 after every mixer.
    @Test func tinyHybridDecodeStep() throws {
        let t = try flops("tiny-hybrid", .decode(context: 255))
        // Attention: 2 layers x 256 keys x 8 x 133. Scan: 4 layers x 198,144.
        #expect(t.flopsByCategory[.attention, default: 0] == 2 * 256 * 8 * 133)
        #expect(t.flopsByCategory[.ssmScan, default: 0] == 4 * 198_144)
        // GEMMs: 2 attention layers x 163,840 weights, 4 mixers x (296,960 + 131,072), 6 MLPs x (262,144 + 131,072).
        #expect(t.flopsByCategory[.gemm, default: 0] == exactly(2 * (2 * 163_840 + 4 * (296_960 + 131_072) + 6 * (262_144 + 131_072))))
    }

    @Test func slidingWindowBoundsAttentionWork() {
        #expect(OperatorBuilder.causalPairs(length: 8, window: nil) == 36)
        // Window 4: queries 0..3 see 1..4 keys (10), queries 4..7 see 4 each (16).
        #expect(OperatorBuilder.causalPairs(length: 8, window: 4) == 26)
    }

    @Test func chunkedPrefillKeepsAttentionFlopsAndSplitsPasses() throws {
        let spec = try ModelCatalog.spec(named: "tiny-llama")
        let whole = CostModel(spec: spec, precision: Precision(weights: .bf16))
        let chunked = CostModel(spec: spec, precision: Precision(weights: .bf16),
                                assumptions: ExecutionAssumptions(prefillChunking: .tokens(256)))
        let passes = chunked.prefillPasses(tokens: 1000)
        #expect(passes == [.prefill(tokens: 256, past: 0), .prefill(tokens: 256, past: 256),
                           .prefill(tokens: 256, past: 512), .prefill(tokens: 232, past: 768)])
        let attention: (CostModel, [Phase]) -> Double = { model, phases in
            phases.map { CostTotals(model.operators($0)).flopsByCategory[.attention, default: 0] ?? 0 }.reduce(0, +)
        }
        #expect(attention(chunked, passes) == attention(whole, [.prefill(tokens: 1000)]))
    }

    @Test func moeCountsTopKExpertsOfFlopsButReadsEveryTouchedExpert() throws {
        let spec = try ModelCatalog.spec(named: "jamba-mini")
        let model = CostModel(spec: spec, precision: Precision(weights: .bf16))
        let decode = model.operators(.decode(context: 1024))
        let up = try #require(decode.first { $0.name.hasSuffix("experts_up") })
        // One token, top-2 of 16 experts, gated 4096 -> 2 x 14336.
        #expect(up.flops == 2 * 2 * 4096 * 28672)
        #expect(up.bytesRead == 2 * 4096 * 28672 * 2 + 2 * 4096 * 2)
    }

    @Test func everyOperatorIsNamedAndFinite() throws {
        for name in ModelCatalog.names {
            let model = CostModel(spec: try ModelCatalog.spec(named: name), precision: Precision(weights: .int4))
            for phase in [Phase.prefill(tokens: 4096), .decode(context: 65536)] {
                for op in model.operators(phase, batch: 2) {
                    #expect(op.flops.isFinite && op.flops >= 0 && op.bytes > 0, "\(name) \(op.name)")
                }
            }
        }
    }
}

/// An integer FLOP count written out by hand, as the Double the cost model reports.
func exactly(_ n: Int) -> Double { Double(n) }
