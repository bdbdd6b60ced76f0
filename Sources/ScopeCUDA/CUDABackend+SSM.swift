import ScopeEngine
import ScopeSupport

private enum K {
    static let convForward = Kernel(module: "conv1d", name: "conv1d_forward")
    static let convRoll = Kernel(module: "conv1d", name: "conv1d_roll")
    static func scan(tokensPerLane: Int) -> Kernel {
        Kernel(module: "selective_scan", name: "selective_scan_i\(tokensPerLane)")
    }
    static let cb = Kernel(module: "ssd", name: "ssd_chunk_cb")
    static let chunkState = Kernel(module: "ssd", name: "ssd_chunk_state")
    static let statePass = Kernel(module: "ssd", name: "ssd_state_pass")
    static let chunkScan = Kernel(module: "ssd", name: "ssd_chunk_scan")
    static let step = Kernel(module: "ssd", name: "ssd_step")
    static let gatedNorm = Kernel(module: "norms", name: "gated_rmsnorm")
}

/// State-space operators: causal conv1d, Mamba-1 selective scan, Mamba-2 SSD (chunked over 64 tokens; one token,
/// or head and state sizes that are not multiples of 8, by the plain recurrence) and the gated RMSNorm.
extension CUDABackend {
    public func conv1d(_ x: Tensor, weight: Tensor, bias: Tensor?, state: Tensor, batch: Int, tokens: Int, silu: Bool,
                       out: Tensor) throws {
        try requireActivations(x, state, out, in: "conv1d")
        try requireFP32(weight, bias, in: "conv1d parameters")
        let channels = x.columns, kernel = weight.columns
        try check(kernel >= 1 && kernel <= 8 && weight.rows == channels && x.rows == batch * tokens
                  && out.count == x.count && state.count == batch * (kernel - 1) * channels,
                  "conv1d x \(x.shape), weight \(weight.shape), state \(state.shape) (kernel up to 8)")
        guard batch > 0, tokens > 0, channels > 0 else { return }
        let chunk = 64, blocks = (channels + 127) / 128
        try check(batch <= 65535 && (tokens + chunk - 1) / chunk <= 65535, "conv1d grid too large")
        try launch(K.convForward, grid: (blocks, (tokens + chunk - 1) / chunk, batch), block: 128, [
            .tensor(x), .tensor(weight), .tensor(bias), .tensor(state), .tensor(out), .int(tokens), .int(channels),
            .int(kernel), .int(silu ? 1 : 0), .int(chunk)])
        if kernel > 1 {
            try launch(K.convRoll, grid: (blocks, batch, 1), block: 128, [
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

    public func ssd(x: Tensor, dt: Tensor, dtBias: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, state: Tensor,
                    batch: Int, tokens: Int, heads: Int, headDim: Int, groups: Int, stateSize: Int, chunkSize: Int,
                    dtMin: Float, dtMax: Float, out: Tensor) throws {
        try requireActivations(x, dt, B, C, out, in: "ssd")
        try requireFP32(dtBias, A, D, state, in: "ssd parameters and state")
        let p = headDim, n = stateSize
        try check(groups >= 1 && heads % groups == 0 && x.count == batch * tokens * heads * p
                  && dt.count == batch * tokens * heads && B.count == batch * tokens * groups * n
                  && C.count == B.count && state.count == batch * heads * p * n && out.count == x.count,
                  "ssd x \(x.shape), dt \(dt.shape), B \(B.shape), state \(state.shape)")
        guard batch > 0, tokens > 0, heads > 0, p > 0 else { return }
        try check(batch <= 65535 && heads <= 65535, "ssd grid too large")
        let common: [KernelArgument] = [.int(heads), .int(p), .int(groups), .int(n), .float(dtMin), .float(dtMax)]
        if tokens == 1 || p % 8 != 0 || n % 8 != 0 {
            try launch(K.step, grid: ((p + 7) / 8, heads, batch), block: 256, [
                .tensor(x), .tensor(dt), .tensor(dtBias), .tensor(A), .tensor(B), .tensor(C), .tensor(D),
                .tensor(state), .tensor(out), .int(tokens)] + common)
            return
        }
        let q = 64, chunks = (tokens + q - 1) / q
        let pr = (p + 63) / 64 * 64, nr = (n + 63) / 64 * 64
        func round64(_ v: Int) -> Int { (v + 63) / 64 * 64 }
        let cbShared = 4 * (round64(q * (nr + 1)) + nr * (q + 4))
        let stateShared = 4 * (2 * q + round64(pr * (q + 1)) + q * nr)
        let scanShared = 4 * (2 * q + round64(q * (q + 1)) + q * pr + round64(q * (nr + 1)) + nr * (pr + 4))
        let cb = try scratch(batch * chunks * groups * q * q, .fp32)
        let states = try scratch(batch * chunks * heads * p * n, .fp32)
        let decay = try scratch(batch * heads * chunks, .fp32)
        try launch(K.cb, grid: (chunks, groups, batch), block: 256, shared: cbShared, [
            .tensor(B), .tensor(C), .tensor(cb), .int(tokens), .int(groups), .int(n)])
        try launch(K.chunkState, grid: (chunks, heads, batch), block: 256, shared: stateShared, [
            .tensor(x), .tensor(dt), .tensor(dtBias), .tensor(A), .tensor(B), .tensor(states), .tensor(decay),
            .int(tokens)] + common)
        try launch(K.statePass, grid: ((p * n + 255) / 256, heads, batch), block: 256, shared: 4 * chunks, [
            .tensor(states), .tensor(decay), .tensor(state), .int(chunks), .int(heads), .int(p * n)])
        try launch(K.chunkScan, grid: (chunks, heads, batch), block: 256, shared: scanShared, [
            .tensor(x), .tensor(dt), .tensor(dtBias), .tensor(A), .tensor(C), .tensor(D), .tensor(cb),
            .tensor(states), .tensor(out), .int(tokens)] + common)
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
