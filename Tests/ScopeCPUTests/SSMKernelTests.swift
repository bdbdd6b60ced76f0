import Foundation
import Testing
import ScopeCPU

// Tests of the state-space kernels (Conv1d, SelectiveScan, SSD, GatedNorm) against naive double-precision
// references written straight from the Hugging Face formulas.

/// Largest |a - r| / max(|r|, floor), with floor = 5% of the reference's RMS (so values near zero are judged
/// against the tensor's scale instead of themselves).
fileprivate func ssmRelativeError(_ actual: [Float], _ reference: [Double]) -> Double {
    precondition(actual.count == reference.count)
    guard !reference.isEmpty else { return 0 }
    let rms = (reference.reduce(0) { $0 + $1 * $1 } / Double(reference.count)).squareRoot()
    let floor = max(0.05 * rms, 1e-12)
    var worst = 0.0
    for (a, r) in zip(actual, reference) {
        let e = abs(Double(a) - r) / max(abs(r), floor)
        if !(e <= worst) { worst = e }  // also catches NaN
    }
    return worst
}

fileprivate func ssmRelativeError(_ actual: [Float], _ reference: [Float]) -> Double {
    ssmRelativeError(actual, reference.map(Double.init))
}

fileprivate func ssmSilu(_ x: Double) -> Double { x / (1 + Foundation.exp(-x)) }

fileprivate func ssmSoftplus(_ x: Double) -> Double { x > 20 ? x : Foundation.log1p(Foundation.exp(x)) }

// MARK: - Kernel call wrappers on arrays

fileprivate func ssmRunConv(x: [Float], batch: Int, tokens: Int, channels: Int, kernel: Int, weight: [Float],
                         bias: [Float]?, silu: Bool, state: inout [Float]) -> [Float] {
    var out = [Float](repeating: .nan, count: batch * tokens * channels)
    x.withUnsafeBufferPointer { xp in
        weight.withUnsafeBufferPointer { wp in
            state.withUnsafeMutableBufferPointer { sp in
                out.withUnsafeMutableBufferPointer { op in
                    if let bias {
                        bias.withUnsafeBufferPointer { bp in
                            Conv1d.causal(x: xp.baseAddress!, batch: batch, tokens: tokens, channels: channels,
                                          kernel: kernel, weight: wp.baseAddress!, bias: bp.baseAddress!, silu: silu,
                                          state: sp.baseAddress ?? UnsafeMutablePointer(op.baseAddress!),
                                          out: op.baseAddress!)
                        }
                    } else {
                        Conv1d.causal(x: xp.baseAddress!, batch: batch, tokens: tokens, channels: channels,
                                      kernel: kernel, weight: wp.baseAddress!, bias: nil, silu: silu,
                                      state: sp.baseAddress ?? UnsafeMutablePointer(op.baseAddress!),
                                      out: op.baseAddress!)
                    }
                }
            }
        }
    }
    return out
}

fileprivate struct SSMScanInputs {
    var u, delta, A, B, C, D: [Float]
    var z: [Float]?
    let batch, tokens, dInner, dState: Int
}

fileprivate func ssmRunScan(_ s: SSMScanInputs, state: inout [Float]) -> [Float] {
    var out = [Float](repeating: .nan, count: s.batch * s.tokens * s.dInner)
    let z = s.z ?? []
    s.u.withUnsafeBufferPointer { u in
        s.delta.withUnsafeBufferPointer { d in
            s.A.withUnsafeBufferPointer { a in
                s.B.withUnsafeBufferPointer { b in
                    s.C.withUnsafeBufferPointer { c in
                        s.D.withUnsafeBufferPointer { dd in
                            z.withUnsafeBufferPointer { zp in
                                state.withUnsafeMutableBufferPointer { st in
                                    out.withUnsafeMutableBufferPointer { o in
                                        SelectiveScan.scan(
                                            u: u.baseAddress!, delta: d.baseAddress!, A: a.baseAddress!,
                                            B: b.baseAddress!, C: c.baseAddress!, D: dd.baseAddress!,
                                            z: s.z == nil ? nil : zp.baseAddress!, batch: s.batch, tokens: s.tokens,
                                            dInner: s.dInner, dState: s.dState, state: st.baseAddress!,
                                            out: o.baseAddress!)
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    return out
}

fileprivate struct SSMSSDInputs {
    var x, dt, dtBias, A, B, C, D: [Float]
    var batch, tokens, heads, headDim, groups, dState: Int
    var dtMin: Float = 0
    var dtMax: Float = .infinity

    init(rng: inout SplitMix64, batch: Int, tokens: Int, heads: Int, headDim: Int, groups: Int, dState: Int) {
        self.batch = batch; self.tokens = tokens; self.heads = heads; self.headDim = headDim
        self.groups = groups; self.dState = dState
        x = rng.array(batch * tokens * heads * headDim, -1, 1)
        dt = rng.array(batch * tokens * heads, -3, 1)
        dtBias = rng.array(heads, -0.5, 0.5)
        A = rng.negativeA(heads)
        B = rng.array(batch * tokens * groups * dState, -1, 1)
        C = rng.array(batch * tokens * groups * dState, -1, 1)
        D = rng.array(heads, 0.5, 1.5)
    }

    /// The rows of tokens [t0, t1) of every sequence, as a new input set.
    func slice(_ t0: Int, _ t1: Int) -> SSMSSDInputs {
        var copy = self
        func rows(_ a: [Float], _ width: Int) -> [Float] {
            var r: [Float] = []
            for b in 0..<batch { r += a[(b * tokens + t0) * width..<(b * tokens + t1) * width] }
            return r
        }
        copy.x = rows(x, heads * headDim)
        copy.dt = rows(dt, heads)
        copy.B = rows(B, groups * dState)
        copy.C = rows(C, groups * dState)
        copy.tokens = t1 - t0
        return copy
    }
}

fileprivate func ssmRunSSD(_ s: SSMSSDInputs, chunkSize: Int, state: inout [Float]) -> [Float] {
    var out = [Float](repeating: .nan, count: s.batch * s.tokens * s.heads * s.headDim)
    s.x.withUnsafeBufferPointer { x in
        s.dt.withUnsafeBufferPointer { dt in
            s.dtBias.withUnsafeBufferPointer { bias in
                s.A.withUnsafeBufferPointer { a in
                    s.B.withUnsafeBufferPointer { b in
                        s.C.withUnsafeBufferPointer { c in
                            s.D.withUnsafeBufferPointer { d in
                                state.withUnsafeMutableBufferPointer { st in
                                    out.withUnsafeMutableBufferPointer { o in
                                        SSD.scan(x: x.baseAddress!, dt: dt.baseAddress!, dtBias: bias.baseAddress!,
                                                 A: a.baseAddress!, B: b.baseAddress!, C: c.baseAddress!,
                                                 D: d.baseAddress!, batch: s.batch, tokens: s.tokens,
                                                 heads: s.heads, headDim: s.headDim, groups: s.groups,
                                                 dState: s.dState, chunkSize: chunkSize, dtMin: s.dtMin,
                                                 dtMax: s.dtMax, state: st.baseAddress!, out: o.baseAddress!)
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    return out
}

// MARK: - Double-precision references

fileprivate func ssmReferenceConv(x: [Float], batch: Int, tokens: Int, channels: Int, kernel: Int, weight: [Float],
                               bias: [Float]?, silu: Bool, state: [Float]) -> (out: [Double], state: [Double]) {
    let history = kernel - 1
    var out = [Double](repeating: 0, count: batch * tokens * channels)
    var newState = [Double](repeating: 0, count: batch * history * channels)
    for b in 0..<batch {
        // The full input: the old state's rows followed by the new tokens.
        var seq: [[Double]] = []
        for i in 0..<history { seq.append((0..<channels).map { Double(state[(b * history + i) * channels + $0]) }) }
        for t in 0..<tokens { seq.append((0..<channels).map { Double(x[(b * tokens + t) * channels + $0]) }) }
        for t in 0..<tokens {
            for c in 0..<channels {
                var acc = bias.map { Double($0[c]) } ?? 0
                for j in 0..<kernel { acc += Double(weight[c * kernel + j]) * seq[t + j][c] }
                out[(b * tokens + t) * channels + c] = silu ? ssmSilu(acc) : acc
            }
        }
        for i in 0..<history {
            for c in 0..<channels { newState[(b * history + i) * channels + c] = seq[seq.count - history + i][c] }
        }
    }
    return (out, newState)
}

fileprivate func ssmReferenceScan(_ s: SSMScanInputs, state: [Float]) -> (out: [Double], state: [Double]) {
    var h = state.map(Double.init)
    var out = [Double](repeating: 0, count: s.batch * s.tokens * s.dInner)
    for b in 0..<s.batch {
        for t in 0..<s.tokens {
            let row = b * s.tokens + t
            for c in 0..<s.dInner {
                let i = row * s.dInner + c
                let d = ssmSoftplus(Double(s.delta[i]))
                let u = Double(s.u[i])
                var y = 0.0
                for n in 0..<s.dState {
                    let hi = (b * s.dInner + c) * s.dState + n
                    let dA = Foundation.exp(d * Double(s.A[c * s.dState + n]))
                    h[hi] = dA * h[hi] + d * Double(s.B[row * s.dState + n]) * u
                    y += Double(s.C[row * s.dState + n]) * h[hi]
                }
                y += Double(s.D[c]) * u
                if let z = s.z { y *= ssmSilu(Double(z[i])) }
                out[i] = y
            }
        }
    }
    return (out, h)
}

fileprivate func ssmReferenceSSD(_ s: SSMSSDInputs, state: [Float]) -> (out: [Double], state: [Double]) {
    let p = s.headDim, n = s.dState
    var h = state.map(Double.init)
    var out = [Double](repeating: 0, count: s.batch * s.tokens * s.heads * p)
    for b in 0..<s.batch {
        for t in 0..<s.tokens {
            let row = b * s.tokens + t
            for hd in 0..<s.heads {
                let g = hd / (s.heads / s.groups)
                var step = ssmSoftplus(Double(s.dt[row * s.heads + hd]) + Double(s.dtBias[hd]))
                step = min(max(step, Double(s.dtMin)), Double(s.dtMax))
                let decay = Foundation.exp(step * Double(s.A[hd]))
                for i in 0..<p {
                    let xv = Double(s.x[(row * s.heads + hd) * p + i])
                    var y = 0.0
                    for k in 0..<n {
                        let hi = ((b * s.heads + hd) * p + i) * n + k
                        let bk = Double(s.B[(row * s.groups + g) * n + k])
                        let ck = Double(s.C[(row * s.groups + g) * n + k])
                        h[hi] = decay * h[hi] + step * xv * bk
                        y += h[hi] * ck
                    }
                    out[(row * s.heads + hd) * p + i] = y + Double(s.D[hd]) * xv
                }
            }
        }
    }
    return (out, h)
}

// MARK: - Tests

@Suite("SSMKernel")
struct SSMKernelTests {
    // MARK: Conv1d

    @Test("Conv1d matches the double reference", arguments: [
        // (batch, tokens, channels, kernel, bias, silu)
        (2, 7, 75, 4, true, true),
        (1, 2, 9, 4, false, false),
        (3, 5, 13, 3, true, false),
        (2, 6, 11, 1, true, true),
    ])
    func convReference(config: (Int, Int, Int, Int, Bool, Bool)) {
        let (batch, tokens, channels, kernel, hasBias, silu) = config
        var rng = SplitMix64(seed: UInt64(batch * 1000 + tokens * 100 + channels + kernel))
        let x = rng.array(batch * tokens * channels, -2, 2)
        let weight = rng.array(channels * kernel, -0.8, 0.8)
        let bias = hasBias ? rng.array(channels, -0.3, 0.3) : nil
        var state = rng.array(batch * (kernel - 1) * channels, -2, 2)
        let ref = ssmReferenceConv(x: x, batch: batch, tokens: tokens, channels: channels, kernel: kernel,
                                weight: weight, bias: bias, silu: silu, state: state)
        let out = ssmRunConv(x: x, batch: batch, tokens: tokens, channels: channels, kernel: kernel, weight: weight,
                          bias: bias, silu: silu, state: &state)
        #expect(ssmRelativeError(out, ref.out) < 1e-4)
        #expect(ssmRelativeError(state, ref.state) < 1e-6)
    }

    @Test("Conv1d prefill equals single steps")
    func convPrefillEqualsSteps() {
        let batch = 2, tokens = 11, channels = 29, kernel = 4
        var rng = SplitMix64(seed: 7)
        let x = rng.array(batch * tokens * channels, -2, 2)
        let weight = rng.array(channels * kernel, -0.8, 0.8)
        let bias = rng.array(channels, -0.3, 0.3)
        var prefillState = [Float](repeating: 0, count: batch * (kernel - 1) * channels)
        let prefill = ssmRunConv(x: x, batch: batch, tokens: tokens, channels: channels, kernel: kernel,
                              weight: weight, bias: bias, silu: true, state: &prefillState)
        var stepState = [Float](repeating: 0, count: batch * (kernel - 1) * channels)
        var stepped = [Float](repeating: 0, count: prefill.count)
        for t in 0..<tokens {
            var xt: [Float] = []
            for b in 0..<batch { xt += x[(b * tokens + t) * channels..<(b * tokens + t + 1) * channels] }
            let yt = ssmRunConv(x: xt, batch: batch, tokens: 1, channels: channels, kernel: kernel, weight: weight,
                             bias: bias, silu: true, state: &stepState)
            for b in 0..<batch {
                for c in 0..<channels { stepped[(b * tokens + t) * channels + c] = yt[b * channels + c] }
            }
        }
        #expect(ssmRelativeError(stepped, prefill) < 1e-6)
        #expect(stepState == prefillState)
    }

    // MARK: SelectiveScan

    fileprivate func scanInputs(_ rng: inout SplitMix64, batch: Int, tokens: Int, dInner: Int, dState: Int,
                                gated: Bool) -> SSMScanInputs {
        let rows = batch * tokens
        return SSMScanInputs(
            u: rng.array(rows * dInner, -1, 1), delta: rng.array(rows * dInner, -3, 1),
            A: rng.negativeA(dInner * dState), B: rng.array(rows * dState, -1, 1), C: rng.array(rows * dState, -1, 1),
            D: rng.array(dInner, 0.5, 1.5), z: gated ? rng.array(rows * dInner, -2, 2) : nil,
            batch: batch, tokens: tokens, dInner: dInner, dState: dState)
    }

    @Test("SelectiveScan matches the double reference", arguments: [
        // (batch, tokens, dInner, dState, gated)
        (2, 9, 37, 13, true),
        (1, 12, 20, 16, false),
        (3, 1, 17, 5, true),
    ])
    func scanReference(config: (Int, Int, Int, Int, Bool)) {
        let (batch, tokens, dInner, dState, gated) = config
        var rng = SplitMix64(seed: UInt64(31 * tokens + dInner * 7 + dState))
        let inputs = scanInputs(&rng, batch: batch, tokens: tokens, dInner: dInner, dState: dState, gated: gated)
        var state = rng.array(batch * dInner * dState, -1, 1)
        let ref = ssmReferenceScan(inputs, state: state)
        let out = ssmRunScan(inputs, state: &state)
        #expect(ssmRelativeError(out, ref.out) < 1e-4)
        #expect(ssmRelativeError(state, ref.state) < 1e-4)
    }

    @Test("SelectiveScan softplus covers tiny and thresholded deltas")
    func scanExtremeDelta() {
        var rng = SplitMix64(seed: 99)
        var inputs = scanInputs(&rng, batch: 1, tokens: 6, dInner: 19, dState: 8, gated: false)
        // Softplus from about 3e-7 (log1p of a tiny exp) to beyond the threshold of 20.
        inputs.delta = rng.array(inputs.delta.count, -15, 25)
        inputs.A = inputs.A.map { $0 * 0.01 }
        var state = rng.array(19 * 8, -1, 1)
        let ref = ssmReferenceScan(inputs, state: state)
        let out = ssmRunScan(inputs, state: &state)
        #expect(ssmRelativeError(out, ref.out) < 1e-4)
        #expect(ssmRelativeError(state, ref.state) < 1e-4)
    }

    @Test("SelectiveScan keeps long memory with small steps")
    func scanSlowDecay() {
        var rng = SplitMix64(seed: 2024)
        var inputs = scanInputs(&rng, batch: 2, tokens: 64, dInner: 12, dState: 16, gated: true)
        inputs.delta = rng.array(inputs.delta.count, -7, -3)
        var state = rng.array(2 * 12 * 16, -1, 1)
        let ref = ssmReferenceScan(inputs, state: state)
        let out = ssmRunScan(inputs, state: &state)
        #expect(ssmRelativeError(out, ref.out) < 1e-4)
        #expect(ssmRelativeError(state, ref.state) < 1e-4)
    }

    @Test("SelectiveScan prefill equals single steps")
    func scanPrefillEqualsSteps() {
        let batch = 2, tokens = 10, dInner = 21, dState = 16
        var rng = SplitMix64(seed: 1234)
        let inputs = scanInputs(&rng, batch: batch, tokens: tokens, dInner: dInner, dState: dState, gated: true)
        let initial = rng.array(batch * dInner * dState, -1, 1)
        var prefillState = initial
        let prefill = ssmRunScan(inputs, state: &prefillState)
        var stepState = initial
        var stepped = [Float](repeating: 0, count: prefill.count)
        for t in 0..<tokens {
            func rows(_ a: [Float], _ width: Int) -> [Float] {
                var r: [Float] = []
                for b in 0..<batch { r += a[(b * tokens + t) * width..<(b * tokens + t + 1) * width] }
                return r
            }
            let step = SSMScanInputs(u: rows(inputs.u, dInner), delta: rows(inputs.delta, dInner), A: inputs.A,
                                  B: rows(inputs.B, dState), C: rows(inputs.C, dState), D: inputs.D,
                                  z: rows(inputs.z!, dInner), batch: batch, tokens: 1, dInner: dInner,
                                  dState: dState)
            let y = ssmRunScan(step, state: &stepState)
            for b in 0..<batch {
                for c in 0..<dInner { stepped[(b * tokens + t) * dInner + c] = y[b * dInner + c] }
            }
        }
        #expect(ssmRelativeError(stepped, prefill) < 1e-5)
        #expect(ssmRelativeError(stepState, prefillState) < 1e-5)
    }

    // MARK: SSD

    @Test("SSD chunked matches the recurrence", arguments: [
        // (batch, tokens, heads, headDim, groups, dState, chunkSize)
        (2, 37, 6, 19, 2, 24, 8),    // tokens not divisible by the chunk, groups > 1, 16/8/scalar column tails
        (1, 23, 4, 8, 1, 16, 64),    // one chunk shorter than chunkSize
        (1, 40, 3, 5, 3, 7, 16),     // one head per group, odd sizes
        (2, 13, 4, 16, 4, 8, 1),     // chunk of one token
        (1, 200, 2, 8, 1, 16, 64),   // several chunks: state passing and decay precision
    ])
    func ssdReference(config: (Int, Int, Int, Int, Int, Int, Int)) {
        let (batch, tokens, heads, headDim, groups, dState, chunk) = config
        var rng = SplitMix64(seed: UInt64(tokens * 97 + heads * 13 + headDim * 5 + dState + chunk))
        let inputs = SSMSSDInputs(rng: &rng, batch: batch, tokens: tokens, heads: heads, headDim: headDim,
                               groups: groups, dState: dState)
        var state = rng.array(batch * heads * headDim * dState, -1, 1)
        let ref = ssmReferenceSSD(inputs, state: state)
        let out = ssmRunSSD(inputs, chunkSize: chunk, state: &state)
        #expect(ssmRelativeError(out, ref.out) < 1e-4)
        #expect(ssmRelativeError(state, ref.state) < 1e-4)
    }

    @Test("SSD keeps long memory across many chunks with small steps")
    func ssdSlowDecay() {
        var rng = SplitMix64(seed: 31337)
        var inputs = SSMSSDInputs(rng: &rng, batch: 1, tokens: 150, heads: 4, headDim: 6, groups: 2, dState: 10)
        inputs.dt = rng.array(inputs.dt.count, -7, -3)  // dt about 1e-3 .. 5e-2: the initial state survives
        var state = rng.array(4 * 6 * 10, -1, 1)
        let ref = ssmReferenceSSD(inputs, state: state)
        let out = ssmRunSSD(inputs, chunkSize: 16, state: &state)
        #expect(ssmRelativeError(out, ref.out) < 1e-4)
        #expect(ssmRelativeError(state, ref.state) < 1e-4)
    }

    @Test("SSD single token uses the recurrence and matches the reference")
    func ssdSingleToken() {
        var rng = SplitMix64(seed: 555)
        let inputs = SSMSSDInputs(rng: &rng, batch: 3, tokens: 1, heads: 6, headDim: 11, groups: 3, dState: 20)
        var state = rng.array(3 * 6 * 11 * 20, -1, 1)
        let ref = ssmReferenceSSD(inputs, state: state)
        let out = ssmRunSSD(inputs, chunkSize: 256, state: &state)
        #expect(ssmRelativeError(out, ref.out) < 1e-4)
        #expect(ssmRelativeError(state, ref.state) < 1e-4)
    }

    @Test("SSD time-step limits clamp softplus(dt + bias)")
    func ssdTimeStepLimits() {
        var rng = SplitMix64(seed: 8080)
        var inputs = SSMSSDInputs(rng: &rng, batch: 1, tokens: 21, heads: 4, headDim: 9, groups: 2, dState: 12)
        inputs.dtMin = 0.1
        inputs.dtMax = 0.6
        var state = rng.array(4 * 9 * 12, -1, 1)
        let ref = ssmReferenceSSD(inputs, state: state)
        var stepState = state
        let out = ssmRunSSD(inputs, chunkSize: 8, state: &state)
        #expect(ssmRelativeError(out, ref.out) < 1e-4)
        #expect(ssmRelativeError(state, ref.state) < 1e-4)
        let first = ssmRunSSD(inputs.slice(0, 1), chunkSize: 8, state: &stepState)
        #expect(ssmRelativeError(first, Array(ref.out[0..<(4 * 9)])) < 1e-4)
    }

    @Test("SSD prefill split into two calls equals one call")
    func ssdSplitPrefill() {
        let batch = 2, tokens = 37, heads = 4, headDim = 10, groups = 2, dState = 12, chunk = 8
        var rng = SplitMix64(seed: 4242)
        let inputs = SSMSSDInputs(rng: &rng, batch: batch, tokens: tokens, heads: heads, headDim: headDim,
                               groups: groups, dState: dState)
        let initial = rng.array(batch * heads * headDim * dState, -1, 1)
        var wholeState = initial
        let whole = ssmRunSSD(inputs, chunkSize: chunk, state: &wholeState)

        var splitState = initial
        let first = ssmRunSSD(inputs.slice(0, 13), chunkSize: chunk, state: &splitState)
        let second = ssmRunSSD(inputs.slice(13, tokens), chunkSize: chunk, state: &splitState)
        let width = heads * headDim
        var joined = [Float](repeating: 0, count: whole.count)
        for b in 0..<batch {
            for t in 0..<tokens {
                let src = t < 13 ? first[(b * 13 + t) * width..<(b * 13 + t + 1) * width]
                    : second[(b * (tokens - 13) + t - 13) * width..<(b * (tokens - 13) + t - 12) * width]
                joined.replaceSubrange((b * tokens + t) * width..<(b * tokens + t + 1) * width, with: src)
            }
        }
        #expect(ssmRelativeError(joined, whole) < 1e-4)
        #expect(ssmRelativeError(splitState, wholeState) < 1e-4)
    }

    @Test("SSD prefill then single-token decode continues the recurrence")
    func ssdPrefillThenDecode() {
        let batch = 1, tokens = 19, heads = 4, headDim = 8, groups = 1, dState = 16
        var rng = SplitMix64(seed: 77)
        let inputs = SSMSSDInputs(rng: &rng, batch: batch, tokens: tokens, heads: heads, headDim: headDim,
                               groups: groups, dState: dState)
        let ref = ssmReferenceSSD(inputs, state: [Float](repeating: 0, count: heads * headDim * dState))
        var state = [Float](repeating: 0, count: heads * headDim * dState)
        var out = ssmRunSSD(inputs.slice(0, 16), chunkSize: 8, state: &state)
        for t in 16..<tokens { out += ssmRunSSD(inputs.slice(t, t + 1), chunkSize: 8, state: &state) }
        #expect(ssmRelativeError(out, ref.out) < 1e-4)
        #expect(ssmRelativeError(state, ref.state) < 1e-4)
    }

    // MARK: GatedNorm

    @Test("GatedNorm matches the double reference", arguments: [
        // (rows, cols, groups, normBeforeGate)
        (5, 33, 3, false),
        (5, 33, 3, true),
        (3, 40, 1, false),
        (4, 48, 2, true),
    ])
    func gatedNormReference(config: (Int, Int, Int, Bool)) {
        let (rows, cols, groups, normBeforeGate) = config
        var rng = SplitMix64(seed: UInt64(rows * 100 + cols + groups))
        let x = rng.array(rows * cols, -2, 2)
        let z = rng.array(rows * cols, -3, 3)
        let weight = rng.array(cols, 0.5, 1.5)
        let eps: Float = 1e-5
        var out = [Float](repeating: .nan, count: rows * cols)
        x.withUnsafeBufferPointer { xp in
            z.withUnsafeBufferPointer { zp in
                weight.withUnsafeBufferPointer { wp in
                    out.withUnsafeMutableBufferPointer { op in
                        GatedNorm.apply(x: xp.baseAddress!, z: zp.baseAddress!, rows: rows, cols: cols,
                                        groups: groups, weight: wp.baseAddress!, eps: eps,
                                        normBeforeGate: normBeforeGate, out: op.baseAddress!)
                    }
                }
            }
        }
        let size = cols / groups
        var ref = [Double](repeating: 0, count: rows * cols)
        for r in 0..<rows {
            for g in 0..<groups {
                let range = (r * cols + g * size)..<(r * cols + (g + 1) * size)
                let v = range.map { normBeforeGate ? Double(x[$0]) : Double(x[$0]) * ssmSilu(Double(z[$0])) }
                let meanSquare = v.reduce(0) { $0 + $1 * $1 } / Double(size)
                let scale = 1 / (meanSquare + Double(eps)).squareRoot()
                for (k, i) in range.enumerated() {
                    var y = v[k] * scale * Double(weight[g * size + k])
                    if normBeforeGate { y *= ssmSilu(Double(z[i])) }
                    ref[i] = y
                }
            }
        }
        #expect(ssmRelativeError(out, ref) < 1e-4)
    }
}
