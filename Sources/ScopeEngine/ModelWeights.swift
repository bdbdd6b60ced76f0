#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import ScopeModels
import ScopeSupport

/// A linear layer: `weight` rows (optionally a contiguous block of a fused weight) and an optional bias.
public struct Linear {
    public let weight: Tensor
    public let rows: Range<Int>?
    public let bias: Tensor?
    public var outputs: Int { rows?.count ?? weight.shape[0] }

    /// The rows `rows` of `weight` (nil: all) with an optional bias.
    public init(weight: Tensor, rows: Range<Int>?, bias: Tensor?) {
        self.weight = weight
        self.rows = rows
        self.bias = bias
    }
}

public struct AttentionWeights {
    public let q, k, v, o: Linear
    public let qNorm, kNorm: Tensor?
}

public struct Mamba1Weights {
    public let inX, inZ: Linear
    public let convWeight: Tensor
    public let convBias: Tensor?
    public let xDt, xB, xC: Linear
    public let dtProj: Linear
    /// -exp(A_log), [inner, state].
    public let A: Tensor
    public let D: Tensor
    public let out: Linear
    /// Jamba's RMS norm weights on dt, B and C.
    public let dtNorm, bNorm, cNorm: Tensor?
}

public struct Mamba2Weights {
    public let inZ, inXBC, inDt: Linear
    public let convWeight: Tensor
    public let convBias: Tensor?
    public let dtBias: Tensor
    /// -exp(A_log), [heads].
    public let A: Tensor
    public let D: Tensor
    public let gatedNorm: Tensor?
    public let out: Linear
}

public struct MLPWeights {
    public let gate: Linear?
    public let up, down: Linear
}

public struct MoEWeights {
    public let router: Linear
    public let experts: [MLPWeights]
}

/// Zamba2's shared transformer block: norms over 2 x hidden and hidden, attention, fused gate/up MLP.
public struct SharedBlockWeights {
    public let inputNorm: Tensor
    public let attention: AttentionWeights
    public let mlpNorm: Tensor
    public let mlp: MLPWeights
}

/// The weights one use of a shared block owns: LoRA adapters (down, up) and the output linear map.
public struct SharedInvocationWeights {
    public let qAdapter, kAdapter, vAdapter: (down: Linear, up: Linear)?
    public let mlpAdapter: (down: Linear, up: Linear)?
    public let output: Linear
}

/// The weights of one block, matching `Block`.
public enum BlockWeights {
    case attention(norm: Tensor, AttentionWeights)
    case mamba1(norm: Tensor, Mamba1Weights)
    case mamba2(norm: Tensor, Mamba2Weights)
    case mlp(norm: Tensor, MLPWeights)
    case moe(norm: Tensor, MoEWeights)
    case parallel(norm: Tensor, AttentionWeights, Mamba2Weights)
    case shared(SharedInvocationWeights)
}

/// Every parameter of a model, resident on one backend.
public final class ModelWeights {
    public let embedding: Tensor
    public let finalNorm: Tensor
    /// nil when tied to the embedding.
    public let lmHead: Tensor?
    public let layers: [[BlockWeights]]
    /// Zamba2's shared transformer blocks.
    public let shared: [SharedBlockWeights]
    public let type: ElementType

    /// Reads every parameter `spec` describes from `source`, with Hugging Face names; linear weights and
    /// embeddings are stored as `type`, everything else as fp32.
    public init(spec: ModelSpec, source: WeightSource, type: ElementType, backend: Backend) throws {
        let loader = WeightLoader(source: source, type: type, backend: backend,
                                  naming: HFNaming(modelType: spec.modelType), depth: spec.layers.count,
                                  multipliers: spec.multipliers, firstUse: Self.firstUses(spec))
        self.type = type
        embedding = try source.tensor(loader.naming.embedding, shape: [spec.vocabSize, spec.hiddenSize],
                                      role: .embedding, type: type, backend: backend)
        finalNorm = try loader.fp32(loader.naming.finalNorm, [spec.hiddenSize], .normWeight)
        lmHead = spec.tiedEmbeddings ? nil
            : try source.tensor(loader.naming.lmHead, shape: [spec.vocabSize, spec.hiddenSize],
                                role: .linear(fanIn: spec.hiddenSize, gain: 1), type: type, backend: backend)
        shared = try spec.sharedBlocks.indices.map { try loader.sharedBlock(spec.sharedBlocks[$0], index: $0) }
        var ordinal = 0
        layers = try spec.layers.enumerated().map { index, layer in
            try layer.blocks.enumerated().map { position, block in
                if case .sharedTransformer(let use) = block {
                    defer { ordinal += 1 }
                    return .shared(try loader.invocation(use, block: spec.sharedBlocks[use.blockIndex], layer: index,
                                                         ordinal: ordinal))
                }
                return try loader.block(block, layer: index, position: position)
            }
        }
        try source.finish()
    }

    /// The first layer that uses each shared block (its weights are stored under that layer).
    static func firstUses(_ spec: ModelSpec) -> [Int: Int] {
        var first: [Int: Int] = [:]
        for (index, layer) in spec.layers.enumerated() {
            for case .sharedTransformer(let use) in layer.blocks where first[use.blockIndex] == nil {
                first[use.blockIndex] = index
            }
        }
        return first
    }
}

/// Walks a spec's blocks and reads their parameters by Hugging Face name.
struct WeightLoader {
    let source: WeightSource
    let type: ElementType
    let backend: Backend
    let naming: HFNaming
    /// Layers in the model, for the output-projection gain 1 / sqrt(2 x depth).
    let depth: Int
    /// Falcon-H1 multipliers, folded into the weights they scale.
    let multipliers: MuPMultipliers?
    /// Zamba2: the first layer using each shared block.
    let firstUse: [Int: Int]

    var outputGain: Double { 1 / (2 * Double(depth)).squareRoot() }

    func fp32(_ name: String, _ shape: [Int], _ role: WeightRole) throws -> Tensor {
        try source.tensor(name, shape: shape, role: role, type: .fp32, backend: backend)
    }

    /// A stored-type linear weight [outputs, inputs] with an optional fp32 bias. `scale` multiplies weight rows
    /// (and `biasScale` bias entries), to fold constant multipliers into the weights.
    func linear(_ name: String, outputs: Int, inputs: Int, bias: Bool, gain: Double = 1,
                scale: Scale = .none) throws -> Linear {
        let role = WeightRole.linear(fanIn: inputs, gain: gain)
        let weight: Tensor
        if scale.isIdentity {
            weight = try source.tensor(name + ".weight", shape: [outputs, inputs], role: role, type: type,
                                       backend: backend)
        } else {
            var values = try source.values(name + ".weight", shape: [outputs, inputs], role: role)
            for row in 0..<outputs {
                let factor = scale.weight(row)
                for c in 0..<inputs { values[row * inputs + c] *= factor }
            }
            weight = try backend.makeTensor([outputs, inputs], type)
            try backend.upload(values, into: weight)
        }
        var biasTensor: Tensor?
        if bias {
            var values = try source.values(name + ".bias", shape: [outputs], role: .bias)
            for row in 0..<outputs { values[row] *= scale.bias(row) }
            let t = try backend.makeTensor([outputs], .fp32)
            try backend.upload(values, into: t)
            biasTensor = t
        }
        return Linear(weight: weight, rows: nil, bias: biasTensor)
    }

    /// Constant row multipliers folded into a linear layer's weights and bias.
    struct Scale {
        var weight: (Int) -> Float
        var bias: (Int) -> Float
        var isIdentity = false

        static var none: Scale { Scale(weight: { _ in 1 }, bias: { _ in 1 }, isIdentity: true) }
        /// Every row and bias entry times `factor` (a multiplier applied to the layer's output).
        static func output(_ factor: Double?) -> Scale {
            guard let factor, factor != 1 else { return .none }
            return Scale(weight: { _ in Float(factor) }, bias: { _ in Float(factor) })
        }
        /// Weights times `input` (a multiplier on the layer's input), then rows and bias times `output(row)`.
        static func rows(input: Double, output: @escaping (Int) -> Double) -> Scale {
            Scale(weight: { Float(input * output($0)) }, bias: { Float(output($0)) })
        }
    }

    /// Blocks of rows of one fused weight (and bias) as separate linears.
    func fused(_ name: String, parts: [Int], inputs: Int, bias: Bool, gain: Double = 1,
               scale: Scale = .none) throws -> [Linear] {
        let total = parts.reduce(0, +)
        let whole = try linear(name, outputs: total, inputs: inputs, bias: bias, gain: gain, scale: scale)
        var start = 0
        return parts.map { size in
            defer { start += size }
            let range = start..<(start + size)
            let bias = whole.bias.map { $0.reshaped([total, 1]).rows(range).reshaped([size]) }
            return Linear(weight: whole.weight, rows: range, bias: bias)
        }
    }

    func block(_ block: Block, layer: Int, position: Int) throws -> BlockWeights {
        let names = naming.block(block, position: position)
        let prefix = naming.layer(layer)
        let module = prefix + names.module
        let normName = prefix + names.norm
        switch block {
        case .attention(let a):
            return .attention(norm: try fp32(normName, [a.inputSize], .normWeight), try attention(a, module))
        case .mamba1(let m):
            return .mamba1(norm: try fp32(normName, [m.modelSize], .normWeight), try mamba1(m, module))
        case .mamba2(let m):
            return .mamba2(norm: try fp32(normName, [m.modelSize], .normWeight), try mamba2(m, module))
        case .mlp(let m):
            return .mlp(norm: try fp32(normName, [m.inputSize], .normWeight), try mlp(m, module))
        case .moe(let m):
            let router = try linear(module + "router", outputs: m.experts, inputs: m.expert.inputSize, bias: false)
            let experts = try (0..<m.experts).map { try mlp(m.expert, module + "experts.\($0).") }
            return .moe(norm: try fp32(normName, [m.expert.inputSize], .normWeight),
                        MoEWeights(router: router, experts: experts))
        case .parallel(let p):
            return .parallel(norm: try fp32(normName, [p.attention.inputSize], .normWeight),
                             try attention(p.attention, prefix + "self_attn."), try mamba2(p.mamba, prefix + "mamba."))
        case .sharedTransformer:
            throw ScopeError("internal error: shared blocks are loaded by ModelWeights")
        }
    }

    func attention(_ a: AttentionSpec, _ module: String) throws -> AttentionWeights {
        let q, k, v: Linear
        let m = multipliers
        if naming.fusedProjections {
            let parts = try fused(module + "qkv_proj", parts: [a.queryWidth, a.kvWidth, a.kvWidth], inputs: a.inputSize,
                                  bias: a.qkvBias)
            (q, k, v) = (parts[0], parts[1], parts[2])
        } else {
            let input = m?.attentionIn ?? 1
            q = try linear(module + "q_proj", outputs: a.queryWidth, inputs: a.inputSize, bias: a.qkvBias,
                           scale: m == nil ? .none : .rows(input: input) { _ in 1 })
            k = try linear(module + "k_proj", outputs: a.kvWidth, inputs: a.inputSize, bias: a.qkvBias,
                           scale: m.map { mm in .rows(input: input) { _ in mm.key } } ?? .none)
            v = try linear(module + "v_proj", outputs: a.kvWidth, inputs: a.inputSize, bias: a.qkvBias,
                           scale: m == nil ? .none : .rows(input: input) { _ in 1 })
        }
        let o = try linear(module + "o_proj", outputs: a.outputSize, inputs: a.queryWidth, bias: a.outputBias,
                           gain: outputGain, scale: .output(m?.attentionOut))
        return AttentionWeights(q: q, k: k, v: v, o: o,
                                qNorm: a.qkNorm ? try fp32(module + "q_norm.weight", [a.headDim], .normWeight) : nil,
                                kNorm: a.qkNorm ? try fp32(module + "k_norm.weight", [a.headDim], .normWeight) : nil)
    }

    func mlp(_ m: MLPSpec, _ module: String) throws -> MLPWeights {
        let down = try linear(module + "down_proj", outputs: m.outputSize, inputs: m.intermediateSize, bias: m.bias,
                              gain: outputGain, scale: .output(multipliers?.mlp[1]))
        guard m.gated else {
            return MLPWeights(gate: nil, up: try linear(module + "up_proj", outputs: m.intermediateSize,
                                                        inputs: m.inputSize, bias: m.bias), down: down)
        }
        if naming.fusedProjections {
            let parts = try fused(module + "gate_up_proj", parts: [m.intermediateSize, m.intermediateSize],
                                  inputs: m.inputSize, bias: m.bias)
            return MLPWeights(gate: parts[0], up: parts[1], down: down)
        }
        return MLPWeights(gate: try linear(module + "gate_proj", outputs: m.intermediateSize, inputs: m.inputSize,
                                           bias: m.bias, scale: .output(multipliers?.mlp[0])),
                          up: try linear(module + "up_proj", outputs: m.intermediateSize, inputs: m.inputSize,
                                         bias: m.bias),
                          down: down)
    }

    /// Zamba2's shared block `index`, stored under the first layer that uses it.
    func sharedBlock(_ block: SharedTransformerBlock, index: Int) throws -> SharedBlockWeights {
        let prefix = naming.sharedBlock(firstLayer: firstUse[index] ?? 0)
        let a = block.attention, m = block.mlp
        let parts = try fused(prefix + "feed_forward.gate_up_proj", parts: [m.intermediateSize, m.intermediateSize],
                              inputs: m.inputSize, bias: m.bias)
        return SharedBlockWeights(
            inputNorm: try fp32(prefix + "input_layernorm.weight", [a.inputSize], .normWeight),
            attention: try attention(a, prefix + "self_attn."),
            mlpNorm: try fp32(prefix + "pre_ff_layernorm.weight", [m.inputSize], .normWeight),
            mlp: MLPWeights(gate: parts[0], up: parts[1],
                            down: try linear(prefix + "feed_forward.down_proj", outputs: m.outputSize,
                                             inputs: m.intermediateSize, bias: m.bias, gain: outputGain)))
    }

    /// The adapters and output map of the `ordinal`-th use of a shared block, in layer `layer`.
    func invocation(_ use: SharedInvocation, block: SharedTransformerBlock, layer: Int, ordinal: Int) throws
        -> SharedInvocationWeights {
        let prefix = naming.sharedBlock(firstLayer: firstUse[use.blockIndex] ?? layer)
        let a = block.attention
        func adapter(_ list: String, inputs: Int, outputs: Int, rank: Int) throws -> (down: Linear, up: Linear)? {
            guard rank > 0 else { return nil }
            return (try linear(prefix + list + ".\(ordinal).0", outputs: rank, inputs: inputs, bias: false),
                    try linear(prefix + list + ".\(ordinal).1", outputs: outputs, inputs: rank, bias: false))
        }
        let r = use.attentionAdapterRank
        let upWidth = (block.mlp.gated ? 2 : 1) * block.mlp.intermediateSize
        return SharedInvocationWeights(
            qAdapter: try adapter("self_attn.linear_q_adapter_list", inputs: a.inputSize, outputs: a.queryWidth, rank: r),
            kAdapter: try adapter("self_attn.linear_k_adapter_list", inputs: a.inputSize, outputs: a.kvWidth, rank: r),
            vAdapter: try adapter("self_attn.linear_v_adapter_list", inputs: a.inputSize, outputs: a.kvWidth, rank: r),
            mlpAdapter: try adapter("feed_forward.gate_up_proj_adapter_list", inputs: block.mlp.inputSize,
                                    outputs: upWidth, rank: use.mlpAdapterRank),
            output: try linear(naming.layer(layer) + "linear", outputs: use.outputLinearSize,
                               inputs: use.outputLinearSize, bias: false))
    }

    /// -exp(A_log) uploaded as fp32.
    func negativeExp(_ name: String, _ shape: [Int], _ role: WeightRole) throws -> Tensor {
        let values = try source.values(name, shape: shape, role: role).map { -Float.expValue($0) }
        let tensor = try backend.makeTensor(shape, .fp32)
        try backend.upload(values, into: tensor)
        return tensor
    }

    func mamba1(_ m: Mamba1Spec, _ module: String) throws -> Mamba1Weights {
        let inProj = try fused(module + "in_proj", parts: [m.innerSize, m.innerSize], inputs: m.modelSize,
                               bias: m.projBias)
        let xProj = try fused(module + "x_proj", parts: [m.dtRank, m.stateSize, m.stateSize], inputs: m.innerSize,
                              bias: false)
        let norms = m.bcdtNormWeights
        return Mamba1Weights(
            inX: inProj[0], inZ: inProj[1],
            convWeight: try fp32(module + "conv1d.weight", [m.innerSize, m.convKernel],
                                 .convWeight(kernel: m.convKernel)),
            convBias: m.convBias ? try fp32(module + "conv1d.bias", [m.innerSize], .bias) : nil,
            xDt: xProj[0], xB: xProj[1], xC: xProj[2],
            dtProj: Linear(weight: try source.tensor(module + "dt_proj.weight", shape: [m.innerSize, m.dtRank],
                                                     role: .linear(fanIn: m.dtRank, gain: 1), type: type,
                                                     backend: backend),
                           rows: nil, bias: try fp32(module + "dt_proj.bias", [m.innerSize], .dtBias)),
            A: try negativeExp(module + "A_log", [m.innerSize, m.stateSize], .mamba1ALog(stateSize: m.stateSize)),
            D: try fp32(module + "D", [m.innerSize], .skip),
            out: try linear(module + "out_proj", outputs: m.modelSize, inputs: m.innerSize, bias: m.projBias,
                            gain: outputGain),
            dtNorm: norms ? try fp32(module + "dt_layernorm.weight", [m.dtRank], .normWeight) : nil,
            bNorm: norms ? try fp32(module + "b_layernorm.weight", [m.stateSize], .normWeight) : nil,
            cNorm: norms ? try fp32(module + "c_layernorm.weight", [m.stateSize], .normWeight) : nil)
    }

    func mamba2(_ m: Mamba2Spec, _ module: String) throws -> Mamba2Weights {
        var inScale = Scale.none
        if let mu = multipliers {
            let bounds = [m.innerSize, 2 * m.innerSize, 2 * m.innerSize + m.groups * m.stateSize,
                          2 * m.innerSize + 2 * m.groups * m.stateSize]
            inScale = .rows(input: mu.ssmIn) { row in mu.ssm[bounds.firstIndex { row < $0 } ?? 4] }
        }
        let inProj = try fused(module + "in_proj", parts: [m.innerSize, m.convChannels, m.heads], inputs: m.modelSize,
                               bias: m.projBias, scale: inScale)
        return Mamba2Weights(
            inZ: inProj[0], inXBC: inProj[1], inDt: inProj[2],
            convWeight: try fp32(module + "conv1d.weight", [m.convChannels, m.convKernel],
                                 .convWeight(kernel: m.convKernel)),
            convBias: m.convBias ? try fp32(module + "conv1d.bias", [m.convChannels], .bias) : nil,
            dtBias: try fp32(module + "dt_bias", [m.heads], .dtBias),
            A: try negativeExp(module + "A_log", [m.heads], .mamba2ALog),
            D: try fp32(module + "D", [m.heads], .skip),
            gatedNorm: m.gatedNorm ? try fp32(module + "norm.weight", [m.innerSize], .normWeight) : nil,
            out: try linear(module + "out_proj", outputs: m.modelSize, inputs: m.innerSize, bias: m.projBias,
                            gain: outputGain, scale: .output(multipliers?.ssmOut)))
    }
}

extension Float {
    static func expValue(_ x: Float) -> Float { Float(exp(Double(x))) }
}
