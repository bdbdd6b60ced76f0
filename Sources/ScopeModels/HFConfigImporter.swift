#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import ScopeSupport

/// Builds a `ModelSpec` from a Hugging Face `config.json`, reading the fields each family really uses.
public enum HFConfigImporter {
    /// The `model_type` values that can be imported.
    public static let supportedModelTypes = [
        "llama", "qwen2", "qwen3", "mistral", "phi3", "mamba", "falcon_mamba", "mamba2", "zamba2", "falcon_h1",
        "jamba", "bamba", "nemotron_h",
    ]

    /// Reads and imports a config file; `name` defaults to the file's folder or base name.
    public static func load(path: String, name: String? = nil) throws -> ModelSpec {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ScopeError("cannot read '\(path)': no such file or not readable")
        }
        let value: JSONValue
        do {
            value = try JSONValue.parse(data)
        } catch {
            throw ScopeError("\(path): not valid JSON (\(firstLine(of: error))); fix the file or pass a catalog name")
        }
        return try importConfig(value, name: name ?? defaultName(forPath: path), source: path)
    }

    /// Imports a parsed config; `source` names the file in error messages.
    public static func importConfig(_ value: JSONValue, name: String, source: String) throws -> ModelSpec {
        let c = try ConfigReader(value, source: source)
        guard let type = c.modelType else {
            throw ScopeError("\(source): field 'model_type' is missing; it must be one of "
                + supportedModelTypes.joined(separator: ", "))
        }
        switch type {
        case "llama", "qwen2", "qwen3", "mistral", "phi3": return try transformer(c, name: name, type: type)
        case "mamba", "falcon_mamba": return try mamba(c, name: name, type: type)
        case "mamba2": return try mamba2(c, name: name)
        case "zamba2": return try zamba2(c, name: name)
        case "falcon_h1": return try falconH1(c, name: name)
        case "jamba": return try jamba(c, name: name)
        case "bamba": return try bamba(c, name: name)
        case "nemotron_h": return try nemotronH(c, name: name)
        default:
            throw ScopeError("\(source): field 'model_type' is '\(type)', which ssm-scope does not support; "
                + "supported: " + supportedModelTypes.joined(separator: ", "))
        }
    }

    // MARK: Transformers

    private static func transformer(_ c: ConfigReader, name: String, type: String) throws -> ModelSpec {
        let hidden = try c.int("hidden_size")
        let layerCount = try c.int("num_hidden_layers")
        let heads = try c.int("num_attention_heads")
        let kvHeads = try c.int("num_key_value_heads", default: heads)
        try checkDivides(c, "num_attention_heads", heads, by: "num_key_value_heads", kvHeads)
        let headDim = try c.int("head_dim", default: hidden / heads)
        let norm = NormSpec(kind: .rms, epsilon: try c.double("rms_norm_eps", default: 1e-6))
        let bias = type == "qwen2" ? true : try c.bool("attention_bias", default: false)
        let outputBias = type == "qwen2" ? false : bias
        let rope = try ropeSpec(c, headDim: headDim)
        let windows = try slidingWindows(c, type: type, layerCount: layerCount)
        let mlp = MLPSpec(inputSize: hidden, intermediateSize: try c.int("intermediate_size"),
                          activation: try activation(c, "hidden_act", default: "silu"),
                          bias: try c.bool("mlp_bias", default: false), norm: norm)
        let layers = (0..<layerCount).map { i in
            Layer([
                .attention(AttentionSpec(inputSize: hidden, heads: heads, kvHeads: kvHeads, headDim: headDim,
                                         outputSize: hidden, qkvBias: bias, outputBias: outputBias, rope: rope,
                                         slidingWindow: windows[i], qkNorm: type == "qwen3", norm: norm)),
                .mlp(mlp),
            ])
        }
        return ModelSpec(name: name, modelType: type, vocabSize: try c.int("vocab_size"), hiddenSize: hidden,
                         layers: layers, norm: norm,
                         tiedEmbeddings: try c.bool("tie_word_embeddings", default: false),
                         maxTrainedContext: try c.optionalInt("max_position_embeddings"))
    }

    /// Per-layer sliding window (nil = full attention), from `layer_types` when present, else each family's rule.
    private static func slidingWindows(_ c: ConfigReader, type: String, layerCount: Int) throws -> [Int?] {
        let window = try c.optionalInt("sliding_window")
        if let types = try c.stringList("layer_types") {
            guard types.count == layerCount else {
                throw c.invalid("layer_types", "has \(types.count) entries but num_hidden_layers is \(layerCount)")
            }
            return try types.map { kind in
                switch kind {
                case "full_attention": return nil
                case "sliding_attention":
                    guard let window else { throw c.invalid("sliding_window", "is needed by layer_types") }
                    return window
                default: throw c.invalid("layer_types", "has unknown layer type '\(kind)'")
                }
            }
        }
        guard let window else { return Array(repeating: nil, count: layerCount) }
        switch type {
        case "qwen2", "qwen3":
            guard try c.bool("use_sliding_window", default: false) else { return Array(repeating: nil, count: layerCount) }
            let firstSliding = try c.int("max_window_layers", default: layerCount)
            return (0..<layerCount).map { $0 >= firstSliding ? window : nil }
        case "mistral", "phi3":
            return Array(repeating: window, count: layerCount)
        default:
            return Array(repeating: nil, count: layerCount)
        }
    }

    /// RoPE from `rope_theta` / `rope_scaling` / `partial_rotary_factor`, or the newer `rope_parameters`.
    private static func ropeSpec(_ c: ConfigReader, headDim: Int) throws -> RopeSpec {
        let parameters = try c.object("rope_parameters")
        var theta = try c.double("rope_theta", default: 10_000)
        if let p = parameters { theta = try p.double("rope_theta", default: theta) }
        var fraction = try c.double("partial_rotary_factor", default: 1)
        if let p = parameters { fraction = try p.double("partial_rotary_factor", default: fraction) }
        guard fraction > 0, fraction <= 1 else {
            throw c.invalid("partial_rotary_factor", "must be in (0, 1], found \(fraction)")
        }
        var rotaryDim = Int((Double(headDim) * fraction).rounded(.down))
        if c.has("attn_rotary_emb") {  // Bamba names the rotated width directly.
            rotaryDim = try c.int("attn_rotary_emb")
            guard rotaryDim <= headDim else {
                throw c.invalid("attn_rotary_emb", "(\(rotaryDim)) must not exceed the head width \(headDim)")
            }
        }
        let scalingObject = try c.object("rope_scaling") ?? parameters
        return RopeSpec(theta: theta, rotaryDim: rotaryDim, scaling: try ropeScaling(scalingObject, c))
    }

    private static func ropeScaling(_ s: ConfigReader?, _ c: ConfigReader) throws -> RopeSpec.Scaling {
        guard let s else { return .none }
        let kind = try s.string("rope_type", default: try s.string("type", default: "default"))
        let original = try s.int("original_max_position_embeddings",
                                 default: try c.int("original_max_position_embeddings",
                                                    default: try c.int("max_position_embeddings", default: 4096)))
        switch kind {
        case "default": return .none
        case "linear": return .linear(factor: try s.double("factor", default: 1))
        case "dynamic": return .dynamic(factor: try s.double("factor", default: 1))
        case "llama3":
            return .llama3(factor: try s.double("factor", default: 8),
                           lowFrequencyFactor: try s.double("low_freq_factor", default: 1),
                           highFrequencyFactor: try s.double("high_freq_factor", default: 4),
                           originalContext: original)
        case "yarn": return .yarn(factor: try s.double("factor", default: 1), originalContext: original)
        case "longrope", "su": return .longrope(originalContext: original)
        default:
            throw c.invalid("rope_scaling", "has rope type '\(kind)', which ssm-scope does not support "
                + "(supported: default, linear, dynamic, llama3, yarn, longrope)")
        }
    }

    // MARK: SSMs

    private static func mamba(_ c: ConfigReader, name: String, type: String) throws -> ModelSpec {
        let hidden = try c.int("hidden_size", "d_model")
        let layerCount = try c.int("num_hidden_layers", "n_layer")
        let norm = NormSpec(kind: .rms, epsilon: try c.double("layer_norm_epsilon", default: 1e-5))
        let expand = try c.int("expand", default: 2)
        let mixer = Mamba1Spec(modelSize: hidden, innerSize: try c.int("intermediate_size", default: expand * hidden),
                               stateSize: try c.int("state_size", default: 16),
                               convKernel: try c.int("conv_kernel", default: 4),
                               dtRank: try dtRank(c, "time_step_rank", hidden: hidden),
                               convBias: try c.bool("use_conv_bias", default: true),
                               projBias: try c.bool("use_bias", default: false),
                               bcdtNorm: type == "falcon_mamba",
                               bcdtEpsilon: try c.double("mixer_rms_eps", default: 1e-6), norm: norm)
        return ModelSpec(name: name, modelType: type, vocabSize: try c.int("vocab_size"), hiddenSize: hidden,
                         layers: Array(repeating: Layer([.mamba1(mixer)]), count: layerCount), norm: norm,
                         tiedEmbeddings: try c.bool("tie_word_embeddings", default: true))
    }

    private static func mamba2(_ c: ConfigReader, name: String) throws -> ModelSpec {
        let hidden = try c.int("hidden_size")
        let norm = NormSpec(kind: .rms, epsilon: try c.double("layer_norm_epsilon", default: 1e-5))
        let inner = try c.int("expand", default: 2) * hidden
        let mixer = try mamba2Mixer(c, hidden: hidden, inner: inner, headsKey: "num_heads", headDimKey: "head_dim",
                                    groupsKey: "n_groups", stateKey: "state_size", convKey: "conv_kernel",
                                    chunkKey: "chunk_size", convBiasKey: "use_conv_bias", projBiasKey: "use_bias",
                                    gatedNorm: try c.bool("rms_norm", default: true), groupedNorm: true,
                                    timeStep: try timeStepLimit(c), norm: norm)
        return ModelSpec(name: name, modelType: "mamba2", vocabSize: try c.int("vocab_size"), hiddenSize: hidden,
                         layers: Array(repeating: Layer([.mamba2(mixer)]), count: try c.int("num_hidden_layers")),
                         norm: norm, tiedEmbeddings: try c.bool("tie_word_embeddings", default: true))
    }

    /// A Mamba-2 mixer whose fields go by different names in each family's config.
    private static func mamba2Mixer(_ c: ConfigReader, hidden: Int, inner: Int, headsKey: String, headDimKey: String,
                                    groupsKey: String, stateKey: String, convKey: String, chunkKey: String,
                                    convBiasKey: String, projBiasKey: String, gatedNorm: Bool, groupedNorm: Bool = false,
                                    normBeforeGate: Bool = false, gatedNormEpsilon: Double? = nil,
                                    timeStep: (min: Double, max: Double) = (0, .infinity),
                                    norm: NormSpec) throws -> Mamba2Spec {
        let headDim: Int
        let heads: Int
        if c.has(headsKey) {
            heads = try c.int(headsKey)
            if c.has(headDimKey), c.object[headDimKey]?.stringValue != "auto" {
                headDim = try c.int(headDimKey)
            } else {
                headDim = inner / heads
            }
        } else {
            headDim = try c.int(headDimKey, default: 64)
            heads = inner / headDim
        }
        guard heads * headDim == inner else {
            throw c.invalid(headsKey, "times '\(headDimKey)' (\(heads) x \(headDim)) must equal the SSM inner width "
                + "\(inner)")
        }
        let groups = try c.int(groupsKey, default: 1)
        try checkDivides(c, headsKey, heads, by: groupsKey, groups)
        return Mamba2Spec(modelSize: hidden, innerSize: inner, heads: heads, headDim: headDim, groups: groups,
                          stateSize: try c.int(stateKey, default: 128), convKernel: try c.int(convKey, default: 4),
                          chunkSize: try c.int(chunkKey, default: 256),
                          convBias: try c.bool(convBiasKey, default: true),
                          projBias: try c.bool(projBiasKey, default: false), gatedNorm: gatedNorm,
                          normGroups: groupedNorm ? groups : 1, normBeforeGate: normBeforeGate,
                          gatedNormEpsilon: gatedNormEpsilon, timeStepMin: timeStep.min, timeStepMax: timeStep.max,
                          norm: norm)
    }

    // MARK: Hybrids

    private static func zamba2(_ c: ConfigReader, name: String) throws -> ModelSpec {
        let hidden = try c.int("hidden_size")
        let layerCount = try c.int("num_hidden_layers")
        let norm = NormSpec(kind: .rms, epsilon: try c.double("rms_norm_eps", default: 1e-5))
        let expand = try c.int("mamba_expand", default: 2)
        let mixer = try mamba2Mixer(c, hidden: hidden, inner: expand * hidden, headsKey: "n_mamba_heads",
                                    headDimKey: "mamba_headdim", groupsKey: "mamba_ngroups",
                                    stateKey: "mamba_d_state", convKey: "mamba_d_conv", chunkKey: "chunk_size",
                                    convBiasKey: "use_conv_bias", projBiasKey: "add_bias_linear", gatedNorm: true,
                                    groupedNorm: true, gatedNormEpsilon: 1e-5,
                                    timeStep: (try c.double("time_step_min", default: 0.001), .infinity), norm: norm)
        let types: [String]
        if let listed = try c.stringList("layers_block_type") {
            types = listed
        } else if let ids = try c.intList("hybrid_layer_ids") {
            types = (0..<layerCount).map { ids.contains($0) ? "hybrid" : "mamba" }
        } else {
            throw c.invalid("layers_block_type", "is missing (and so is 'hybrid_layer_ids'); Zamba2 needs one")
        }
        guard types.count == layerCount else {
            throw c.invalid("layers_block_type", "has \(types.count) entries but num_hidden_layers is \(layerCount)")
        }
        let heads = try c.int("num_attention_heads")
        let attentionWidth = 2 * hidden
        guard attentionWidth % heads == 0 else {
            throw c.invalid("num_attention_heads", "must divide 2 x hidden_size (\(attentionWidth))")
        }
        let headDim = attentionWidth / heads
        let rope = try c.bool("use_mem_rope", default: false) ? try ropeSpec(c, headDim: headDim) : nil
        // Zamba2 scales scores by (head_dim / 2)^-0.5.
        let attention = AttentionSpec(inputSize: attentionWidth, heads: heads,
                                      kvHeads: try c.int("num_key_value_heads", default: heads), headDim: headDim,
                                      outputSize: hidden, rope: rope, scale: 1 / (Double(headDim) / 2).squareRoot(),
                                      norm: norm)
        let mlp = MLPSpec(inputSize: hidden, intermediateSize: try c.int("intermediate_size", default: 4 * hidden),
                          activation: try activation(c, "hidden_act", default: "gelu"),
                          bias: try c.bool("add_bias_linear", default: false), norm: norm)
        let memBlocks = try c.int("num_mem_blocks", default: 1)
        let rank = try c.int("adapter_rank", default: 128)
        let attentionRank = try c.bool("use_shared_attention_adapter", default: false) ? rank : 0
        let mlpRank = try c.bool("use_shared_mlp_adapter", default: true) ? rank : 0
        var hybridSeen = 0
        let layers = try types.map { kind -> Layer in
            switch kind {
            case "mamba", "linear_attention": return Layer([.mamba2(mixer)])
            case "hybrid":
                defer { hybridSeen += 1 }
                let use = SharedInvocation(blockIndex: hybridSeen % memBlocks, attentionAdapterRank: attentionRank,
                                           mlpAdapterRank: mlpRank, outputLinearSize: hidden)
                return Layer([.sharedTransformer(use), .mamba2(mixer)])
            default: throw c.invalid("layers_block_type", "has unknown block type '\(kind)' (expected mamba or hybrid)")
            }
        }
        let shared = Array(repeating: SharedTransformerBlock(attention: attention, mlp: mlp),
                           count: min(memBlocks, max(hybridSeen, 1)))
        return ModelSpec(name: name, modelType: "zamba2", vocabSize: try c.int("vocab_size"), hiddenSize: hidden,
                         layers: layers, sharedBlocks: shared, norm: norm,
                         tiedEmbeddings: try c.bool("tie_word_embeddings", default: true),
                         maxTrainedContext: try c.optionalInt("max_position_embeddings"))
    }

    private static func falconH1(_ c: ConfigReader, name: String) throws -> ModelSpec {
        let hidden = try c.int("hidden_size")
        let heads = try c.int("num_attention_heads")
        let kvHeads = try c.int("num_key_value_heads", default: heads)
        try checkDivides(c, "num_attention_heads", heads, by: "num_key_value_heads", kvHeads)
        let headDim = try c.int("head_dim", default: hidden / heads)
        let norm = NormSpec(kind: .rms, epsilon: try c.double("rms_norm_eps", default: 1e-5))
        let inner = try c.int("mamba_d_ssm", default: try c.int("mamba_expand", default: 2) * hidden)
        let mixer = try mamba2Mixer(c, hidden: hidden, inner: inner, headsKey: "mamba_n_heads",
                                    headDimKey: "mamba_d_head", groupsKey: "mamba_n_groups",
                                    stateKey: "mamba_d_state", convKey: "mamba_d_conv", chunkKey: "mamba_chunk_size",
                                    convBiasKey: "mamba_conv_bias", projBiasKey: "mamba_proj_bias",
                                    gatedNorm: try c.bool("mamba_rms_norm", default: false), groupedNorm: true,
                                    normBeforeGate: try c.bool("mamba_norm_before_gate", default: true),
                                    timeStep: try timeStepLimit(c), norm: norm)
        let bias = try c.bool("attention_bias", default: false)
        let attention = AttentionSpec(inputSize: hidden, heads: heads, kvHeads: kvHeads, headDim: headDim,
                                      outputSize: hidden, qkvBias: bias, outputBias: bias,
                                      rope: try ropeSpec(c, headDim: headDim), norm: norm)
        let mlp = MLPSpec(inputSize: hidden, intermediateSize: try c.int("intermediate_size"),
                          activation: try activation(c, "hidden_act", default: "silu"),
                          bias: try c.bool("mlp_bias", default: false), norm: norm)
        let layer = Layer([.parallel(ParallelSpec(attention: attention, mamba: mixer, norm: norm)), .mlp(mlp)])
        let multipliers = MuPMultipliers(
            embedding: try c.double("embedding_multiplier", default: 1), lmHead: try c.double("lm_head_multiplier", default: 1),
            attentionIn: try c.double("attention_in_multiplier", default: 1),
            attentionOut: try c.double("attention_out_multiplier", default: 1),
            key: try c.double("key_multiplier", default: 1), ssmIn: try c.double("ssm_in_multiplier", default: 1),
            ssmOut: try c.double("ssm_out_multiplier", default: 1),
            ssm: try numberList(c, "ssm_multipliers", count: 5), mlp: try numberList(c, "mlp_multipliers", count: 2))
        return ModelSpec(name: name, modelType: "falcon_h1", vocabSize: try c.int("vocab_size"), hiddenSize: hidden,
                         layers: Array(repeating: layer, count: try c.int("num_hidden_layers")), norm: norm,
                         tiedEmbeddings: try c.bool("tie_word_embeddings", default: false),
                         maxTrainedContext: try c.optionalInt("max_position_embeddings"), multipliers: multipliers)
    }

    private static func jamba(_ c: ConfigReader, name: String) throws -> ModelSpec {
        let hidden = try c.int("hidden_size")
        let layerCount = try c.int("num_hidden_layers")
        let heads = try c.int("num_attention_heads")
        let kvHeads = try c.int("num_key_value_heads", default: heads)
        try checkDivides(c, "num_attention_heads", heads, by: "num_key_value_heads", kvHeads)
        let norm = NormSpec(kind: .rms, epsilon: try c.double("rms_norm_eps", default: 1e-6))
        let attention = AttentionSpec(inputSize: hidden, heads: heads, kvHeads: kvHeads, headDim: hidden / heads,
                                      outputSize: hidden, rope: nil, slidingWindow: try c.optionalInt("sliding_window"),
                                      norm: norm)
        let mixer = Mamba1Spec(modelSize: hidden, innerSize: try c.int("mamba_expand", default: 2) * hidden,
                               stateSize: try c.int("mamba_d_state", default: 16),
                               convKernel: try c.int("mamba_d_conv", default: 4),
                               dtRank: try dtRank(c, "mamba_dt_rank", hidden: hidden),
                               convBias: try c.bool("mamba_conv_bias", default: true),
                               projBias: try c.bool("mamba_proj_bias", default: false), bcdtNormWeights: true,
                               bcdtEpsilon: norm.epsilon, norm: norm)
        let mlp = MLPSpec(inputSize: hidden, intermediateSize: try c.int("intermediate_size"),
                          activation: try activation(c, "hidden_act", default: "silu"), norm: norm)
        let experts = try c.int("num_experts", default: 1)
        let topK = try c.int("num_experts_per_tok", default: 2)
        let attnPeriod = try c.int("attn_layer_period", default: 8)
        let attnOffset = try nonNegative(c, "attn_layer_offset", default: 4)
        let expertPeriod = try c.int("expert_layer_period", default: 2)
        let expertOffset = try nonNegative(c, "expert_layer_offset", default: 1)
        let layers = (0..<layerCount).map { i in
            let mixerBlock: Block = i % attnPeriod == attnOffset ? .attention(attention) : .mamba1(mixer)
            let ffn: Block = experts > 1 && i % expertPeriod == expertOffset
                ? .moe(MoESpec(experts: experts, topK: topK, expert: mlp)) : .mlp(mlp)
            return Layer([mixerBlock, ffn])
        }
        return ModelSpec(name: name, modelType: "jamba", vocabSize: try c.int("vocab_size"), hiddenSize: hidden,
                         layers: layers, norm: norm, tiedEmbeddings: try c.bool("tie_word_embeddings", default: false),
                         maxTrainedContext: try c.optionalInt("max_position_embeddings"))
    }

    private static func bamba(_ c: ConfigReader, name: String) throws -> ModelSpec {
        let hidden = try c.int("hidden_size")
        let layerCount = try c.int("num_hidden_layers")
        let heads = try c.int("num_attention_heads")
        let kvHeads = try c.int("num_key_value_heads", default: heads)
        try checkDivides(c, "num_attention_heads", heads, by: "num_key_value_heads", kvHeads)
        let headDim = try c.int("head_dim", default: hidden / heads)
        let norm = NormSpec(kind: .rms, epsilon: try c.double("rms_norm_eps", default: 1e-5))
        let mixer = try mamba2Mixer(c, hidden: hidden, inner: try c.int("mamba_expand", default: 2) * hidden,
                                    headsKey: "mamba_n_heads", headDimKey: "mamba_d_head", groupsKey: "mamba_n_groups",
                                    stateKey: "mamba_d_state", convKey: "mamba_d_conv", chunkKey: "mamba_chunk_size",
                                    convBiasKey: "mamba_conv_bias", projBiasKey: "mamba_proj_bias", gatedNorm: true,
                                    groupedNorm: true, timeStep: try timeStepLimit(c), norm: norm)
        let attention = AttentionSpec(inputSize: hidden, heads: heads, kvHeads: kvHeads, headDim: headDim,
                                      outputSize: hidden, rope: try ropeSpec(c, headDim: headDim), norm: norm)
        let mlp = MLPSpec(inputSize: hidden, intermediateSize: try c.int("intermediate_size"),
                          activation: try activation(c, "hidden_act", default: "silu"), norm: norm)
        let attentionLayers = Set(try c.intList("attn_layer_indices") ?? [])
        if let bad = attentionLayers.first(where: { $0 >= layerCount }) {
            throw c.invalid("attn_layer_indices", "names layer \(bad) but num_hidden_layers is \(layerCount)")
        }
        let layers = (0..<layerCount).map { i in
            Layer([attentionLayers.contains(i) ? .attention(attention) : .mamba2(mixer), .mlp(mlp)])
        }
        return ModelSpec(name: name, modelType: "bamba", vocabSize: try c.int("vocab_size"), hiddenSize: hidden,
                         layers: layers, norm: norm, tiedEmbeddings: try c.bool("tie_word_embeddings", default: false),
                         maxTrainedContext: try c.optionalInt("max_position_embeddings"))
    }

    private static func nemotronH(_ c: ConfigReader, name: String) throws -> ModelSpec {
        let hidden = try c.int("hidden_size")
        let layerCount = try c.int("num_hidden_layers")
        let heads = try c.int("num_attention_heads")
        let kvHeads = try c.int("num_key_value_heads", default: heads)
        try checkDivides(c, "num_attention_heads", heads, by: "num_key_value_heads", kvHeads)
        let headDim = try c.int("head_dim", default: try c.int("attention_head_dim", default: hidden / heads))
        let norm = NormSpec(kind: .rms, epsilon: try c.double("layer_norm_epsilon", default: 1e-5))
        let mambaHeads = try c.int("mamba_num_heads")
        let mambaHeadDim = try c.int("mamba_head_dim")
        let mixer = try mamba2Mixer(c, hidden: hidden, inner: mambaHeads * mambaHeadDim, headsKey: "mamba_num_heads",
                                    headDimKey: "mamba_head_dim", groupsKey: "n_groups", stateKey: "ssm_state_size",
                                    convKey: "conv_kernel", chunkKey: "chunk_size", convBiasKey: "use_conv_bias",
                                    projBiasKey: "use_bias", gatedNorm: true, groupedNorm: true,
                                    timeStep: (try c.double("time_step_min", default: 0.001), .infinity), norm: norm)
        let bias = try c.bool("attention_bias", default: false)
        let attention = AttentionSpec(inputSize: hidden, heads: heads, kvHeads: kvHeads, headDim: headDim,
                                      outputSize: hidden, qkvBias: bias, outputBias: bias, rope: nil, norm: norm)
        let mlp = MLPSpec(inputSize: hidden, intermediateSize: try c.int("intermediate_size"),
                          activation: try activation(c, "mlp_hidden_act", default: "relu2"), gated: false,
                          bias: try c.bool("mlp_bias", default: false), norm: norm)
        var pattern = try c.string("hybrid_override_pattern", default: "")
        if pattern.isEmpty, let types = try c.stringList("layers_block_type") {
            pattern = String(try types.map { kind -> Character in
                switch kind {
                case "mamba", "linear_attention": return "M"
                case "attention", "full_attention": return "*"
                case "mlp": return "-"
                default: throw c.invalid("layers_block_type", "has block type '\(kind)', which ssm-scope does not support")
                }
            })
        }
        guard pattern.count == layerCount else {
            throw c.invalid("hybrid_override_pattern", "has \(pattern.count) characters but num_hidden_layers is "
                + "\(layerCount)")
        }
        let layers = try pattern.map { symbol -> Layer in
            switch symbol {
            case "M": return Layer([.mamba2(mixer)])
            case "*": return Layer([.attention(attention)])
            case "-": return Layer([.mlp(mlp)])
            default:
                throw c.invalid("hybrid_override_pattern", "has unknown symbol '\(symbol)' (expected M, * or -)")
            }
        }
        return ModelSpec(name: name, modelType: "nemotron_h", vocabSize: try c.int("vocab_size"), hiddenSize: hidden,
                         layers: layers, norm: norm, tiedEmbeddings: try c.bool("tie_word_embeddings", default: false),
                         maxTrainedContext: try c.optionalInt("max_position_embeddings"))
    }

    // MARK: Shared field readers

    /// `time_step_limit`: [min, max], where max may be written {"__float__": "Infinity"}; default (0, inf).
    private static func timeStepLimit(_ c: ConfigReader) throws -> (min: Double, max: Double) {
        guard c.has("time_step_limit") else { return (0, .infinity) }
        guard let items = c.object["time_step_limit"]?.arrayValue, items.count == 2 else {
            throw c.invalid("time_step_limit", "must be a list [min, max]")
        }
        let bounds = try items.map { item -> Double in
            if let d = item.doubleValue { return d }
            if let text = item["__float__"]?.stringValue, let d = Double(text) { return d }
            throw c.invalid("time_step_limit", "must hold numbers")
        }
        return (bounds[0], bounds[1])
    }

    /// A list of `count` numbers (all 1 when absent).
    private static func numberList(_ c: ConfigReader, _ key: String, count: Int) throws -> [Double] {
        guard c.has(key) else { return Array(repeating: 1, count: count) }
        guard let items = c.object[key]?.arrayValue, items.count == count else {
            throw c.invalid(key, "must be a list of \(count) numbers")
        }
        return try items.map { item in
            guard let d = item.doubleValue else { throw c.invalid(key, "must hold numbers") }
            return d
        }
    }

    /// `time_step_rank`-style field: a number, or "auto" meaning ceil(hidden / 16).
    private static func dtRank(_ c: ConfigReader, _ key: String, hidden: Int) throws -> Int {
        if c.object[key]?.stringValue == "auto" || !c.has(key) { return (hidden + 15) / 16 }
        return try c.int(key)
    }

    private static func activation(_ c: ConfigReader, _ key: String, default fallback: String) throws -> Activation {
        let name = try c.string(key, default: fallback)
        switch name {
        case "silu", "swish": return .silu
        case "gelu", "gelu_new", "gelu_fast", "gelu_pytorch_tanh":
            return name == "gelu" ? .gelu : .geluTanh
        case "relu": return .relu
        case "relu2": return .relu2
        default: throw c.invalid(key, "names activation '\(name)', which ssm-scope does not support")
        }
    }

    private static func nonNegative(_ c: ConfigReader, _ key: String, default fallback: Int) throws -> Int {
        guard c.has(key) else { return fallback }
        guard let n = c.object[key]?.intValue, n >= 0 else { throw c.invalid(key, "must be a whole number >= 0") }
        return n
    }

    private static func checkDivides(_ c: ConfigReader, _ key: String, _ value: Int, by divisorKey: String,
                                     _ divisor: Int) throws {
        guard value % divisor == 0 else {
            throw c.invalid(divisorKey, "(\(divisor)) must divide '\(key)' (\(value))")
        }
    }

    private static func defaultName(forPath path: String) -> String {
        let parts = path.split(separator: "/").map(String.init)
        guard let file = parts.last else { return path }
        if file == "config.json", parts.count >= 2 { return parts[parts.count - 2] }
        return file.hasSuffix(".json") ? String(file.dropLast(5)) : file
    }

    private static func firstLine(of error: any Error) -> String {
        String(String(describing: error).split(separator: "\n").first ?? "")
    }
}
