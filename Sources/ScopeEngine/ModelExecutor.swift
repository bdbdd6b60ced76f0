#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import ScopeCost
import ScopeModels
import ScopeSupport

/// Runs a `ModelSpec` on a backend: prefill, decode steps and greedy generation, with every operator timed
/// through the backend's `OperatorTimer` under its `OperatorKind`.
///
/// Activations are fp32 and live only for the block that produces them, so the backend's memory high-water mark
/// is weights + cache + the largest block's working set. Falcon-H1's muP multipliers are not applied (the spec
/// does not carry them); everything else follows the Hugging Face implementations.
public final class ModelExecutor {
    public let spec: ModelSpec
    public let weights: ModelWeights
    public let backend: Backend
    private var ropeTables: [RopeKey: (invFreq: [Float], scale: Float)] = [:]
    /// Whether decode steps are recorded once per cache and replayed where the backend can (CUDA graphs); false
    /// issues every operator of every step from the host. Models whose step reads results back to the host
    /// (mixture-of-experts routing) or whose rotary table changes with the length are never recorded.
    public var recordsSteps = true

    public init(spec: ModelSpec, weights: ModelWeights, backend: Backend) {
        self.spec = spec
        self.weights = weights
        self.backend = backend
    }

    /// A fresh cache for `batch` sequences of up to `capacity` tokens.
    public func makeCache(batch: Int, capacity: Int) throws -> InferenceCache {
        try InferenceCache.allocate(spec: spec, batch: batch, capacity: capacity, backend: backend)
    }

    /// Runs the prompts (one per sequence, all the same length) and returns the logits of each one's last token.
    /// `capacity` is the longest context the returned cache will hold (default: the prompt length). `chunking`
    /// splits the prompts into passes that each continue from the cache (by default automatically, so that the
    /// activations of a pass stay bounded however long the prompts are; see `PrefillChunking`).
    public func prefill(_ prompts: [[Int32]], capacity: Int? = nil, chunking: PrefillChunking = .automatic) throws
        -> (logits: [[Float]], cache: InferenceCache) {
        guard let length = prompts.first?.count, length > 0, prompts.allSatisfy({ $0.count == length }) else {
            throw ScopeError("prefill needs one or more prompts of the same, non-zero length")
        }
        try chunking.validate()
        let cache = try makeCache(batch: prompts.count, capacity: max(capacity ?? length, length))
        var logits: [[Float]] = []
        let step = chunking.chunkTokens(context: length, batch: prompts.count) ?? length
        var start = 0
        while start < length {
            let end = min(length, start + step)
            logits = try forward(prompts.map { Array($0[start..<end]) }, cache: cache)
            start = end
        }
        return (logits, cache)
    }

    /// Why the last attempt to record a decode step failed, if one did; steps are then issued operator by operator
    /// (out of memory is thrown instead, as from any operator).
    public private(set) var recordingFailure: String?

    /// Feeds one token per sequence and returns the next logits. The first step of a cache on a backend that can
    /// record steps is recorded, and every step replays that recording (see `recordsSteps`); if recording fails for
    /// any reason but memory, the steps are issued one operator at a time and `recordingFailure` says why.
    public func step(_ tokens: [Int32], cache: InferenceCache) throws -> [[Float]] {
        try lastLogits(try stepLogits(tokens, cache: cache), batch: tokens.count)
    }

    /// `step` followed by greedy decoding's choice: each sequence's next token (`Greedy.argmax` of its logits), chosen
    /// by the backend, so that a GPU reads back token ids rather than whole rows of logits.
    public func stepGreedy(_ tokens: [Int32], cache: InferenceCache) throws -> [Int32] {
        try backend.argmaxRows(try stepLogits(tokens, cache: cache))
    }

    /// One decode step's logits tensor [batch, vocab] (see `step`).
    private func stepLogits(_ tokens: [Int32], cache: InferenceCache) throws -> Tensor {
        guard recordsSteps, recordingFailure == nil, stepIsRecordable, let recorder = backend as? StepRecordingBackend,
              recorder.canRecordSteps, tokens.count == cache.batch,
              cache.length < cache.capacity || cache.kvBytes == 0 else {
            return try forwardLogits(tokens.map { [$0] }, cache: cache)
        }
        if let bad = tokens.first(where: { $0 < 0 || Int($0) >= spec.vocabSize }) {
            throw ScopeError("token id \(bad) outside the vocabulary of \(spec.vocabSize)")
        }
        let inputs = StepInputs(tokens: tokens, past: cache.length)
        if cache.recordedStep == nil {
            do {
                cache.recordedStep = try recorder.recordStep(inputs) {
                    try encode(tokens.map { [$0] }, cache: cache, recording: true)
                }
            } catch let error as OutOfMemory {
                throw error
            } catch {
                recordingFailure = "\(error)"
                return try forwardLogits(tokens.map { [$0] }, cache: cache)
            }
        }
        let logits = try cache.recordedStep!.replay(inputs)
        cache.length += 1
        return logits
    }

    /// True when a decode step's work does not depend on the cached length and reads nothing back to the host.
    private lazy var stepIsRecordable: Bool = {
        let blocks = spec.layers.flatMap(\.blocks)
        if blocks.contains(where: { if case .moe = $0 { true } else { false } }) { return false }
        let attention = blocks.compactMap { block -> AttentionSpec? in
            switch block {
            case .attention(let a): a
            case .parallel(let p): p.attention
            default: nil
            }
        } + spec.sharedBlocks.map(\.attention)
        return !attention.contains { a in
            if case .dynamic? = a.rope?.scaling { true } else { false }
        }
    }()

    /// Greedy decoding of `count` new tokens after `prompt`.
    public func generate(prompt: [Int32], count: Int) throws -> [Int32] {
        var (logits, cache) = try prefill([prompt], capacity: prompt.count + count)
        var output: [Int32] = []
        for i in 0..<count {
            let next = Greedy.argmax(logits[0])
            output.append(next)
            if i + 1 < count { logits = try step([next], cache: cache) }
        }
        return output
    }

    // MARK: The forward pass

    /// One pass over `tokens` (batch x newTokens) after the cache's tokens; returns last-token logits.
    func forward(_ tokens: [[Int32]], cache: InferenceCache) throws -> [[Float]] {
        try lastLogits(try forwardLogits(tokens, cache: cache), batch: tokens.count)
    }

    /// `forward`'s last-token logits as a tensor [batch, vocab].
    private func forwardLogits(_ tokens: [[Int32]], cache: InferenceCache) throws -> Tensor {
        let logits = try encode(tokens, cache: cache, recording: false)
        cache.length += tokens[0].count
        return logits
    }

    /// The logits tensor [batch, vocab] as one array per sequence.
    private func lastLogits(_ logits: Tensor, batch: Int) throws -> [[Float]] {
        let flat = try backend.download(logits)
        return (0..<batch).map { Array(flat[($0 * spec.vocabSize)..<(($0 + 1) * spec.vocabSize)]) }
    }

    /// Queues one pass over `tokens` after the cache's tokens and returns the last-token logits [batch, vocab]; the
    /// cache's length is left to the caller. `recording`: the pass is being recorded as a decode step, so attention
    /// is given its cache even when it is empty (replays run with cached tokens).
    private func encode(_ tokens: [[Int32]], cache: InferenceCache, recording: Bool) throws -> Tensor {
        let batch = tokens.count, newTokens = tokens[0].count, past = cache.length
        guard batch == cache.batch else { throw ScopeError("the cache holds \(cache.batch) sequences, not \(batch)") }
        let pass = Pass(batch: batch, newTokens: newTokens, past: past,
                        positions: (0..<batch).flatMap { _ in (0..<newTokens).map { Int32(past + $0) } },
                        recording: recording)
        let x = try tensor([pass.rows, spec.hiddenSize])
        try timed(.embedding) {
            try backend.embedding(table: weights.embedding, ids: tokens.flatMap { $0 }, out: x)
            if let m = spec.multipliers, m.embedding != 1 { try backend.scale(x, by: Float(m.embedding), out: x) }
        }
        // Zamba2's shared blocks read the original embeddings beside the hidden state.
        var embeddings: Tensor?
        if !spec.sharedBlocks.isEmpty {
            let copy = try tensor(x.shape)
            try timed(.concat) { try backend.gatherRows(x, rows: Array(0..<pass.rows), out: copy) }
            embeddings = copy
        }
        for (index, layer) in spec.layers.enumerated() {
            var sharedOutput: Tensor?
            for (position, block) in layer.blocks.enumerated() {
                let w = weights.layers[index][position], c = cache.blocks[index][position]
                if case .sharedTransformer(let use) = block, case .shared(let sw) = w {
                    sharedOutput = try shared(spec.sharedBlocks[use.blockIndex], weights.shared[use.blockIndex], sw,
                                              x: x, embeddings: embeddings!, kv: c.kv!, pass: pass)
                } else {
                    try run(block, w, c, x: x, extraInput: sharedOutput, pass: pass)
                    sharedOutput = nil
                }
            }
        }
        let last = try tensor([batch, spec.hiddenSize])
        try timed(.residualAdd) {
            try backend.gatherRows(x, rows: (0..<batch).map { $0 * newTokens + newTokens - 1 }, out: last)
        }
        try timed(.rmsNorm) {
            try backend.rmsNorm(last, weight: weights.finalNorm, eps: Float(spec.norm.epsilon), out: last)
        }
        let logits = try tensor([batch, spec.vocabSize])
        try timed(.lmHead) {
            try backend.linear(last, weight: weights.lmHead ?? weights.embedding, rows: nil, bias: nil, out: logits)
            if let m = spec.multipliers, m.lmHead != 1 { try backend.scale(logits, by: Float(m.lmHead), out: logits) }
        }
        return logits
    }

    /// Shape of the current pass.
    struct Pass {
        let batch: Int
        let newTokens: Int
        let past: Int
        /// Absolute position of every row (sequence-major).
        let positions: [Int32]
        /// The pass is being recorded as a decode step.
        let recording: Bool
        var rows: Int { batch * newTokens }
    }

    /// Runs one pre-norm residual block on `x` in place. `extraInput` (Zamba2's shared-block output) is added to
    /// the block's input before its norm, but not to the residual.
    private func run(_ block: Block, _ w: BlockWeights, _ cache: BlockCache, x: Tensor, extraInput: Tensor?,
                     pass: Pass) throws {
        func normed(_ x: Tensor, _ weight: Tensor, _ norm: NormSpec) throws -> Normed {
            guard let extra = extraInput else { return try self.normed(x, weight, norm) }
            let sum = try tensor(x.shape)
            try timed(.residualAdd) { try backend.add(x, extra, out: sum) }
            return try self.normed(sum, weight, norm)
        }
        switch (block, w) {
        case (.attention(let a), .attention(let norm, let aw)):
            let n = try normed(x, norm, a.norm)
            _ = try attention(a, aw, n, cache.kv!, pass, into: x)
        case (.mamba1(let m), .mamba1(let norm, let mw)):
            let n = try normed(x, norm, m.norm)
            _ = try mamba1(m, mw, n, cache, pass, into: x)
        case (.mamba2(let m), .mamba2(let norm, let mw)):
            let n = try normed(x, norm, m.norm)
            _ = try mamba2(m, mw, n, cache, pass, into: x)
        case (.mlp(let m), .mlp(let norm, let mw)):
            let n = try normed(x, norm, m.norm)
            _ = try mlp(m, mw, n, into: x)
        case (.moe(let m), .moe(let norm, let mw)):
            let n = try materialized(try normed(x, norm, m.expert.norm))
            try residual(x, try moe(m, mw, n))
        case (.parallel(let p), .parallel(let norm, let aw, let mw)):
            let n = try normed(x, norm, p.norm)
            let a = try attention(p.attention, aw, n, cache.kv!, pass)
            _ = try mamba2(p.mamba, mw, n, cache, pass, into: a)
            try residual(x, a)
        default:
            throw ScopeError("internal error: weights do not match block \(block.kindName)")
        }
    }

    // MARK: Blocks

    /// Zamba2's shared block: attention over norm(concat(x, embeddings)) with per-use LoRA adapters, then a
    /// gated MLP, with no inner residual; returns the per-use linear map of the result.
    private func shared(_ block: SharedTransformerBlock, _ w: SharedBlockWeights, _ use: SharedInvocationWeights,
                        x: Tensor, embeddings: Tensor, kv: KVCacheLayer, pass: Pass) throws -> Tensor {
        let joined = try tensor([pass.rows, block.attention.inputSize])
        try timed(.concat) { try backend.concatColumns(x, embeddings, out: joined) }
        try timed(.rmsNorm) {
            try backend.rmsNorm(joined, weight: w.inputNorm, eps: Float(block.attention.norm.epsilon), out: joined)
        }
        let adapters = (q: use.qAdapter, k: use.kAdapter, v: use.vAdapter)
        let attended = try attention(block.attention, w.attention, Normed(x: joined, norm: nil), kv, pass,
                                     adapters: adapters)
        let n = try materialized(try self.normed(attended, w.mlpNorm, block.mlp.norm))
        let m = block.mlp
        let gate = try project(n, w.mlp.gate!), up = try project(n, w.mlp.up)
        if let adapter = use.mlpAdapter {
            let low = try project(n, adapter.down)
            let both = try tensor([pass.rows, 2 * m.intermediateSize])
            try timed(.linear) { try backend.linear(low, weight: adapter.up.weight, rows: nil, bias: nil, out: both) }
            let g = try tensor(gate.shape), u = try tensor(up.shape)
            try timed(.concat) {
                try backend.splitColumns(both, [0..<m.intermediateSize, m.intermediateSize..<(2 * m.intermediateSize)],
                                         into: [g, u])
            }
            try timed(.residualAdd) {
                try backend.add(gate, g, out: gate)
                try backend.add(up, u, out: up)
            }
        }
        try timed(.activation) { try backend.gatedActivation(m.activation, gate: gate, up: up, out: up) }
        return try project(try project(up, w.mlp.down), use.output)
    }

    private func attention(_ a: AttentionSpec, _ w: AttentionWeights, _ n: Normed, _ kv: KVCacheLayer,
                           _ pass: Pass,
                           adapters: (q: (down: Linear, up: Linear)?, k: (down: Linear, up: Linear)?,
                                      v: (down: Linear, up: Linear)?) = (nil, nil, nil),
                           into residual: Tensor? = nil) throws -> Tensor {
        let q: Tensor, k: Tensor, v: Tensor
        var qk: Tensor?  // q and k as one row of heads + kvHeads heads, when they are adjacent blocks of one row
        if adapters.q == nil, adapters.k == nil, adapters.v == nil {
            if let (row, parts) = try projectIntoOneRow(n, [w.q, w.k, w.v]) {
                (q, k, v) = (parts[0], parts[1], parts[2])
                qk = row.columnBlock(0..<(q.columns + k.columns))
            } else {
                let qkv = try projectJoined(n, [w.q, w.k, w.v])
                (q, k, v) = (qkv[0], qkv[1], qkv[2])
            }
        } else {
            let input = try materialized(n)
            q = try project(input, w.q, adapter: adapters.q)
            k = try project(input, w.k, adapter: adapters.k)
            v = try project(input, w.v, adapter: adapters.v)
        }
        if let qNorm = w.qNorm, let kNorm = w.kNorm {
            let eps = Float(a.norm.epsilon)
            let qh = q.reshaped([pass.rows * a.heads, a.headDim]), kh = k.reshaped([pass.rows * a.kvHeads, a.headDim])
            try timed(.rmsNorm) {
                try backend.rmsNorm(qh, weight: qNorm, eps: eps, out: qh)
                try backend.rmsNorm(kh, weight: kNorm, eps: eps, out: kh)
            }
        }
        if let rope = a.rope {
            let table = try ropeTable(rope, length: pass.past + pass.newTokens)
            try timed(.rope) {
                if let qk {  // one launch for both
                    try backend.rope(qk, heads: a.heads + a.kvHeads, headDim: a.headDim, rotaryDim: rope.rotaryDim,
                                     positions: pass.positions, invFreq: table.invFreq, scale: table.scale)
                } else {
                    try backend.rope(q, heads: a.heads, headDim: a.headDim, rotaryDim: rope.rotaryDim,
                                     positions: pass.positions, invFreq: table.invFreq, scale: table.scale)
                    try backend.rope(k, heads: a.kvHeads, headDim: a.headDim, rotaryDim: rope.rotaryDim,
                                     positions: pass.positions, invFreq: table.invFreq, scale: table.scale)
                }
            }
        }
        let ringSuffices = a.slidingWindow.map { kv.capacity >= $0 } ?? false
        if !ringSuffices, pass.past + pass.newTokens > kv.capacity {
            throw ScopeError("the KV cache holds \(kv.capacity) tokens; this pass needs \(pass.past + pass.newTokens); "
                + "create the cache with a larger capacity")
        }
        let out = try tensor([pass.rows, a.queryWidth])
        try timed(pass.newTokens == 1 ? .attentionDecode : .attentionPrefill) {
            try backend.attention(q: q, kNew: k, vNew: v, cache: pass.past > 0 || pass.recording ? kv : nil, batch: pass.batch,
                                  newTokens: pass.newTokens, past: pass.past, heads: a.heads, kvHeads: a.kvHeads,
                                  headDim: a.headDim, window: a.slidingWindow,
                                  scale: Float(a.scale), out: out)
            try backend.appendKV(kNew: k, vNew: v, cache: kv, batch: pass.batch, newTokens: pass.newTokens,
                                 past: pass.past)
        }
        return try project(Normed(x: out, norm: nil), w.o, into: residual)
    }

    private func mamba1(_ m: Mamba1Spec, _ w: Mamba1Weights, _ n: Normed, _ cache: BlockCache, _ pass: Pass,
                        into residual: Tensor? = nil) throws -> Tensor {
        let z: Tensor, xc: Tensor
        if let step = try projectWithConvStep(n, [w.inX, w.inZ], convBlock: 0, weight: w.convWeight, bias: w.convBias,
                                              state: cache.conv!, pass: pass) {
            (z, xc) = (step.outputs[1], step.conv)
        } else {
            let xz = try projectJoined(n, [w.inX, w.inZ])
            z = xz[1]
            xc = try tensor([pass.rows, m.innerSize])
            try timed(pass.newTokens == 1 ? .convStep : .conv1d) {
                try backend.conv1d(xz[0], weight: w.convWeight, bias: w.convBias, state: cache.conv!,
                                   batch: pass.batch, tokens: pass.newTokens, silu: true, out: xc)
            }
        }
        let dbc = try projectJoined(Normed(x: xc, norm: nil), [w.xDt, w.xB, w.xC])
        let dt = dbc[0], b = dbc[1], c = dbc[2]
        if m.bcdtNorm || m.bcdtNormWeights {
            let eps = Float(m.bcdtEpsilon)
            try timed(.rmsNorm) {
                try backend.rmsNorm(dt, weight: w.dtNorm, eps: eps, out: dt)
                try backend.rmsNorm(b, weight: w.bNorm, eps: eps, out: b)
                try backend.rmsNorm(c, weight: w.cNorm, eps: eps, out: c)
            }
        }
        let y = try tensor([pass.rows, m.innerSize])
        if pass.newTokens == 1 && backend.foldsDeltaProjection(rows: pass.rows) {
            // dt_proj inside the step, from dt as normalised above where the family normalises it.
            try timed(.selectiveStep) {
                try backend.selectiveStepWithDeltaProjection(u: xc, dt: dt, dtProjection: w.dtProj, A: w.A, B: b, C: c,
                                                             D: w.D, z: z, state: cache.ssm!, batch: pass.batch,
                                                             out: y)
            }
        } else {
            let delta = try project(dt, w.dtProj)
            try timed(pass.newTokens == 1 ? .selectiveStep : .selectiveScan) {
                try backend.selectiveScan(u: xc, delta: delta, A: w.A, B: b, C: c, D: w.D, z: z, state: cache.ssm!,
                                          batch: pass.batch, tokens: pass.newTokens, out: y)
            }
        }
        return try project(Normed(x: y, norm: nil), w.out, into: residual)
    }

    private func mamba2(_ m: Mamba2Spec, _ w: Mamba2Weights, _ n: Normed, _ cache: BlockCache, _ pass: Pass,
                        into residual: Tensor? = nil) throws -> Tensor {
        let groupWidth = m.groups * m.stateSize
        let blocks = [0..<m.innerSize, m.innerSize..<(m.innerSize + groupWidth),
                      (m.innerSize + groupWidth)..<m.convChannels]
        let z: Tensor, dt: Tensor, x: Tensor, b: Tensor, c: Tensor
        if let step = try projectWithConvStep(n, [w.inZ, w.inXBC, w.inDt], convBlock: 1, weight: w.convWeight,
                                              bias: w.convBias, state: cache.conv!, pass: pass) {
            // One row: the column blocks are contiguous, so views of one output need no copy.
            (z, dt) = (step.outputs[0], step.outputs[2])
            (x, b, c) = (step.conv.columnBlock(blocks[0]), step.conv.columnBlock(blocks[1]),
                         step.conv.columnBlock(blocks[2]))
        } else {  // the convolution writes x, B and C apart
            let zxbcdt = try projectJoined(n, [w.inZ, w.inXBC, w.inDt])
            (z, dt) = (zxbcdt[0], zxbcdt[2])
            let xbc = zxbcdt[1]
            x = try tensor([pass.rows, m.innerSize])
            b = try tensor([pass.rows, groupWidth])
            c = try tensor([pass.rows, groupWidth])
            try timed(pass.newTokens == 1 ? .convStep : .conv1d) {
                try backend.conv1d(xbc, weight: w.convWeight, bias: w.convBias, state: cache.conv!, batch: pass.batch,
                                   tokens: pass.newTokens, silu: true, splitInto: [x, b, c], columns: blocks)
            }
        }
        if pass.newTokens == 1, let normWeight = w.gatedNorm, m.normGroups == 1,
           let parts = backend.gatedStepParts(rows: pass.rows, heads: m.heads, headDim: m.headDim,
                                              innerSize: m.innerSize) {
            // The gated norm inside the step, its scale inside the out projection.
            let gated = try tensor([pass.rows, m.innerSize])
            let squares = try backend.makeOutputTensor([pass.rows, parts], .fp32)
            try timed(.ssdStep) {
                try backend.ssdStepGated(x: x, dt: dt, dtBias: w.dtBias, A: w.A, B: b, C: c, D: w.D,
                                         state: cache.ssm!, batch: pass.batch, heads: m.heads, headDim: m.headDim,
                                         groups: m.groups, stateSize: m.stateSize, dtMin: Float(m.timeStepMin),
                                         dtMax: Float(m.timeStepMax), gate: z, normWeight: normWeight,
                                         normBeforeGate: m.normBeforeGate, out: gated, squares: squares)
            }
            let norm = InputNorm.presummedRMS(squares: squares, eps: Float(m.gatedNormEpsilon))
            return try project(Normed(x: gated, norm: norm), w.out, into: residual)
        }
        let y = try tensor([pass.rows, m.innerSize])
        try timed(pass.newTokens == 1 ? .ssdStep : .ssdChunkScan) {
            try backend.ssd(x: x, dt: dt, dtBias: w.dtBias, A: w.A, B: b, C: c, D: w.D, state: cache.ssm!,
                            batch: pass.batch, tokens: pass.newTokens, heads: m.heads, headDim: m.headDim,
                            groups: m.groups, stateSize: m.stateSize, chunkSize: m.chunkSize,
                            dtMin: Float(m.timeStepMin), dtMax: Float(m.timeStepMax), out: y)
        }
        if let normWeight = w.gatedNorm {
            let norm = InputNorm.gatedRMS(gate: z, weight: normWeight, groups: m.normGroups,
                                          eps: Float(m.gatedNormEpsilon), normBeforeGate: m.normBeforeGate)
            if backend.foldsInputNorm(rows: y.rows) {
                return try project(Normed(x: y, norm: norm), w.out, into: residual)
            }
            try timed(.gatedRMSNorm) { try backend.gatedRMSNorm(y, gate: z, weight: normWeight, groups: m.normGroups,
                                                                eps: Float(m.gatedNormEpsilon),
                                                                normBeforeGate: m.normBeforeGate, out: y) }
        } else {
            try timed(.activation) { try backend.gatedActivation(.silu, gate: z, up: y, out: y) }
        }
        return try project(Normed(x: y, norm: nil), w.out, into: residual)
    }

    private func mlp(_ m: MLPSpec, _ w: MLPWeights, _ n: Normed, into residual: Tensor? = nil) throws -> Tensor {
        let up: Tensor
        if let gate = w.gate {
            let gu = try projectJoined(n, [gate, w.up])
            if backend.foldsInputNorm(rows: gu[1].rows) {  // the activation inside the down projection
                return try project(Normed(x: gu[1], norm: .gatedActivation(gate: gu[0], kind: m.activation)), w.down,
                                   into: residual)
            }
            up = gu[1]
            try timed(.activation) { try backend.gatedActivation(m.activation, gate: gu[0], up: up, out: up) }
        } else {
            up = try project(n, w.up, into: nil)
            try timed(.activation) { try backend.activation(m.activation, up, out: up) }
        }
        return try project(Normed(x: up, norm: nil), w.down, into: residual)
    }

    /// Softmax router, top-k experts per token (weights not renormalised, as Jamba does), experts run on the rows
    /// routed to them and summed back with their routing weights.
    private func moe(_ m: MoESpec, _ w: MoEWeights, _ n: Tensor) throws -> Tensor {
        let logits = try backend.download(try project(n, w.router, kind: .router))
        let rows = n.rows
        var assigned = [[(row: Int, weight: Float)]](repeating: [], count: m.experts)
        for r in 0..<rows {
            let scores = Array(logits[(r * m.experts)..<((r + 1) * m.experts)])
            let top = scores.max() ?? 0
            let exps = scores.map { Float.expValue($0 - top) }
            let sum = exps.reduce(0, +)
            let chosen = exps.indices.sorted { exps[$0] != exps[$1] ? exps[$0] > exps[$1] : $0 < $1 }.prefix(m.topK)
            for e in chosen { assigned[e].append((r, exps[e] / sum)) }
        }
        let out = try backend.makeTensor([rows, m.expert.outputSize], backend.activationType)  // summed into
        for (e, routed) in assigned.enumerated() where !routed.isEmpty {
            let input = try tensor([routed.count, m.expert.inputSize])
            try timed(.residualAdd) { try backend.gatherRows(n, rows: routed.map(\.row), out: input) }
            let y = try mlp(m.expert, w.experts[e], Normed(x: input, norm: nil))
            try timed(.residualAdd) {
                try backend.scatterAddRows(y, rows: routed.map(\.row), weights: routed.map(\.weight), out: out)
            }
        }
        return out
    }

    // MARK: Helpers

    /// An activation tensor that the operator receiving it writes in full.
    private func tensor(_ shape: [Int]) throws -> Tensor { try backend.makeOutputTensor(shape, backend.activationType) }

    private func timed<T>(_ kind: OperatorKind, _ body: () throws -> T) throws -> T {
        try backend.measure(kind, body)
    }

    /// A block's normalised input: RMSNorm(x) as its own tensor, or, where the backend folds norms into the
    /// products for this many rows (decode steps on GPUs), x with the norm each projection applies.
    private func normed(_ x: Tensor, _ weight: Tensor, _ norm: NormSpec) throws -> Normed {
        let inputNorm = InputNorm.rms(weight: weight, eps: Float(norm.epsilon))
        if backend.foldsInputNorm(rows: x.rows) { return Normed(x: x, norm: inputNorm) }
        let out = try tensor(x.shape)
        try timed(.rmsNorm) { try backend.rmsNorm(x, weight: weight, eps: Float(norm.epsilon), out: out) }
        return Normed(x: out, norm: nil)
    }

    /// A linear layer's input: `x` as it is (norm nil), or `x` that each projection normalises on the fly.
    struct Normed {
        let x: Tensor
        let norm: InputNorm?
    }

    /// The normalised rows as a tensor of their own.
    private func materialized(_ n: Normed) throws -> Tensor {
        guard let norm = n.norm else { return n.x }
        return try timed(.rmsNorm) { try backend.applyNorm(norm, to: n.x) }
    }

    private func residual(_ x: Tensor, _ y: Tensor) throws {
        try timed(.residualAdd) { try backend.add(x, y, out: x) }
    }

    /// norm(x) W^T (+ bias), or that added to `residual` (which is returned), the norm and the sum folded into the
    /// product where the backend can.
    private func project(_ x: Normed, _ linear: Linear, into residual: Tensor?) throws -> Tensor {
        if residual == nil, x.norm == nil { return try project(x.x, linear) }
        let out = try residual ?? tensor([x.x.rows, linear.outputs])
        try timed(.linear) {
            try backend.fusedLinear(x.x, norm: x.norm, weight: linear.weight, rows: linear.rows, bias: linear.bias,
                                    out: out, accumulate: residual != nil)
        }
        return out
    }

    /// The projections of one input by linears that are adjacent row blocks of one weight without biases, as one
    /// product when the input is a single row (a decode step): its outputs are then column views of one tensor.
    /// Otherwise the backend's `fusedLinears`, one operator over the separate weights where it can.
    private func projectJoined(_ x: Normed, _ linears: [Linear]) throws -> [Tensor] {
        if let (_, parts) = try projectIntoOneRow(x, linears) { return parts }
        let outs = try linears.map { try tensor([x.x.rows, $0.outputs]) }
        try timed(.linear) { try backend.fusedLinears(x.x, norm: x.norm, Array(zip(linears, outs))) }
        return outs
    }

    /// A one-row input's projections as adjacent column blocks of one output row: one product for adjacent row
    /// blocks of one weight, `fusedLinears` into the blocks otherwise. Nil for inputs of more rows.
    private func projectIntoOneRow(_ x: Normed, _ linears: [Linear]) throws -> (row: Tensor, parts: [Tensor])? {
        guard x.x.rows == 1 else { return nil }
        if let (joined, columns) = joinedLinear(linears) {
            let out = try project(x, joined, into: nil)
            return (out, columns.map { out.columnBlock($0) })
        }
        var columns: [Range<Int>] = []
        for linear in linears {
            let start = columns.last?.upperBound ?? 0
            columns.append(start..<(start + linear.outputs))
        }
        let row = try tensor([1, columns.last?.upperBound ?? 0]), parts = columns.map { row.columnBlock($0) }
        try timed(.linear) { try backend.fusedLinears(x.x, norm: x.norm, Array(zip(linears, parts))) }
        return (row, parts)
    }

    /// Linears that are adjacent row blocks of one weight without biases as one linear, with each one's columns in
    /// its output; nil otherwise.
    private func joinedLinear(_ linears: [Linear]) -> (Linear, [Range<Int>])? {
        guard let first = linears.first, linears.allSatisfy({ $0.weight === first.weight && $0.bias == nil }) else {
            return nil
        }
        let ranges = linears.map { $0.rows ?? 0..<$0.weight.shape[0] }
        guard zip(ranges, ranges.dropFirst()).allSatisfy({ $0.upperBound == $1.lowerBound }),
              let lower = ranges.first?.lowerBound, let upper = ranges.last?.upperBound else { return nil }
        return (Linear(weight: first.weight, rows: lower..<upper, bias: nil),
                ranges.map { ($0.lowerBound - lower)..<($0.upperBound - lower) })
    }

    /// A one-row decode step's input projection by adjacent blocks of one weight together with the causal conv step
    /// of block `convBlock`'s output, as one operator of a backend that folds the conv into the product: column views
    /// of the projection and the conv's output. Nil where the backend does not fold it, the step is not one row or
    /// the blocks are not one weight's.
    private func projectWithConvStep(_ x: Normed, _ linears: [Linear], convBlock: Int, weight: Tensor, bias: Tensor?,
                                     state: Tensor, pass: Pass) throws -> (outputs: [Tensor], conv: Tensor)? {
        guard pass.rows == 1, pass.newTokens == 1, backend.foldsConvStep(rows: 1),
              let (joined, columns) = joinedLinear(linears) else { return nil }
        let out = try tensor([1, joined.outputs]), conv = try tensor([1, columns[convBlock].count])
        try timed(.linear) {
            try backend.linearThenConvStep(x.x, norm: x.norm, joined, out: out, convColumns: columns[convBlock],
                                           convWeight: weight, convBias: bias, convState: state, silu: true,
                                           convOut: conv)
        }
        return (columns.map { out.columnBlock($0) }, conv)
    }

    /// x W^T (+ bias), plus a LoRA adapter's up(down(x)) when one is given.
    private func project(_ x: Tensor, _ linear: Linear, kind: OperatorKind = .linear,
                         adapter: (down: Linear, up: Linear)? = nil) throws -> Tensor {
        let out = try tensor([x.rows, linear.outputs])
        try timed(kind) { try backend.linear(x, weight: linear.weight, rows: linear.rows, bias: linear.bias, out: out) }
        if let adapter {
            let delta = try project(try project(x, adapter.down), adapter.up)
            try timed(.residualAdd) { try backend.add(out, delta, out: out) }
        }
        return out
    }

    private struct RopeKey: Hashable {
        let rope: RopeSpec
        let length: Int
    }

    private func ropeTable(_ rope: RopeSpec, length: Int) throws -> (invFreq: [Float], scale: Float) {
        // Only dynamic scaling depends on the length; key the others by 0.
        var dependsOnLength = false
        if case .dynamic = rope.scaling { dependsOnLength = true }
        let key = RopeKey(rope: rope, length: dependsOnLength ? length : 0)
        if let table = ropeTables[key] { return table }
        let table = try RopeFrequencies.compute(rope, sequenceLength: length, maxTrained: spec.maxTrainedContext)
        ropeTables[key] = table
        return table
    }
}
