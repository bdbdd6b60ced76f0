import ScopeModels

/// How a forward pass is assumed to be executed, where it changes costs or memory.
public struct ExecutionAssumptions: Sendable, Hashable, Codable {
    public enum AttentionMode: String, Sendable, Hashable, Codable, CaseIterable {
        /// Tiled attention with online softmax: no L x L score matrix in memory (FlashAttention-style).
        case fused
        /// Scores and probabilities written to memory in fp32 (eager PyTorch style).
        case materialized
    }
    public var attention: AttentionMode
    /// How a prompt is split into prefill passes (the engine's rule; automatic unless told otherwise).
    public var prefillChunking: PrefillChunking

    public init(attention: AttentionMode = .fused, prefillChunking: PrefillChunking = .automatic) {
        self.attention = attention
        self.prefillChunking = prefillChunking
    }

    /// One line for tables and reports.
    public var summary: String { "attention \(attention.rawValue), \(prefillChunking.summary)" }

    enum CodingKeys: String, CodingKey {
        case attention
        case prefillChunking = "prefillChunk"
    }
}

/// Per-operator FLOPs and bytes of a model's forward pass.
///
/// Prefill of `L` tokens at batch `B` runs every block over `B*L` tokens and ends with the LM head on the last token
/// of each sequence. A decode step runs every block over `B` tokens, attending to a cache of `L` tokens. Bytes count
/// weights once per pass, activations read and written by each operator, and cache traffic; fused kernels are
/// assumed (an operator's intermediates stay on chip) except where `ExecutionAssumptions` says otherwise.
public struct CostModel: Sendable {
    public var spec: ModelSpec
    public var precision: Precision
    public var assumptions: ExecutionAssumptions

    public init(spec: ModelSpec, precision: Precision, assumptions: ExecutionAssumptions = .init()) {
        self.spec = spec
        self.precision = precision
        self.assumptions = assumptions
    }

    /// The passes a prefill of `tokens` per sequence at `batch` is made of: one, or one per chunk where
    /// `assumptions.prefillChunking` splits it.
    public func prefillPasses(tokens: Int, batch: Int = 1) -> [Phase] {
        guard let chunk = assumptions.prefillChunking.chunkTokens(context: tokens, batch: batch) else {
            return [.prefill(tokens: tokens)]
        }
        return stride(from: 0, to: tokens, by: chunk).map { .prefill(tokens: min(chunk, tokens - $0), past: $0) }
    }

    /// All operators of one pass, in execution order.
    public func operators(_ phase: Phase, batch: Int = 1) -> [OperatorCost] {
        var b = OperatorBuilder(precision: precision, assumptions: assumptions, batch: batch, phase: phase)
        let h = spec.hiddenSize
        b.embedding(vocab: spec.vocabSize, hidden: h)
        for (index, layer) in spec.layers.enumerated() {
            b.layer = index
            for (position, block) in layer.blocks.enumerated() {
                let prefix = "layers.\(index).\(block.kindName)"
                b.block(block, prefix: position == 0 ? prefix : prefix + ".\(position)", spec: spec)
            }
        }
        b.layer = nil
        b.finalNormAndHead(vocab: spec.vocabSize, hidden: h)
        return b.ops
    }
}

/// Emits operators for blocks; `tokens` is the number of token rows each operator processes.
struct OperatorBuilder {
    let precision: Precision
    let assumptions: ExecutionAssumptions
    let batch: Int
    let phase: Phase
    var layer: Int?
    var ops: [OperatorCost] = []

    init(precision: Precision, assumptions: ExecutionAssumptions, batch: Int, phase: Phase) {
        self.precision = precision
        self.assumptions = assumptions
        self.batch = batch
        self.phase = phase
    }

    var isDecode: Bool { if case .decode = phase { true } else { false } }
    /// New tokens of the pass (prefill) or length of the cache (decode).
    var length: Int {
        switch phase {
        case .prefill(let t, _): t
        case .decode(let c): c
        }
    }
    /// Tokens already in the cache before a prefill pass.
    var past: Int {
        if case .prefill(_, let p) = phase { return p }
        return 0
    }
    /// Token rows each operator processes.
    var tokens: Double { Double(batch) * (isDecode ? 1 : Double(length)) }
    var act: Double { precision.activations.bytes }
    var cache: Double { precision.cache.bytes }

    mutating func add(_ name: String, _ kind: OperatorKind, flops: Double, read: Double, written: Double) {
        ops.append(OperatorCost(name: name, kind: kind, layer: layer, flops: flops, bytesRead: read,
                                bytesWritten: written))
    }

    // MARK: Building blocks

    mutating func linear(_ name: String, in inSize: Int, out outSize: Int, bias: Bool = false, rows: Double? = nil,
                         kind: OperatorKind = .linear) {
        let t = rows ?? tokens
        let weights = Double(inSize * outSize) * precision.linearWeightBytes
            + (bias ? Double(outSize) * precision.otherWeightBytes : 0)
        add(name, kind, flops: 2 * t * Double(inSize) * Double(outSize) + (bias ? t * Double(outSize) : 0),
            read: weights + t * Double(inSize) * act, written: t * Double(outSize) * act)
    }

    mutating func norm(_ name: String, width: Int, rows: Double? = nil, kind: OperatorKind = .rmsNorm) {
        let t = rows ?? tokens
        let w = Double(width)
        add(name, kind, flops: 4 * t * w, read: t * w * act * (kind == .gatedRMSNorm ? 2 : 1)
                + w * precision.otherWeightBytes,
            written: t * w * act)
    }

    mutating func elementwise(_ name: String, _ kind: OperatorKind, elements: Double, flopsPerElement: Double,
                              inputs: Double) {
        add(name, kind, flops: elements * flopsPerElement, read: inputs * elements * act, written: elements * act)
    }

    mutating func residual(_ prefix: String, width: Int) {
        elementwise(prefix + ".residual_add", .residualAdd, elements: tokens * Double(width), flopsPerElement: 1,
                    inputs: 2)
    }

    // MARK: Model ends

    mutating func embedding(vocab: Int, hidden: Int) {
        add("embedding", .embedding, flops: 0, read: tokens * Double(hidden) * precision.otherWeightBytes,
            written: tokens * Double(hidden) * act)
    }

    mutating func finalNormAndHead(vocab: Int, hidden: Int) {
        let rows = Double(batch)
        norm("final_norm", width: hidden, rows: rows)
        let weights = Double(vocab * hidden) * precision.otherWeightBytes
        add("lm_head", .lmHead, flops: 2 * rows * Double(hidden) * Double(vocab),
            read: weights + rows * Double(hidden) * act, written: rows * Double(vocab) * 4)
    }

    // MARK: Blocks

    mutating func block(_ block: Block, prefix: String, spec: ModelSpec) {
        switch block {
        case .attention(let a):
            norm(prefix + ".norm", width: a.inputSize)
            attention(a, prefix: prefix)
            residual(prefix, width: a.outputSize)
        case .mamba1(let m):
            norm(prefix + ".norm", width: m.modelSize)
            mamba1(m, prefix: prefix)
            residual(prefix, width: m.modelSize)
        case .mamba2(let m):
            norm(prefix + ".norm", width: m.modelSize)
            mamba2(m, prefix: prefix)
            residual(prefix, width: m.modelSize)
        case .mlp(let m):
            norm(prefix + ".norm", width: m.inputSize)
            mlp(m, prefix: prefix)
            residual(prefix, width: m.outputSize)
        case .moe(let m):
            norm(prefix + ".norm", width: m.expert.inputSize)
            moe(m, prefix: prefix)
            residual(prefix, width: m.expert.outputSize)
        case .parallel(let p):
            norm(prefix + ".norm", width: p.attention.inputSize)
            attention(p.attention, prefix: prefix + ".attention")
            mamba2(p.mamba, prefix: prefix + ".mamba")
            elementwise(prefix + ".sum", .residualAdd, elements: tokens * Double(p.attention.outputSize),
                        flopsPerElement: 3, inputs: 2)
            residual(prefix, width: p.attention.outputSize)
        case .sharedTransformer(let use):
            sharedTransformer(spec.sharedBlocks[use.blockIndex], use: use, prefix: prefix)
        }
    }

    mutating func attention(_ a: AttentionSpec, prefix: String, adapterRank: Int = 0) {
        linear(prefix + ".q_proj", in: a.inputSize, out: a.queryWidth, bias: a.qkvBias)
        linear(prefix + ".k_proj", in: a.inputSize, out: a.kvWidth, bias: a.qkvBias)
        linear(prefix + ".v_proj", in: a.inputSize, out: a.kvWidth, bias: a.qkvBias)
        if adapterRank > 0 {
            for (name, width) in [("q", a.queryWidth), ("k", a.kvWidth), ("v", a.kvWidth)] {
                linear(prefix + ".\(name)_adapter_down", in: a.inputSize, out: adapterRank)
                linear(prefix + ".\(name)_adapter_up", in: adapterRank, out: width)
            }
        }
        if a.qkNorm {
            norm(prefix + ".qk_norm", width: a.headDim, rows: tokens * Double(a.heads + a.kvHeads))
        }
        if let rope = a.rope {
            let rotated = tokens * Double((a.heads + a.kvHeads) * rope.rotaryDim)
            add(prefix + ".rope", .rope, flops: 3 * rotated, read: 2 * rotated * act, written: rotated * act)
        }
        if isDecode { attentionDecode(a, prefix: prefix) } else { attentionPrefill(a, prefix: prefix) }
        linear(prefix + ".o_proj", in: a.queryWidth, out: a.outputSize, bias: a.outputBias)
    }

    /// Causal attention over the prompt (after `past` cached tokens); writes the KV cache.
    mutating func attentionPrefill(_ a: AttentionSpec, prefix: String) {
        let L = length
        let pairs = Double(batch) * (Self.causalPairs(length: past + L, window: a.slidingWindow)
            - Self.causalPairs(length: past, window: a.slidingWindow))
        let flops = pairs * Double(a.heads) * (4 * Double(a.headDim) + 5)
        let t = tokens
        let cachedBefore = Double(batch * a.cachedTokens(context: past) * 2 * a.kvWidth) * cache
        var read = t * Double(a.queryWidth + 2 * a.kvWidth) * act + cachedBefore
        var written = t * Double(a.queryWidth) * act
            + Double(batch * min(L, a.cachedTokens(context: past + L)) * 2 * a.kvWidth) * cache
        if assumptions.attention == .materialized {
            // Scores written and read back in fp32, probabilities written and read back: 4 passes over H x pairs.
            let scores = pairs * Double(a.heads) * 4
            read += 2 * scores
            written += 2 * scores
        }
        add(prefix + ".attention", .attentionPrefill, flops: flops, read: read, written: written)
    }

    /// One query per sequence against the cache of `length` tokens, plus writing the new key and value.
    mutating func attentionDecode(_ a: AttentionSpec, prefix: String) {
        let keys = Double(a.cachedTokens(context: length + 1))
        let b = Double(batch)
        let flops = b * keys * Double(a.heads) * (4 * Double(a.headDim) + 5)
        let read = b * keys * Double(2 * a.kvWidth) * cache + b * Double(a.queryWidth + 2 * a.kvWidth) * act
        let written = b * Double(a.queryWidth) * act + b * Double(2 * a.kvWidth) * cache
        add(prefix + ".attention", .attentionDecode, flops: flops, read: read, written: written)
    }

    /// Query-key pairs a causal (optionally windowed) attention evaluates over one sequence of `length`.
    static func causalPairs(length: Int, window: Int?) -> Double {
        guard length > 0 else { return 0 }
        let L = Double(length)
        guard let w = window, w < length else { return L * (L + 1) / 2 }
        let W = Double(w)
        return W * (W + 1) / 2 + (L - W) * W
    }

    mutating func mlp(_ m: MLPSpec, prefix: String, adapterRank: Int = 0) {
        let upWidth = (m.gated ? 2 : 1) * m.intermediateSize
        linear(prefix + (m.gated ? ".gate_up_proj" : ".up_proj"), in: m.inputSize, out: upWidth, bias: m.bias)
        if adapterRank > 0 {
            linear(prefix + ".adapter_down", in: m.inputSize, out: adapterRank)
            linear(prefix + ".adapter_up", in: adapterRank, out: upWidth)
        }
        elementwise(prefix + ".act", .activation, elements: tokens * Double(m.intermediateSize),
                    flopsPerElement: m.gated ? 6 : 5, inputs: m.gated ? 2 : 1)
        linear(prefix + ".down_proj", in: m.intermediateSize, out: m.outputSize, bias: m.bias)
    }

    /// Router, then `topK` experts per token. Weights of every expert that any token selects are read: all of
    /// them once the batch routes at least `experts` token-expert pairs, else one expert per pair.
    mutating func moe(_ m: MoESpec, prefix: String) {
        linear(prefix + ".router", in: m.expert.inputSize, out: m.experts, kind: .router)
        let routed = tokens * Double(m.topK)
        let touched = min(Double(m.experts), routed)
        let e = m.expert
        let upWidth = Double((e.gated ? 2 : 1) * e.intermediateSize)
        let w = precision.linearWeightBytes
        add(prefix + ".experts_up", .linear, flops: 2 * routed * Double(e.inputSize) * upWidth,
            read: touched * Double(e.inputSize) * upWidth * w + routed * Double(e.inputSize) * act,
            written: routed * upWidth * act)
        elementwise(prefix + ".experts_act", .activation, elements: routed * Double(e.intermediateSize),
                    flopsPerElement: e.gated ? 6 : 5, inputs: e.gated ? 2 : 1)
        add(prefix + ".experts_down", .linear, flops: 2 * routed * Double(e.intermediateSize * e.outputSize),
            read: touched * Double(e.intermediateSize * e.outputSize) * w
                + routed * Double(e.intermediateSize) * act,
            written: routed * Double(e.outputSize) * act)
    }

    mutating func mamba1(_ m: Mamba1Spec, prefix: String) {
        let di = Double(m.innerSize), n = Double(m.stateSize), b = Double(batch), t = tokens
        linear(prefix + ".in_proj", in: m.modelSize, out: 2 * m.innerSize, bias: m.projBias)
        conv(prefix, channels: m.innerSize, kernel: m.convKernel)
        linear(prefix + ".x_proj", in: m.innerSize, out: m.dtRank + 2 * m.stateSize)
        linear(prefix + ".dt_proj", in: m.dtRank, out: m.innerSize, bias: true)
        let state = b * di * n * cache
        // Per (token, channel, state): exp, two multiplies for the update, two for the output -> ~9 FLOPs; plus
        // softplus(dt), D skip and the SiLU gate per (token, channel).
        let flops = t * di * n * 9 + t * di * 8
        let inputs = t * (3 * di + 2 * n) * act + di * (n + 1) * precision.otherWeightBytes
        if isDecode {
            add(prefix + ".scan", .selectiveStep, flops: flops, read: inputs + state, written: t * di * act + state)
        } else {
            add(prefix + ".scan", .selectiveScan, flops: flops, read: inputs, written: t * di * act + state)
        }
        linear(prefix + ".out_proj", in: m.innerSize, out: m.modelSize, bias: m.projBias)
    }

    mutating func mamba2(_ m: Mamba2Spec, prefix: String) {
        let p = Double(m.headDim), n = Double(m.stateSize), heads = Double(m.heads), g = Double(m.groups)
        let b = Double(batch), t = tokens, di = Double(m.innerSize)
        linear(prefix + ".in_proj", in: m.modelSize, out: m.inProjSize, bias: m.projBias)
        conv(prefix, channels: m.convChannels, kernel: m.convKernel)
        let state = b * heads * p * n * cache
        let inputs = t * (di + 2 * g * n + heads) * act + 3 * heads * precision.otherWeightBytes
        if isDecode {
            // state = exp(dt A) state + dt B x; y = C state + D x: ~6 FLOPs per state element.
            add(prefix + ".ssd", .ssdStep, flops: b * heads * p * n * 6 + b * di * 3, read: inputs + state,
                written: t * di * act + state)
        } else {
            // Chunked SSD with chunk Q: intra-chunk C B^T (per group) and its product with x (per head), chunk states
            // B^T x, state passing between chunks, and the contribution of states to outputs C h.
            let q = Double(min(m.chunkSize, length))
            let chunks = (Double(length) / q).rounded(.up)
            let flops = t * (heads * (2 * q * p + 4 * n * p + 3 * q) + g * 2 * q * n)
                + b * chunks * heads * p * n * 2
            // Chunk states go through memory once in fp32 (written, then read by the output pass).
            let chunkStates = b * chunks * heads * p * n * 4
            add(prefix + ".ssd", .ssdChunkScan, flops: flops, read: inputs + chunkStates,
                written: t * di * act + chunkStates + state)
        }
        if m.gatedNorm {
            norm(prefix + ".gated_norm", width: m.innerSize, kind: .gatedRMSNorm)
        } else {
            elementwise(prefix + ".gate", .activation, elements: t * di, flopsPerElement: 5, inputs: 2)
        }
        linear(prefix + ".out_proj", in: m.innerSize, out: m.modelSize, bias: m.projBias)
    }

    /// Causal depthwise conv over `channels` (with SiLU), or one step that shifts the conv state.
    mutating func conv(_ prefix: String, channels: Int, kernel: Int) {
        let c = Double(channels), k = Double(kernel), t = tokens
        let weights = c * (k + 1) * precision.otherWeightBytes
        if isDecode {
            let state = Double(batch) * c * (k - 1) * cache
            add(prefix + ".conv", .convStep, flops: t * c * (2 * k + 5), read: weights + t * c * act + state,
                written: t * c * act + state)
        } else {
            add(prefix + ".conv", .conv1d, flops: t * c * (2 * k + 5), read: weights + t * c * act,
                written: t * c * act + Double(batch) * c * (k - 1) * cache)
        }
    }

    mutating func sharedTransformer(_ shared: SharedTransformerBlock, use: SharedInvocation, prefix: String) {
        let a = shared.attention
        elementwise(prefix + ".concat", .concat, elements: tokens * Double(a.inputSize), flopsPerElement: 0,
                    inputs: 1)
        norm(prefix + ".norm", width: a.inputSize)
        attention(a, prefix: prefix + ".attention", adapterRank: use.attentionAdapterRank)
        norm(prefix + ".mlp_norm", width: shared.mlp.inputSize)
        mlp(shared.mlp, prefix: prefix + ".mlp", adapterRank: use.mlpAdapterRank)
        linear(prefix + ".linear", in: use.outputLinearSize, out: use.outputLinearSize)
        elementwise(prefix + ".add_to_input", .residualAdd, elements: tokens * Double(use.outputLinearSize),
                    flopsPerElement: 1, inputs: 2)
    }
}
