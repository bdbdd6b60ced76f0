import Foundation
import ScopeCost
import ScopeModels
import ScopeSupport
import Testing

@Suite struct PrefillChunkingTests {
    @Test func automaticChunksOnlyPassesOverTheBound() {
        let auto = PrefillChunking.automatic
        #expect(auto.chunkTokens(context: 32768, batch: 1) == nil)
        #expect(auto.chunkTokens(context: 32769, batch: 1) == 32768)
        #expect(auto.chunkTokens(context: 1 << 20, batch: 1) == 32768)
        // The bound counts the tokens of the whole batch.
        #expect(auto.chunkTokens(context: 8192, batch: 4) == nil)
        #expect(auto.chunkTokens(context: 16384, batch: 4) == 8192)
        #expect(auto.chunkTokens(context: 16384, batch: 3) == 10922)
        #expect(auto.chunkTokens(context: 4, batch: 10_000) == 3)
        #expect(PrefillChunking.onePass.chunkTokens(context: 1 << 20, batch: 8) == nil)
        #expect(PrefillChunking.tokens(2048).chunkTokens(context: 2048, batch: 1) == nil)
        #expect(PrefillChunking.tokens(2048).chunkTokens(context: 2049, batch: 4) == 2048)
    }

    @Test func notesSayWhatHappenedAndWhy() {
        #expect(PrefillChunking.automatic.note(context: 65536, batch: 1)
            == "prefill chunked by 32768 tokens (automatic: workspace bound)")
        #expect(PrefillChunking.automatic.note(context: 4096, batch: 1) == "prefill in one pass")
        #expect(PrefillChunking.onePass.note(context: 32768, batch: 1) == "prefill in one pass (chunking off)")
        #expect(PrefillChunking.tokens(2048).note(context: 4096, batch: 2) == "prefill chunked by 2048 tokens (explicit)")
        #expect(PrefillChunking.tokens(8192).note(context: 4096, batch: 1) == "prefill in one pass")
    }

    /// A stored note reads back as a rule that makes the same passes (the cost model prices stored points by it).
    @Test func notesReadBackAsTheirPasses() {
        for (rule, context, batch) in [(PrefillChunking.automatic, 65536, 1), (.automatic, 4096, 1), (.onePass, 32768, 1),
                                       (.tokens(2048), 4096, 2), (.tokens(8192), 4096, 1)] {
            let read = PrefillChunking.recorded(in: "\(rule.note(context: context, batch: batch)); decode steps ...")
            #expect(read?.chunkTokens(context: context, batch: batch) == rule.chunkTokens(context: context, batch: batch))
        }
        #expect(PrefillChunking.recorded(in: "a note from before chunking existed") == nil)
    }

    @Test func parsesTheFlag() throws {
        #expect(try PrefillChunking(parsing: "auto") == .automatic)
        #expect(try PrefillChunking(parsing: " AUTO ") == .automatic)
        #expect(try PrefillChunking(parsing: "none") == .onePass)
        #expect(try PrefillChunking(parsing: "off") == .onePass)
        #expect(try PrefillChunking(parsing: "2k") == .tokens(2048))
        for bad in ["0", "-1", "sometimes", ""] {
            #expect(throws: ScopeError("invalid --prefill-chunk '\(bad)': write a token count such as 2k, 'auto' "
                + "(the default: at most 32768 prompt tokens per pass) or 'none' (one pass)")) {
                try PrefillChunking(parsing: bad)
            }
        }
    }

    /// The JSON the torch worker reads: a count, or null for one pass; "auto" only between Swift programs.
    @Test func jsonIsACountAutoOrNull() throws {
        let values: [PrefillChunking] = [.automatic, .onePass, .tokens(3)]
        let text = String(decoding: try JSONEncoder().encode(values), as: UTF8.self)
        #expect(text == #"["auto",null,3]"#)
        #expect(try JSONDecoder().decode([PrefillChunking].self, from: Data(text.utf8)) == values)
    }

    /// The memory model and the pass list follow the engine's rule: a pass never holds more than 32768 tokens, so
    /// the activations stop growing with the context while the KV cache goes on.
    @Test func costModelFollowsTheAutomaticRule() throws {
        let spec = try ModelCatalog.spec(named: "llama-3.2-1b")
        let memory = MemoryModel(spec: spec, precision: Precision(weights: .bf16))
        let fixed = MemoryModel(spec: spec, precision: Precision(weights: .bf16),
                                assumptions: ExecutionAssumptions(prefillChunking: .tokens(32768)))
        let onePass = MemoryModel(spec: spec, precision: Precision(weights: .bf16),
                                  assumptions: ExecutionAssumptions(prefillChunking: .onePass))
        #expect(memory.prefill(context: 1 << 20).activations == memory.prefill(context: 65536).activations)
        #expect(memory.prefill(context: 65536).activations == fixed.prefill(context: 65536).activations)
        #expect(memory.prefill(context: 32768).activations == onePass.prefill(context: 32768).activations)
        #expect(memory.prefill(context: 1 << 20).kvCache == onePass.prefill(context: 1 << 20).kvCache)
        #expect(memory.prefill(context: 16384, batch: 4).activations
            == fixed.prefill(context: 8192, batch: 4).activations)

        let passes = CostModel(spec: spec, precision: Precision(weights: .bf16)).prefillPasses(tokens: 80000)
        #expect(passes == [.prefill(tokens: 32768), .prefill(tokens: 32768, past: 32768),
                           .prefill(tokens: 14464, past: 65536)])
        #expect(ExecutionAssumptions().summary
            == "attention fused, prefill chunked automatically (at most 32768 tokens per pass)")
    }
}
