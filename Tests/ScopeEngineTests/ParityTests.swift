import ScopeCost
import ScopeEngine
import ScopeModels
import Testing

/// Prefill over L tokens must give the logits of L single decode steps, for every family, with L crossing SSD
/// chunk boundaries and sliding windows; a chunked prefill must give the logits of a single one.
@Suite struct ParityTests {
    static let families: [(String, String)] = [
        ("tiny-llama", ""), ("tiny-mamba2", ""), ("tiny-hybrid", ""),
        ("mamba", #"{"model_type": "mamba", "hidden_size": 32, "num_hidden_layers": 2, "vocab_size": 64, "state_size": 8, "time_step_rank": 4}"#),
        ("falcon_mamba", #"{"model_type": "falcon_mamba", "hidden_size": 32, "num_hidden_layers": 2, "vocab_size": 64, "state_size": 8, "mixer_rms_eps": 1e-6}"#),
        ("mistral-window", #"{"model_type": "mistral", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 64, "sliding_window": 7}"#),
        ("qwen3", #"{"model_type": "qwen3", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 64}"#),
        ("phi3", #"{"model_type": "phi3", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 64, "partial_rotary_factor": 0.5, "sliding_window": 9}"#),
        ("jamba", #"{"model_type": "jamba", "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 64, "attn_layer_period": 2, "attn_layer_offset": 1, "expert_layer_period": 2, "expert_layer_offset": 0, "num_experts": 4, "num_experts_per_tok": 2, "mamba_d_state": 8, "mamba_dt_rank": 4}"#),
        ("nemotron_h", #"{"model_type": "nemotron_h", "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8, "mamba_num_heads": 8, "mamba_head_dim": 8, "n_groups": 2, "ssm_state_size": 8, "chunk_size": 8, "vocab_size": 64, "hybrid_override_pattern": "M-*-"}"#),
        ("falcon_h1", #"{"model_type": "falcon_h1", "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8, "mamba_d_ssm": 64, "mamba_n_heads": 8, "mamba_d_head": 8, "mamba_n_groups": 2, "mamba_d_state": 8, "mamba_chunk_size": 8, "mamba_rms_norm": true, "vocab_size": 64}"#),
    ]

    static func spec(_ family: (String, String)) throws -> ModelSpec {
        family.1.isEmpty ? try ModelCatalog.spec(named: family.0) : try inlineSpec(family.1, name: family.0)
    }

    @Test(arguments: families.map(\.0))
    func prefillEqualsSteps(family: String) throws {
        let spec = try Self.spec(Self.families.first { $0.0 == family }!)
        let executor = try randomExecutor(spec)
        let length = spec.name.hasPrefix("tiny") ? 150 : 21
        let prompt = tokens(length, vocab: spec.vocabSize)
        let (prefillLogits, _) = try executor.prefill([prompt])
        let cache = try executor.makeCache(batch: 1, capacity: length)
        var stepLogits: [[Float]] = []
        for token in prompt { stepLogits = try executor.step([token], cache: cache) }
        #expect(relativeError(prefillLogits[0], stepLogits[0]) < 1e-4, "\(family)")
        #expect(prefillLogits[0].allSatisfy { $0.isFinite })
    }

    @Test(arguments: families.map(\.0))
    func chunkedPrefillEqualsOnePass(family: String) throws {
        let spec = try Self.spec(Self.families.first { $0.0 == family }!)
        let executor = try randomExecutor(spec)
        let prompt = tokens(37, vocab: spec.vocabSize, seed: 3)
        let whole = try executor.prefill([prompt]).logits[0]
        let chunked = try executor.prefill([prompt], chunking: .tokens(10)).logits[0]
        #expect(relativeError(chunked, whole) < 1e-4, "\(family)")
    }

    /// A greedy step picks, for every sequence, the argmax of the logits a plain step returns.
    @Test func greedyStepPicksTheArgmaxOfTheStepsLogits() throws {
        let spec = try ModelCatalog.spec(named: "tiny-hybrid")
        let executor = try randomExecutor(spec)
        let a = tokens(20, vocab: spec.vocabSize, seed: 5), b = tokens(20, vocab: spec.vocabSize, seed: 6)
        let (_, plain) = try executor.prefill([a, b], capacity: 22)
        let (_, greedy) = try executor.prefill([a, b], capacity: 22)
        let logits = try executor.step([3, 4], cache: plain)
        #expect(try executor.stepGreedy([3, 4], cache: greedy) == logits.map(Greedy.argmax))
        #expect(greedy.length == plain.length)
    }

    @Test func greedyArgmaxTakesTheFirstMaximumAndIgnoresNaN() {
        #expect(Greedy.argmax([1, 5, 2, 5]) == 1)
        #expect(Greedy.argmax([.nan, 1, 3, .nan, 3]) == 2)
        #expect(Greedy.argmax([-.infinity, -.infinity]) == 0)
        #expect(Greedy.argmax([0.5, 0.5, 0.5][1...]) == 0)
        #expect(Greedy.argmax([]) == 0)
    }

    @Test func batchRowsMatchSingleSequences() throws {
        let spec = try ModelCatalog.spec(named: "tiny-hybrid")
        let executor = try randomExecutor(spec)
        let a = tokens(20, vocab: spec.vocabSize, seed: 5), b = tokens(20, vocab: spec.vocabSize, seed: 6)
        let (both, cache) = try executor.prefill([a, b], capacity: 21)
        #expect(relativeError(both[0], try executor.prefill([a]).logits[0]) < 1e-5)
        #expect(relativeError(both[1], try executor.prefill([b]).logits[0]) < 1e-5)
        let next = try executor.step([1, 2], cache: cache)
        let (_, cacheA) = try executor.prefill([a], capacity: 21)
        #expect(relativeError(next[0], try executor.step([1], cache: cacheA)[0]) < 1e-5)
    }

    @Test func generateIsGreedyAndDeterministic() throws {
        let spec = try ModelCatalog.spec(named: "tiny-llama")
        let first = try randomExecutor(spec).generate(prompt: tokens(8, vocab: spec.vocabSize), count: 6)
        let second = try randomExecutor(spec).generate(prompt: tokens(8, vocab: spec.vocabSize), count: 6)
        #expect(first.count == 6 && first == second)
    }

    @Test func bf16WeightsStayCloseToFp32() throws {
        let spec = try ModelCatalog.spec(named: "tiny-mamba2")
        let prompt = tokens(40, vocab: spec.vocabSize)
        let full = try randomExecutor(spec, type: .fp32).prefill([prompt]).logits[0]
        let half = try randomExecutor(spec, type: .bf16).prefill([prompt]).logits[0]
        #expect(relativeError(half, full) < 5e-2)
    }
}

/// Random weights must keep activations finite over long contexts; the SSM recurrence is the part that could
/// grow without bound (attention renormalises every row), so the SSM model is run over 100K tokens.
@Suite struct LongContextTests {
    @Test func ssmLogitsStayFiniteOver100KTokens() throws {
        let spec = try ModelCatalog.spec(named: "tiny-mamba2")
        let executor = try randomExecutor(spec, seed: 11)
        let prompt = tokens(100_000, vocab: spec.vocabSize, seed: 9)
        let (logits, cache) = try executor.prefill([prompt], capacity: 100_001)
        #expect(logits[0].allSatisfy { $0.isFinite })
        let next = try executor.step([1], cache: cache)
        #expect(next[0].allSatisfy { $0.isFinite } && cache.length == 100_001)
        let spread = (logits[0].max() ?? 0) - (logits[0].min() ?? 0)
        #expect(spread > 0.01 && spread < 1000, "logits neither collapse nor explode (spread \(spread))")
    }
}
