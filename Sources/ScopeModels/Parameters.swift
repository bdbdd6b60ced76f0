/// Parameter counts of a model and its parts, computed from the spec.
public struct ParameterCount: Sendable, Hashable {
    /// Every stored parameter (all experts of MoE layers; shared blocks once).
    public var total: Int
    /// Parameters one token uses (top-k experts of MoE layers).
    public var active: Int
    public var embedding: Int
    public var lmHead: Int
}

extension ModelSpec {
    /// Total and active parameters: embeddings, every block with its pre-norm, shared blocks once, final norm,
    /// and the LM head when it is not tied.
    public var parameters: ParameterCount {
        let embedding = vocabSize * hiddenSize
        let lmHead = tiedEmbeddings ? 0 : vocabSize * hiddenSize
        var total = embedding + lmHead + norm.parameters(width: hiddenSize)
        var active = total
        for layer in layers {
            for block in layer.blocks {
                total += block.parameters(shared: sharedBlocks)
                active += block.activeParameters(shared: sharedBlocks)
            }
        }
        let shared = sharedBlocks.reduce(0) { $0 + $1.attention.parameters + $1.mlp.parameters }
        return ParameterCount(total: total + shared, active: active + shared, embedding: embedding, lmHead: lmHead)
    }
}

extension Block {
    /// Parameters this block owns (for a shared-block invocation: only its adapters and output map).
    public func parameters(shared: [SharedTransformerBlock]) -> Int {
        switch self {
        case .attention(let a): a.parameters
        case .mamba1(let m): m.parameters
        case .mamba2(let m): m.parameters
        case .mlp(let m): m.parameters
        case .moe(let m): m.parameters
        case .parallel(let p): p.norm.parameters(width: p.attention.inputSize) + p.attention.projectionParameters
            + p.mamba.mixerParameters
        case .sharedTransformer(let s): s.ownParameters(block: shared[s.blockIndex])
        }
    }

    /// Parameters one token touches in this block (differs from `parameters` only for MoE).
    public func activeParameters(shared: [SharedTransformerBlock]) -> Int {
        if case .moe(let m) = self { return m.activeParameters }
        return parameters(shared: shared)
    }
}

extension AttentionSpec {
    /// q, k, v and output projections with their biases.
    public var projectionParameters: Int {
        var n = inputSize * (queryWidth + 2 * kvWidth) + queryWidth * outputSize
        if qkvBias { n += queryWidth + 2 * kvWidth }
        if outputBias { n += outputSize }
        if qkNorm { n += 2 * headDim }
        return n
    }
    /// Projections plus the block's pre-norm.
    public var parameters: Int { norm.parameters(width: inputSize) + projectionParameters }
}

extension Mamba1Spec {
    /// in_proj, conv1d, x_proj, dt_proj, A_log, D, out_proj and optional dt/B/C norm weights.
    public var mixerParameters: Int {
        var n = modelSize * 2 * innerSize + (projBias ? 2 * innerSize : 0)
        n += innerSize * convKernel + (convBias ? innerSize : 0)
        n += innerSize * (dtRank + 2 * stateSize)
        n += dtRank * innerSize + innerSize
        n += innerSize * stateSize + innerSize
        n += innerSize * modelSize + (projBias ? modelSize : 0)
        if bcdtNormWeights { n += dtRank + 2 * stateSize }
        return n
    }
    public var parameters: Int { norm.parameters(width: modelSize) + mixerParameters }
}

extension Mamba2Spec {
    /// in_proj, conv1d, dt_bias, A_log, D, gated norm and out_proj.
    public var mixerParameters: Int {
        var n = modelSize * inProjSize + (projBias ? inProjSize : 0)
        n += convChannels * convKernel + (convBias ? convChannels : 0)
        n += 3 * heads
        if gatedNorm { n += innerSize }
        n += innerSize * modelSize + (projBias ? modelSize : 0)
        return n
    }
    public var parameters: Int { norm.parameters(width: modelSize) + mixerParameters }
}

extension MLPSpec {
    /// Up (and gate) and down projections with biases, without the pre-norm.
    public var projectionParameters: Int {
        let upWidth = gated ? 2 * intermediateSize : intermediateSize
        var n = inputSize * upWidth + intermediateSize * outputSize
        if bias { n += upWidth + outputSize }
        return n
    }
    public var parameters: Int { norm.parameters(width: inputSize) + projectionParameters }
}

extension MoESpec {
    public var routerParameters: Int { expert.inputSize * experts }
    public var parameters: Int {
        expert.norm.parameters(width: expert.inputSize) + routerParameters + experts * expert.projectionParameters
    }
    public var activeParameters: Int {
        expert.norm.parameters(width: expert.inputSize) + routerParameters + topK * expert.projectionParameters
    }
}

extension SharedInvocation {
    /// LoRA adapters of this use plus its output linear map; the shared weights are counted once elsewhere.
    public func ownParameters(block: SharedTransformerBlock) -> Int {
        let a = block.attention
        var n = outputLinearSize * outputLinearSize
        if attentionAdapterRank > 0 {
            n += attentionAdapterRank * (3 * a.inputSize + a.queryWidth + 2 * a.kvWidth)
        }
        if mlpAdapterRank > 0 {
            let m = block.mlp
            n += mlpAdapterRank * (m.inputSize + (m.gated ? 2 : 1) * m.intermediateSize)
        }
        return n
    }
}

extension ModelSpec {
    /// Parameters held in linear-layer weight matrices (no biases, norms, convs, SSM parameters or embeddings):
    /// the part that integer weight quantisation shrinks.
    public var linearParameterCount: Int {
        var n = sharedBlocks.reduce(0) { $0 + $1.attention.matrixParameters + $1.mlp.matrixParameters }
        for layer in layers {
            for block in layer.blocks {
                switch block {
                case .attention(let a): n += a.matrixParameters
                case .mamba1(let m):
                    n += m.modelSize * 2 * m.innerSize + m.innerSize * (m.dtRank + 2 * m.stateSize)
                        + m.dtRank * m.innerSize + m.innerSize * m.modelSize
                case .mamba2(let m): n += m.matrixParameters
                case .mlp(let m): n += m.matrixParameters
                case .moe(let m): n += m.routerParameters + m.experts * m.expert.matrixParameters
                case .parallel(let p): n += p.attention.matrixParameters + p.mamba.matrixParameters
                case .sharedTransformer(let s):
                    n += s.ownParameters(block: sharedBlocks[s.blockIndex])
                }
            }
        }
        return n
    }
}

extension AttentionSpec {
    var matrixParameters: Int { inputSize * (queryWidth + 2 * kvWidth) + queryWidth * outputSize }
}

extension Mamba2Spec {
    var matrixParameters: Int { modelSize * inProjSize + innerSize * modelSize }
}

extension MLPSpec {
    var matrixParameters: Int { inputSize * (gated ? 2 : 1) * intermediateSize + intermediateSize * outputSize }
}
