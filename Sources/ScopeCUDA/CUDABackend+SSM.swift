import ScopeEngine
import ScopeSupport

private enum K {
    /// Eight channels a thread by 16-byte accesses, or one; kernel sizes up to 4, or up to 8.
    static func convForward(vectorised: Bool, kernel: Int) -> Kernel {
        Kernel(module: "conv1d", name: "conv1d_forward_v\(vectorised ? 8 : 1)_k\(kernel <= 4 ? 4 : 8)")
    }
    static let convRoll = Kernel(module: "conv1d", name: "conv1d_roll")
    static let convStep = Kernel(module: "conv1d", name: "conv1d_step")
    static func scan(tokensPerLane: Int) -> Kernel {
        Kernel(module: "selective_scan", name: "selective_scan_i\(tokensPerLane)")
    }
    static let stepWithDeltaProjection = Kernel(module: "selective_scan", name: "selective_step_dt")
    static let cb = Kernel(module: "ssd", name: "ssd_chunk_cb")
    static let chunkState = Kernel(module: "ssd", name: "ssd_chunk_state")
    static let statePass = Kernel(module: "ssd", name: "ssd_state_pass")
    static let chunkScan = Kernel(module: "ssd", name: "ssd_chunk_scan")
    static let step = Kernel(module: "ssd", name: "ssd_step")
    static let stepGated = Kernel(module: "ssd", name: "ssd_step_gated")
    static let gatedNorm = Kernel(module: "norms", name: "gated_rmsnorm")
}

extension CUDABackend {
    /// The most parts of a gated step's sums of squares that gemv_presummed takes (four per thread).
    static let presummedParts = 4 * 256

    /// Whether a Mamba-2 decode step of one sequence runs its gated norm inside the step (ssd_step_gated) and the
    /// norm's scale inside the out projection (gemv_presummed); on unless the environment sets
    /// `SSM_SCOPE_CUDA_GATED_STEP=0`.
    static let gatedStep = EnvironmentSwitch.isOn("SSM_SCOPE_CUDA_GATED_STEP")

    /// `gatedStepParts` for this backend: one part per ssd_step_gated block (8 of a head's p), for one sequence
    /// whose row the one-row gemv takes (k a multiple of 8 up to 8192); nil otherwise.
    public static func gatedStepParts(rows: Int, heads: Int, headDim: Int, innerSize: Int) -> Int? {
        let parts = heads * ((headDim + 7) / 8)
        guard gatedStep, rows == 1, heads * headDim == innerSize, innerSize % 8 == 0, innerSize <= 8192,
              (1...presummedParts).contains(parts) else { return nil }
        return parts
    }

    /// Whether Mamba-1's decode step (selective_step_dt) lets the next kernel launch as soon as all its blocks have
    /// started rather than once they have waited for the kernel before (common.cuh's grid_dependents_launch); on
    /// unless the environment sets `SSM_SCOPE_CUDA_EARLY_LAUNCH=0`.
    static let earlyLaunch = EnvironmentSwitch.isOn("SSM_SCOPE_CUDA_EARLY_LAUNCH")
}

/// State-space operators: causal conv1d, Mamba-1 selective scan (and its decode step with dt_proj folded in),
/// Mamba-2 SSD (chunked over 256 tokens on tensor cores; one token, head and state sizes that are not multiples of 8,
/// or sizes whose tiles do not fit in shared memory, by the plain recurrence) and the gated RMSNorm.
extension CUDABackend {
    public func conv1d(_ x: Tensor, weight: Tensor, bias: Tensor?, state: Tensor, batch: Int, tokens: Int, silu: Bool,
                       out: Tensor) throws {
        try conv1d(x, weight: weight, bias: bias, state: state, batch: batch, tokens: tokens, silu: silu,
                   splitInto: [out], columns: [0..<x.columns])
    }

    /// The convolution writes each block of channels straight into its output (one kernel, no split after it).
    public func conv1d(_ x: Tensor, weight: Tensor, bias: Tensor?, state: Tensor, batch: Int, tokens: Int, silu: Bool,
                       splitInto outputs: [Tensor], columns ranges: [Range<Int>]) throws {
        try requireActivations(x, state, in: "conv1d")
        try requireActivations(outputs, in: "conv1d")
        try requireFP32(weight, bias, in: "conv1d parameters")
        let channels = x.columns, kernel = weight.columns
        try check(kernel >= 1 && kernel <= 8 && weight.rows == channels && x.rows == batch * tokens
                  && state.count == batch * (kernel - 1) * channels,
                  "conv1d x \(x.shape), weight \(weight.shape), state \(state.shape) (kernel up to 8)")
        try check(!outputs.isEmpty && outputs.count <= 3 && outputs.count == ranges.count
                  && ranges.first?.lowerBound == 0 && ranges.last?.upperBound == channels
                  && zip(ranges, ranges.dropFirst()).allSatisfy { $0.upperBound == $1.lowerBound }
                  && zip(outputs, ranges).allSatisfy { $0.rows == x.rows && $0.columns == $1.count },
                  "conv1d outputs \(outputs.map(\.shape)) for channel blocks \(ranges) of \(x.shape)")
        guard batch > 0, tokens > 0, channels > 0 else { return }
        if tokens == 1 && outputs.count == 1 {
            try check(batch <= 65535, "conv1d grid too large")
            try launch(K.convStep, grid: ((channels + 127) / 128, batch, 1), block: 128, [
                .tensor(x), .tensor(weight), .tensor(bias), .tensor(state), .tensor(outputs[0]), .int(channels),
                .int(kernel), .int(silu ? 1 : 0)])
            return
        }
        // Each thread takes a run of 64 tokens of 8 adjacent channels where every row access can be one aligned
        // 16-byte access (channel count and block boundaries multiples of 8, 16-byte aligned tensors), of one
        // channel otherwise.
        let chunk = 64
        let vectorised = ([channels] + ranges.map(\.upperBound)).allSatisfy { $0 % 8 == 0 }
            && ([x, state] + outputs).allSatisfy { $0.address % 16 == 0 }
        let grid = ((channels / (vectorised ? 8 : 1) + 63) / 64, (tokens + chunk - 1) / chunk, batch)
        try check(batch <= 65535 && grid.1 <= 65535, "conv1d grid too large")
        let ends = ranges.map(\.upperBound) + Array(repeating: channels, count: 3 - ranges.count)
        let pointers = outputs + Array(repeating: outputs[outputs.count - 1], count: 3 - outputs.count)
        try launch(K.convForward(vectorised: vectorised, kernel: kernel), grid: grid, block: 64, [
            .tensor(x), .tensor(weight), .tensor(bias), .tensor(state), .tensor(pointers[0]), .tensor(pointers[1]),
            .tensor(pointers[2]), .int(ends[0]), .int(ends[1]), .int(tokens), .int(channels), .int(kernel),
            .int(silu ? 1 : 0), .int(chunk)])
        if kernel > 1 {
            try launch(K.convRoll, grid: ((channels + 127) / 128, batch, 1), block: 128, [
                .tensor(x), .tensor(state), .int(tokens), .int(channels), .int(kernel)])
        }
    }

    public func selectiveScan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, z: Tensor?,
                              state: Tensor, batch: Int, tokens: Int, out: Tensor) throws {
        try requireActivations(u, delta, B, C, z, out, in: "selectiveScan")
        try requireFP32(A, D, state, in: "selectiveScan parameters and state")
        let dInner = u.columns, dState = A.columns
        try check(dState <= 128 && A.rows == dInner && B.columns == dState && C.columns == dState
                  && u.rows == batch * tokens && state.count == batch * dInner * dState,
                  "selectiveScan u \(u.shape), A \(A.shape), B \(B.shape), state \(state.shape) (dState up to 128)")
        guard batch > 0, tokens > 0, dInner > 0 else { return }
        try check(batch <= 65535, "selectiveScan grid too large")
        // One block per 16 channels of a sequence walks the whole sequence in tiles of 16 lanes x `perLane` tokens:
        // 16 per lane for prompts, fewer for short inputs and decode steps so that few tokens are padding.
        let perLane = tokens <= 16 ? 1 : tokens <= 64 ? 4 : 16
        let row = perLane == 1 ? 32 : 16 * (perLane >= 8 ? perLane + 4 : perLane) + 4
        let shared = 4 * (5 * 16 * row + 3 * 16 * ((dState + 15) / 16 * 16))
        func aligned(_ tensors: Tensor?...) -> Bool { tensors.allSatisfy { ($0?.address ?? 0) % 16 == 0 } }
        let flags = (dInner % 8 == 0 && aligned(u, delta, z, out) ? 1 : 0)
            | (dState % 8 == 0 && aligned(B, C) ? 2 : 0)
        try launch(K.scan(tokensPerLane: perLane), grid: ((dInner + 15) / 16, batch, 1), block: 256, shared: shared, [
            .tensor(u), .tensor(delta), .tensor(A), .tensor(B), .tensor(C), .tensor(D), .tensor(z), .tensor(state),
            .tensor(out), .int(tokens), .int(dInner), .int(dState), .int(flags)])
    }

    /// The delta projection runs inside the step kernel for decode-sized batches (as many sequences as the gemv
    /// takes): each block reads its channels' weight rows once per sequence.
    public func foldsDeltaProjection(rows: Int) -> Bool { rows <= Self.foldedNormRows }

    /// One kernel, selective_step_dt (half a warp per channel computes its delta, rounded to the activation type as
    /// the projection's output would be, then steps its states), where the projection's weight has the activation
    /// type; the projection and `selectiveScan` otherwise.
    public func selectiveStepWithDeltaProjection(u: Tensor, dt: Tensor, dtProjection: Linear, A: Tensor, B: Tensor,
                                                 C: Tensor, D: Tensor, z: Tensor?, state: Tensor, batch: Int,
                                                 out: Tensor) throws {
        let weight = dtProjection.weight, bias = dtProjection.bias
        guard weight.type == activationType else {
            return try selectiveStepWithDeltaProjectionBySeparateOperators(u: u, dt: dt, dtProjection: dtProjection,
                                                                           A: A, B: B, C: C, D: D, z: z, state: state,
                                                                           batch: batch, out: out)
        }
        try requireActivations(u, dt, B, C, z, out, in: "selective step")
        try requireFP32(A, D, state, bias, in: "selective step parameters, dt bias and state")
        let dInner = u.columns, dState = A.columns, rank = weight.columns
        let range = dtProjection.rows ?? 0..<weight.rows
        try check(dState <= 128 && u.rows == batch && dt.rows == batch && dt.columns == rank
                  && range.count == dInner && range.upperBound <= weight.rows && (bias?.count ?? dInner) == dInner
                  && A.rows == dInner && B.rows == batch && B.columns == dState && C.shape == B.shape
                  && D.count == dInner && (z?.shape ?? u.shape) == u.shape && out.shape == u.shape
                  && state.count == batch * dInner * dState,
                  "selective step u \(u.shape), dt \(dt.shape) x \(weight.shape)[\(range)], A \(A.shape), B "
                  + "\(B.shape), state \(state.shape) (dState up to 128)")
        guard batch > 0, dInner > 0 else { return }
        try check(batch <= 65535, "selective step grid too large")
        let w = CUdeviceptr(weight.address) + CUdeviceptr(range.lowerBound * rank * weight.type.byteSize)
        let vectorRank = rank % 8 == 0 && dt.address % 16 == 0 && w % 16 == 0
        try launch(K.stepWithDeltaProjection, grid: ((dInner + 15) / 16, batch, 1), block: 256, [
            .tensor(u), .tensor(dt), .pointer(w), .tensor(bias), .tensor(A), .tensor(B), .tensor(C), .tensor(D),
            .tensor(z), .tensor(state), .tensor(out), .int(dInner), .int(dState), .int(rank),
            .int(vectorRank ? 1 : 0), .int(Self.earlyLaunch ? 1 : 0)])
    }

    public func gatedStepParts(rows: Int, heads: Int, headDim: Int, innerSize: Int) -> Int? {
        Self.gatedStepParts(rows: rows, heads: heads, headDim: headDim, innerSize: innerSize)
    }

    /// One kernel, ssd_step_gated (ssd_step's recurrence, then the gate and the norm's weight on each output and
    /// each block's sum of squares), where `gatedStepParts` allows it; `ssd` and the host's arithmetic otherwise.
    public func ssdStepGated(x: Tensor, dt: Tensor, dtBias: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor,
                             state: Tensor, batch: Int, heads: Int, headDim: Int, groups: Int, stateSize: Int,
                             dtMin: Float, dtMax: Float, gate: Tensor, normWeight: Tensor, normBeforeGate: Bool,
                             out: Tensor, squares: Tensor) throws {
        guard let parts = gatedStepParts(rows: batch, heads: heads, headDim: headDim, innerSize: out.columns),
              squares.columns == parts else {
            return try ssdStepGatedBySeparateOperators(x: x, dt: dt, dtBias: dtBias, A: A, B: B, C: C, D: D,
                                                       state: state, batch: batch, heads: heads, headDim: headDim,
                                                       groups: groups, stateSize: stateSize, dtMin: dtMin,
                                                       dtMax: dtMax, gate: gate, normWeight: normWeight,
                                                       normBeforeGate: normBeforeGate, out: out, squares: squares)
        }
        guard try checkSSDOperands(x: x, dt: dt, dtBias: dtBias, A: A, B: B, C: C, D: D, state: state, batch: batch,
                                   tokens: 1, heads: heads, headDim: headDim, groups: groups, stateSize: stateSize,
                                   out: out) else { return }
        try requireActivations(gate, in: "ssd gated step gate")
        try requireFP32(normWeight, squares, in: "ssd gated step norm weight and squares")
        let p = headDim, n = stateSize
        try check(gate.count == x.count && normWeight.count == heads * p && squares.rows == batch,
                  "ssd gated step x \(x.shape), gate \(gate.shape), norm weight \(normWeight.shape), squares "
                  + "\(squares.shape)")
        try launch(K.stepGated, grid: ((p + 7) / 8, heads, batch), block: 256, [
            .tensor(x), .tensor(dt), .tensor(dtBias), .tensor(A), .tensor(B), .tensor(C), .tensor(D),
            .tensor(state), .tensor(out), .int(heads), .int(p), .int(groups), .int(n), .float(dtMin),
            .float(dtMax), .tensor(gate), .tensor(normWeight), .int(normBeforeGate ? 1 : 0), .tensor(squares)])
    }

    /// Checks `ssd`'s operands (types and shapes, and a grid the launch can take); false where there is nothing to
    /// compute.
    private func checkSSDOperands(x: Tensor, dt: Tensor, dtBias: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor,
                                  state: Tensor, batch: Int, tokens: Int, heads: Int, headDim p: Int, groups: Int,
                                  stateSize n: Int, out: Tensor) throws -> Bool {
        try requireActivations(x, dt, B, C, out, in: "ssd")
        try requireFP32(dtBias, A, D, state, in: "ssd parameters and state")
        try check(groups >= 1 && heads % groups == 0 && x.count == batch * tokens * heads * p
                  && dt.count == batch * tokens * heads && B.count == batch * tokens * groups * n
                  && C.count == B.count && state.count == batch * heads * p * n && out.count == x.count,
                  "ssd x \(x.shape), dt \(dt.shape), B \(B.shape), state \(state.shape)")
        guard batch > 0, tokens > 0, heads > 0, p > 0 else { return false }
        try check(batch <= 65535 && heads <= 65535, "ssd grid too large")
        return true
    }

    /// Mamba-2 SSD (see `SSD.scan`), chunked over `ssdChunk` tokens whatever `chunkSize` says (the chunk length
    /// changes only rounding). Products take bf16 operands with fp32 accumulation; the state passed between chunks
    /// and returned in `state` stays fp32.
    ///
    /// Scratch is bounded independently of `tokens`: the prompt is walked in super-chunks of
    /// `ssdSuperChunk(batch:)` tokens per sequence (16384 / batch), so at most C = batch x ceil(min(tokens,
    /// 16384 / batch) / 256) chunks (64 for batch <= 64) are in flight, needing C x (groups x 128 KiB (CB, activation
    /// type) + heads x P x N x 6 B (chunk states fp32, incoming states in the activation type) + heads x 4 B).
    /// Mamba-2 1.3B (64 heads, P 64, N 128, 1 group): at most 210 MB, at any prompt length.
    public func ssd(x: Tensor, dt: Tensor, dtBias: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, state: Tensor,
                    batch: Int, tokens: Int, heads: Int, headDim: Int, groups: Int, stateSize: Int, chunkSize: Int,
                    dtMin: Float, dtMax: Float, out: Tensor) throws {
        guard try checkSSDOperands(x: x, dt: dt, dtBias: dtBias, A: A, B: B, C: C, D: D, state: state, batch: batch,
                                   tokens: tokens, heads: heads, headDim: headDim, groups: groups,
                                   stateSize: stateSize, out: out) else { return }
        let p = headDim, n = stateSize
        let common: [KernelArgument] = [.int(heads), .int(p), .int(groups), .int(n), .float(dtMin), .float(dtMax)]
        let q = Self.ssdChunk, nr = (n + 63) / 64 * 64, pTiles = (p + 63) / 64, nTiles = (n + 127) / 128
        // Shared memory (ssd.cu): tiles of the activation type with padded row pitches.
        let cbShared = 2 * 64 * (nr + 8) * 2  // C and B rows of one 64 x 64 tile
        let stateShared = 3 * q * 4 + 2 * 64 * (2 * 72 + 136) * 2  // step, cum, weights; 2 x (x w high, low; B)
        let scanShared = 2 * q * 4 + (q * 64 + 64 * (nr + 32)) * 2  // step, cum; x; incoming state
        let cbPairs = (q / 64) * (q / 64 + 1) / 2  // 64 x 64 tiles on or below the diagonal
        if tokens == 1 || p % 8 != 0 || n % 8 != 0
            || max(cbShared, stateShared, scanShared) > device.sharedMemoryPerBlock {
            try launch(K.step, grid: ((p + 7) / 8, heads, batch), block: 256, [
                .tensor(x), .tensor(dt), .tensor(dtBias), .tensor(A), .tensor(B), .tensor(C), .tensor(D),
                .tensor(state), .tensor(out), .int(tokens)] + common)
            return
        }
        let span = Self.ssdSuperChunk(batch: batch)
        let sizes = Self.ssdScratch(batch: batch, tokens: tokens, heads: heads, headDim: p, groups: groups,
                                    stateSize: n, activation: activationType)
        // Without the zero fill (~210 MB per call for Mamba-2 1.3B): in each super-chunk every scratch element a
        // kernel reads was written before by an earlier kernel of that super-chunk, with the same chunk count in the
        // layout. ssd_chunk_cb writes whole 64 x 64 CB tiles on or below the diagonal (zero rows past the chunk's
        // end included), and ssd_chunk_scan reads row t only at columns s <= (t rounded down to 16) + 15, which lie
        // in such tiles (its diagonal 16 x 16 blocks are read whole, the part above the diagonal then zeroed by a
        // select); ssd_chunk_state
        // writes every state element (p < P, n < N) and every decay of every chunk that ssd_state_pass reads; that
        // pass writes every incoming-state element that ssd_chunk_scan copies (p < P, n < N).
        let cb = try makeOutputTensor([sizes[0].count], sizes[0].type)
        let states = try makeOutputTensor([sizes[1].count], sizes[1].type)
        let incoming = try makeOutputTensor([sizes[2].count], sizes[2].type)
        let decay = try makeOutputTensor([sizes[3].count], sizes[3].type)
        for t0 in stride(from: 0, to: tokens, by: span) {
            let length = min(span, tokens - t0), chunks = (length + q - 1) / q
            let range: [KernelArgument] = [.int(tokens), .int(t0), .int(length)]
            try launch(K.cb, grid: (chunks * cbPairs, groups, batch), block: 128, shared: cbShared, [
                .tensor(B), .tensor(C), .tensor(cb)] + range + [.int(groups), .int(n)])
            try launch(K.chunkState, grid: (chunks * pTiles * nTiles, heads, batch), block: q, shared: stateShared, [
                .tensor(x), .tensor(dt), .tensor(dtBias), .tensor(A), .tensor(B), .tensor(states), .tensor(decay)]
                + range + common)
            try launch(K.statePass, grid: ((p * n / 4 + 255) / 256, heads, batch), block: 256, [
                .tensor(states), .tensor(decay), .tensor(state), .tensor(incoming), .int(chunks), .int(heads),
                .int(p * n)])
            try launch(K.chunkScan, grid: (chunks * pTiles, heads, batch), block: q, shared: scanShared, [
                .tensor(x), .tensor(dt), .tensor(dtBias), .tensor(A), .tensor(C), .tensor(D), .tensor(cb),
                .tensor(incoming), .tensor(out)] + range + common)
        }
    }

    /// Tokens per chunk of the chunked SSD kernels (`SQ` in ssd.cu).
    static let ssdChunk = 256

    /// Tokens of each sequence that one pass of the chunked SSD kernels covers: 16384 / batch, rounded down to whole
    /// chunks, at least one chunk. `ssd` walks longer prompts in such super-chunks, carrying the fp32 state from one
    /// to the next, so that its scratch is bounded independently of the token count.
    /// The scratch tensors of one chunked SSD call (element counts and types of cb, chunk states, incoming states
    /// and decays, alive together); none where the plain recurrence runs (one token, or head and state sizes that
    /// are not multiples of 8). Public so that the allocation probe can stand in for this backend exactly.
    public static func ssdScratch(batch: Int, tokens: Int, heads: Int, headDim p: Int, groups: Int, stateSize n: Int,
                                  activation: ElementType) -> [(count: Int, type: ElementType)] {
        guard tokens > 1, p % 8 == 0, n % 8 == 0 else { return [] }
        let q = ssdChunk, maxChunks = (min(tokens, ssdSuperChunk(batch: batch)) + q - 1) / q
        return [(batch * maxChunks * groups * q * q, activation), (batch * maxChunks * heads * p * n, .fp32),
                (batch * maxChunks * heads * p * n, activation), (batch * heads * maxChunks, .fp32)]
    }

    static func ssdSuperChunk(batch: Int) -> Int {
        max(ssdChunk, 16384 / max(1, batch) / ssdChunk * ssdChunk)
    }

    public func gatedRMSNorm(_ x: Tensor, gate: Tensor, weight: Tensor, groups: Int, eps: Float, normBeforeGate: Bool,
                             out: Tensor) throws {
        try requireActivations(x, gate, out, in: "gatedRMSNorm")
        try requireFP32(weight, in: "gatedRMSNorm weight")
        try check(groups >= 1 && x.columns % groups == 0 && gate.count == x.count && out.count == x.count
                  && weight.count == x.columns && groups <= 65535, "gatedRMSNorm \(x.shape) in \(groups) groups")
        guard x.rows > 0 else { return }
        // Few rows (decode): wide blocks, so that one row's work is spread over many threads.
        try launch(K.gatedNorm, grid: (x.rows, groups, 1), block: x.rows < 64 ? 1024 : 128, [
            .tensor(x), .tensor(gate), .tensor(weight), .float(eps), .int(normBeforeGate ? 1 : 0), .tensor(out),
            .int(x.columns), .int(groups)])
    }
}
