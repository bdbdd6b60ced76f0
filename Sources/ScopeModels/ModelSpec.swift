/// The architecture of a language model as an ordered list of layers, each a list of pre-norm residual blocks.
///
/// Every other part of ssm-scope (cost model, engines, reports) walks this one description, so a prediction and a
/// measurement of the same model line up block by block.
public struct ModelSpec: Sendable, Hashable, Codable {
    /// Catalog id or file name the spec was loaded from, e.g. "mamba2-1.3b".
    public var name: String
    /// The Hugging Face `model_type` it came from, e.g. "mamba2".
    public var modelType: String
    public var vocabSize: Int
    public var hiddenSize: Int
    public var layers: [Layer]
    /// Transformer blocks whose weights are shared between several layers (Zamba2); referenced by
    /// `Block.sharedTransformer`.
    public var sharedBlocks: [SharedTransformerBlock]
    public var norm: NormSpec
    /// Whether the LM head reuses the embedding matrix.
    public var tiedEmbeddings: Bool
    /// Longest context the model was trained for (`max_position_embeddings`), when the config states one.
    public var maxTrainedContext: Int?
    /// Falcon-H1's muP multipliers (they change values, not costs); nil for every other family.
    public var multipliers: MuPMultipliers?

    public init(name: String, modelType: String, vocabSize: Int, hiddenSize: Int, layers: [Layer],
                sharedBlocks: [SharedTransformerBlock] = [], norm: NormSpec, tiedEmbeddings: Bool,
                maxTrainedContext: Int? = nil, multipliers: MuPMultipliers? = nil) {
        self.name = name
        self.modelType = modelType
        self.vocabSize = vocabSize
        self.hiddenSize = hiddenSize
        self.layers = layers
        self.sharedBlocks = sharedBlocks
        self.norm = norm
        self.tiedEmbeddings = tiedEmbeddings
        self.maxTrainedContext = maxTrainedContext
        self.multipliers = multipliers
    }
}

/// Scalar multipliers of Falcon-H1 (maximal-update parametrisation), applied as Hugging Face does.
public struct MuPMultipliers: Sendable, Hashable, Codable {
    public var embedding: Double
    public var lmHead: Double
    public var attentionIn: Double
    public var attentionOut: Double
    public var key: Double
    public var ssmIn: Double
    public var ssmOut: Double
    /// Multipliers of the in_proj segments [z, x, B, C, dt].
    public var ssm: [Double]
    /// Multipliers of [gate, down output].
    public var mlp: [Double]

    public init(embedding: Double, lmHead: Double, attentionIn: Double, attentionOut: Double, key: Double,
                ssmIn: Double, ssmOut: Double, ssm: [Double], mlp: [Double]) {
        self.embedding = embedding
        self.lmHead = lmHead
        self.attentionIn = attentionIn
        self.attentionOut = attentionOut
        self.key = key
        self.ssmIn = ssmIn
        self.ssmOut = ssmOut
        self.ssm = ssm
        self.mlp = mlp
    }
}

/// One decoder layer: blocks applied in order, each `x = x + block(norm(x))` unless the block says otherwise.
public struct Layer: Sendable, Hashable, Codable {
    public var blocks: [Block]
    public init(_ blocks: [Block]) { self.blocks = blocks }
}

/// A residual block of a decoder layer. Each carries its own pre-norm (a `NormSpec` over its input width).
public enum Block: Sendable, Hashable, Codable {
    case attention(AttentionSpec)
    case mamba1(Mamba1Spec)
    case mamba2(Mamba2Spec)
    case mlp(MLPSpec)
    case moe(MoESpec)
    /// Attention and a Mamba-2 mixer reading the same normalised input, outputs summed (Falcon-H1, Hymba).
    case parallel(ParallelSpec)
    /// An invocation of shared transformer block `index` (Zamba2): its input is `concat(x, embeddings)`, its
    /// output goes through a per-layer linear map and is added to the *input* of the next block rather than
    /// to the residual stream.
    case sharedTransformer(SharedInvocation)

    /// The kind as a short word, for tables.
    public var kindName: String {
        switch self {
        case .attention: "attention"
        case .mamba1: "mamba1"
        case .mamba2: "mamba2"
        case .mlp: "mlp"
        case .moe: "moe"
        case .parallel: "attention+mamba2"
        case .sharedTransformer: "shared-transformer"
        }
    }
}

/// Normalisation layer kind and epsilon. Every block has one over its input; the model has a final one.
public struct NormSpec: Sendable, Hashable, Codable {
    public enum Kind: String, Sendable, Hashable, Codable { case rms, layer }
    public var kind: Kind
    public var epsilon: Double
    public init(kind: Kind = .rms, epsilon: Double) {
        self.kind = kind
        self.epsilon = epsilon
    }
    /// Parameters of a norm over `width` features (LayerNorm has a bias too).
    public func parameters(width: Int) -> Int { kind == .rms ? width : 2 * width }
}

/// Rotary position embedding and its scaling variants.
public struct RopeSpec: Sendable, Hashable, Codable {
    public enum Scaling: Sendable, Hashable, Codable {
        case none
        case linear(factor: Double)
        case dynamic(factor: Double)
        case llama3(factor: Double, lowFrequencyFactor: Double, highFrequencyFactor: Double, originalContext: Int)
        case yarn(factor: Double, originalContext: Int)
        case longrope(originalContext: Int)
    }
    public var theta: Double
    /// Number of leading features of each head that are rotated (all of them unless partial rotary).
    public var rotaryDim: Int
    public var scaling: Scaling
    public init(theta: Double, rotaryDim: Int, scaling: Scaling = .none) {
        self.theta = theta
        self.rotaryDim = rotaryDim
        self.scaling = scaling
    }
}

/// Causal self-attention: MHA when kvHeads == heads, GQA when fewer, MQA when one.
public struct AttentionSpec: Sendable, Hashable, Codable {
    /// Width of the block's input (the model width, or twice it for Zamba2's shared block).
    public var inputSize: Int
    public var heads: Int
    public var kvHeads: Int
    public var headDim: Int
    /// Width of the output projection's output.
    public var outputSize: Int
    public var qkvBias: Bool
    public var outputBias: Bool
    /// nil for attention without positional encoding (Jamba, Nemotron-H).
    public var rope: RopeSpec?
    /// Tokens each query may see, when the layer uses sliding-window attention.
    public var slidingWindow: Int?
    /// RMS norms with weights on each query and key head (Qwen3).
    public var qkNorm: Bool
    /// Softmax scale of the scores; 1 / sqrt(headDim) unless a family says otherwise (Zamba2).
    public var scale: Double
    public var norm: NormSpec

    public init(inputSize: Int, heads: Int, kvHeads: Int, headDim: Int, outputSize: Int, qkvBias: Bool = false,
                outputBias: Bool = false, rope: RopeSpec?, slidingWindow: Int? = nil, qkNorm: Bool = false,
                scale: Double? = nil, norm: NormSpec) {
        self.inputSize = inputSize
        self.heads = heads
        self.kvHeads = kvHeads
        self.headDim = headDim
        self.outputSize = outputSize
        self.qkvBias = qkvBias
        self.outputBias = outputBias
        self.rope = rope
        self.slidingWindow = slidingWindow
        self.qkNorm = qkNorm
        self.scale = scale ?? 1 / Double(headDim).squareRoot()
        self.norm = norm
    }

    public var variant: String { kvHeads == heads ? "MHA" : (kvHeads == 1 ? "MQA" : "GQA") }
    public var queryWidth: Int { heads * headDim }
    public var kvWidth: Int { kvHeads * headDim }
    /// Tokens of KV cache this layer keeps at context `length`.
    public func cachedTokens(context length: Int) -> Int { min(length, slidingWindow ?? length) }
}

/// Mamba-1 selective-SSM mixer.
public struct Mamba1Spec: Sendable, Hashable, Codable {
    public var modelSize: Int
    public var innerSize: Int
    public var stateSize: Int
    public var convKernel: Int
    public var dtRank: Int
    public var convBias: Bool
    public var projBias: Bool
    /// Parameter-free RMS norms on B, C and dt (Falcon-Mamba).
    public var bcdtNorm: Bool
    /// RMS norms with weights on dt, B and C (Jamba).
    public var bcdtNormWeights: Bool
    /// Epsilon of the dt/B/C norms.
    public var bcdtEpsilon: Double
    public var norm: NormSpec

    public init(modelSize: Int, innerSize: Int, stateSize: Int, convKernel: Int, dtRank: Int, convBias: Bool,
                projBias: Bool, bcdtNorm: Bool = false, bcdtNormWeights: Bool = false, bcdtEpsilon: Double = 1e-6,
                norm: NormSpec) {
        self.modelSize = modelSize
        self.innerSize = innerSize
        self.stateSize = stateSize
        self.convKernel = convKernel
        self.dtRank = dtRank
        self.convBias = convBias
        self.projBias = projBias
        self.bcdtNorm = bcdtNorm
        self.bcdtNormWeights = bcdtNormWeights
        self.bcdtEpsilon = bcdtEpsilon
        self.norm = norm
    }
}

/// Mamba-2 (SSD) mixer.
public struct Mamba2Spec: Sendable, Hashable, Codable {
    public var modelSize: Int
    /// heads x headDim: width of x, z and y.
    public var innerSize: Int
    public var heads: Int
    public var headDim: Int
    public var groups: Int
    public var stateSize: Int
    public var convKernel: Int
    public var chunkSize: Int
    public var convBias: Bool
    public var projBias: Bool
    /// Whether the output goes through a gated RMSNorm (with weights) before out_proj.
    public var gatedNorm: Bool
    /// Groups of the gated norm (normalisation over innerSize / normGroups features at a time).
    public var normGroups: Int
    /// Whether the gated norm normalises before applying the SiLU gate (Falcon-H1 option) or after (default).
    public var normBeforeGate: Bool
    /// Epsilon of the gated norm.
    public var gatedNormEpsilon: Double
    /// Clamp of softplus(dt + dt_bias): [timeStepMin, timeStepMax].
    public var timeStepMin: Double
    public var timeStepMax: Double
    public var norm: NormSpec

    public init(modelSize: Int, innerSize: Int, heads: Int, headDim: Int, groups: Int, stateSize: Int,
                convKernel: Int, chunkSize: Int, convBias: Bool, projBias: Bool, gatedNorm: Bool = true,
                normGroups: Int = 1, normBeforeGate: Bool = false, gatedNormEpsilon: Double? = nil,
                timeStepMin: Double = 0, timeStepMax: Double = .infinity, norm: NormSpec) {
        self.modelSize = modelSize
        self.innerSize = innerSize
        self.heads = heads
        self.headDim = headDim
        self.groups = groups
        self.stateSize = stateSize
        self.convKernel = convKernel
        self.chunkSize = chunkSize
        self.convBias = convBias
        self.projBias = projBias
        self.gatedNorm = gatedNorm
        self.normGroups = normGroups
        self.normBeforeGate = normBeforeGate
        self.gatedNormEpsilon = gatedNormEpsilon ?? norm.epsilon
        self.timeStepMin = timeStepMin
        self.timeStepMax = timeStepMax
        self.norm = norm
    }

    /// Channels that go through the causal conv: x, B and C.
    public var convChannels: Int { innerSize + 2 * groups * stateSize }
    /// Output width of in_proj: z, x, B, C and dt.
    public var inProjSize: Int { 2 * innerSize + 2 * groups * stateSize + heads }
}

/// Activation functions of MLPs.
public enum Activation: String, Sendable, Hashable, Codable {
    case silu, gelu, geluTanh = "gelu_tanh", relu, relu2
}

/// A feed-forward block: gated (`down(act(gate(x)) * up(x))`) or plain (`down(act(up(x)))`).
public struct MLPSpec: Sendable, Hashable, Codable {
    public var inputSize: Int
    public var intermediateSize: Int
    public var outputSize: Int
    public var activation: Activation
    public var gated: Bool
    public var bias: Bool
    public var norm: NormSpec

    public init(inputSize: Int, intermediateSize: Int, outputSize: Int? = nil, activation: Activation,
                gated: Bool = true, bias: Bool = false, norm: NormSpec) {
        self.inputSize = inputSize
        self.intermediateSize = intermediateSize
        self.outputSize = outputSize ?? inputSize
        self.activation = activation
        self.gated = gated
        self.bias = bias
        self.norm = norm
    }
}

/// Top-k mixture of experts: a router and `experts` MLPs of which `topK` run for each token.
public struct MoESpec: Sendable, Hashable, Codable {
    public var experts: Int
    public var topK: Int
    /// The shape of one expert (its `norm` is the block's pre-norm).
    public var expert: MLPSpec
    public init(experts: Int, topK: Int, expert: MLPSpec) {
        self.experts = experts
        self.topK = topK
        self.expert = expert
    }
}

/// Attention and Mamba-2 in parallel on one normalised input (Falcon-H1).
public struct ParallelSpec: Sendable, Hashable, Codable {
    public var attention: AttentionSpec
    public var mamba: Mamba2Spec
    public var norm: NormSpec
    public init(attention: AttentionSpec, mamba: Mamba2Spec, norm: NormSpec) {
        self.attention = attention
        self.mamba = mamba
        self.norm = norm
    }
}

/// A transformer block whose weights several layers share (Zamba2): attention over concat(x, embeddings), then
/// an MLP, without inner residuals.
public struct SharedTransformerBlock: Sendable, Hashable, Codable {
    public var attention: AttentionSpec
    public var mlp: MLPSpec
    public init(attention: AttentionSpec, mlp: MLPSpec) {
        self.attention = attention
        self.mlp = mlp
    }
}

/// One use of a shared transformer block, with the weights that belong to this use alone.
public struct SharedInvocation: Sendable, Hashable, Codable {
    /// Index into `ModelSpec.sharedBlocks`.
    public var blockIndex: Int
    /// Rank of the LoRA adapters this use adds to q, k, v (0 when none).
    public var attentionAdapterRank: Int
    /// Rank of the LoRA adapter this use adds to the MLP's fused gate/up projection (0 when none).
    public var mlpAdapterRank: Int
    /// Width of the per-use linear map (hidden x hidden) applied to the block's output.
    public var outputLinearSize: Int
    public init(blockIndex: Int, attentionAdapterRank: Int, mlpAdapterRank: Int, outputLinearSize: Int) {
        self.blockIndex = blockIndex
        self.attentionAdapterRank = attentionAdapterRank
        self.mlpAdapterRank = mlpAdapterRank
        self.outputLinearSize = outputLinearSize
    }
}
