import ScopeModels
import ScopeSupport

/// Hugging Face parameter names of each family, so that checkpoints load by name.
struct HFNaming {
    let modelType: String

    private var usesBackbone: Bool { ["mamba", "falcon_mamba", "mamba2", "nemotron_h"].contains(modelType) }
    private var isLlamaLike: Bool { ["llama", "qwen2", "qwen3", "mistral", "phi3"].contains(modelType) }

    var embedding: String { usesBackbone ? "backbone.embeddings.weight" : "model.embed_tokens.weight" }

    var finalNorm: String {
        if usesBackbone { return "backbone.norm_f.weight" }
        return isLlamaLike ? "model.norm.weight" : "model.final_layernorm.weight"
    }

    let lmHead = "lm_head.weight"

    func layer(_ index: Int) -> String { (usesBackbone ? "backbone.layers." : "model.layers.") + "\(index)." }

    /// The norm's name and the module prefix of the block at `position` within its layer.
    func block(_ block: Block, position: Int) -> (norm: String, module: String) {
        if usesBackbone {
            return ("norm.weight", "mixer.")
        }
        if modelType == "zamba2", case .mamba2 = block {
            return position == 0 ? ("input_layernorm.weight", "mamba.")
                : ("mamba_decoder.input_layernorm.weight", "mamba_decoder.mamba.")
        }
        switch (block, isLlamaLike) {
        case (.attention, true): return ("input_layernorm.weight", "self_attn.")
        case (.mlp, true): return ("post_attention_layernorm.weight", "mlp.")
        case (.attention, false): return ("input_layernorm.weight", "self_attn.")
        case (.mamba1, _), (.mamba2, _): return ("input_layernorm.weight", "mamba.")
        case (.parallel, _): return ("input_layernorm.weight", "")
        default: return ("pre_ff_layernorm.weight", "feed_forward.")
        }
    }

    /// Prefix of Zamba2's shared block `index`, stored under the first layer that uses it.
    func sharedBlock(firstLayer: Int) -> String { layer(firstLayer) + "shared_transformer." }

    /// Phi-3 fuses q, k and v into `qkv_proj` and gate and up into `gate_up_proj`.
    var fusedProjections: Bool { modelType == "phi3" }
}
