import ScopeModels

/// Memory a model needs, by part, in bytes.
public struct MemoryFootprint: Sendable, Hashable, Codable {
    public var weights: Double
    public var kvCache: Double
    public var convState: Double
    public var ssmState: Double
    /// Largest set of transient tensors alive at once during the pass (see `MemoryModel`).
    public var activations: Double

    public var cache: Double { kvCache + convState + ssmState }
    public var total: Double { weights + cache + activations }
}

/// Weights, caches and peak activations of a model under a precision and execution assumptions.
///
/// Activations: the residual stream (plus the original embeddings for Zamba2) for the tokens of one pass, plus the
/// largest working set of any single block (its normalised input and every intermediate it produces, as an
/// unfused implementation holds them), plus fp32 logits for the last token. With materialised attention the
/// fp32 score matrix of one layer (heads x queries x keys) is added. Chunked prefill bounds the tokens of a pass,
/// following the engine's rule (`PrefillChunking`, automatic by default).
public struct MemoryModel: Sendable {
    public var spec: ModelSpec
    public var precision: Precision
    public var assumptions: ExecutionAssumptions

    public init(spec: ModelSpec, precision: Precision, assumptions: ExecutionAssumptions = .init()) {
        self.spec = spec
        self.precision = precision
        self.assumptions = assumptions
    }

    /// Bytes of all parameters: linear layers at the weight type, embeddings and the rest at `otherWeightBytes`.
    public var weightBytes: Double {
        let counts = spec.parameters
        let embedded = Double(counts.embedding + counts.lmHead)
        let linear = Double(spec.linearParameterCount)
        let other = Double(counts.total) - embedded - linear
        return linear * precision.linearWeightBytes + (embedded + other) * precision.otherWeightBytes
    }

    /// KV cache bytes for `batch` sequences of `context` tokens (sliding-window layers keep only their window).
    public func kvCacheBytes(context: Int, batch: Int = 1) -> Double {
        spec.attentionInstances.reduce(0) { sum, a in
            sum + Double(batch * a.cachedTokens(context: context) * 2 * a.kvWidth) * precision.cache.bytes
        }
    }

    /// Conv state (the last `convKernel - 1` inputs of each channel) of every SSM mixer.
    public func convStateBytes(batch: Int = 1) -> Double {
        ssmMixers.reduce(0) { sum, mixer in
            switch mixer {
            case .one(let m): sum + Double(batch * m.innerSize * (m.convKernel - 1)) * precision.cache.bytes
            case .two(let m): sum + Double(batch * m.convChannels * (m.convKernel - 1)) * precision.cache.bytes
            }
        }
    }

    /// Recurrent SSM state of every mixer: innerSize x stateSize (Mamba-1) or heads x headDim x stateSize (Mamba-2).
    public func ssmStateBytes(batch: Int = 1) -> Double {
        ssmMixers.reduce(0) { sum, mixer in
            switch mixer {
            case .one(let m): sum + Double(batch * m.innerSize * m.stateSize) * precision.cache.bytes
            case .two(let m): sum + Double(batch * m.heads * m.headDim * m.stateSize) * precision.cache.bytes
            }
        }
    }

    /// Peak memory of a prefill of `context` tokens, by part.
    public func prefill(context: Int, batch: Int = 1) -> MemoryFootprint {
        let passTokens = assumptions.prefillChunking.chunkTokens(context: context, batch: batch) ?? context
        return MemoryFootprint(weights: weightBytes, kvCache: kvCacheBytes(context: context, batch: batch),
                               convState: convStateBytes(batch: batch), ssmState: ssmStateBytes(batch: batch),
                               activations: activationBytes(passTokens: passTokens, keys: context, batch: batch))
    }

    /// Memory of a decode step with `context` tokens in the cache, by part.
    public func decode(context: Int, batch: Int = 1) -> MemoryFootprint {
        MemoryFootprint(weights: weightBytes, kvCache: kvCacheBytes(context: context + 1, batch: batch),
                        convState: convStateBytes(batch: batch), ssmState: ssmStateBytes(batch: batch),
                        activations: activationBytes(passTokens: 1, keys: context + 1, batch: batch))
    }

    /// Transient bytes of a pass over `passTokens` tokens per sequence that attends to `keys` keys.
    public func activationBytes(passTokens: Int, keys: Int, batch: Int) -> Double {
        let t = Double(batch * passTokens)
        let a = precision.activations.bytes
        let h = Double(spec.hiddenSize)
        let zamba = spec.sharedBlocks.isEmpty ? 0.0 : 1.0
        let stream = t * h * a * (2 + zamba)
        var largest = 0.0
        for layer in spec.layers {
            for block in layer.blocks {
                largest = max(largest, blockWorkingSet(block, tokens: t, keys: keys, batch: batch))
            }
        }
        let logits = Double(batch * spec.vocabSize) * 4
        return stream + largest + logits
    }

    private func blockWorkingSet(_ block: Block, tokens t: Double, keys: Int, batch: Int) -> Double {
        let a = precision.activations.bytes
        switch block {
        case .attention(let s): return attentionSet(s, tokens: t, keys: keys, batch: batch)
        case .mamba1(let m):
            let di = Double(m.innerSize)
            return t * a * (Double(m.modelSize) + 2 * di + di + Double(m.dtRank + 2 * m.stateSize) + di + di)
        case .mamba2(let m): return mamba2Set(m, tokens: t, batch: batch)
        case .mlp(let m): return mlpSet(m, tokens: t)
        case .moe(let m):
            let routed = t * Double(m.topK)
            let e = m.expert
            return t * a * Double(e.inputSize + m.experts)
                + routed * a * Double((e.gated ? 3 : 2) * e.intermediateSize + e.outputSize)
        case .parallel(let p):
            return attentionSet(p.attention, tokens: t, keys: keys, batch: batch)
                + mamba2Set(p.mamba, tokens: t, batch: batch)
        case .sharedTransformer(let use):
            let shared = spec.sharedBlocks[use.blockIndex]
            let concat = t * Double(shared.attention.inputSize) * a
            return concat + max(attentionSet(shared.attention, tokens: t, keys: keys, batch: batch),
                                mlpSet(shared.mlp, tokens: t))
        }
    }

    private func attentionSet(_ s: AttentionSpec, tokens t: Double, keys: Int, batch: Int) -> Double {
        let a = precision.activations.bytes
        var bytes = t * a * Double(s.inputSize + 2 * s.queryWidth + 2 * s.kvWidth)
        if assumptions.attention == .materialized {
            let queries = t / Double(batch)
            let visible = Double(s.cachedTokens(context: keys))
            bytes += Double(batch * s.heads) * queries * visible * 4
        }
        return bytes
    }

    private func mamba2Set(_ m: Mamba2Spec, tokens t: Double, batch: Int) -> Double {
        let a = precision.activations.bytes
        let chunks = (t / Double(batch) / Double(m.chunkSize)).rounded(.up)
        let chunkStates = Double(batch) * chunks * Double(m.heads * m.headDim * m.stateSize) * 4
        return t * a * Double(m.modelSize + m.inProjSize + m.convChannels + 2 * m.innerSize) + chunkStates
    }

    private func mlpSet(_ m: MLPSpec, tokens t: Double) -> Double {
        t * precision.activations.bytes * Double(m.inputSize + (m.gated ? 3 : 2) * m.intermediateSize)
    }

    private enum Mixer { case one(Mamba1Spec), two(Mamba2Spec) }

    private var ssmMixers: [Mixer] {
        spec.layers.flatMap { layer in
            layer.blocks.compactMap { block -> Mixer? in
                switch block {
                case .mamba1(let m): .one(m)
                case .mamba2(let m): .two(m)
                case .parallel(let p): .two(p.mamba)
                default: nil
                }
            }
        }
    }
}
