#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Mamba-2 state-space duality (the SSM part of Hugging Face `Mamba2Mixer.torch_forward`, shared by Bamba, Zamba2,
/// Nemotron-H and Falcon-H1).
public enum SSD {
    /// Mamba-2 state-space duality over `tokens` new tokens per sequence, continuing from `state`
    /// [batch, heads, headDim, dState].
    ///
    /// - Parameters:
    ///   - x: [batch * tokens, heads * headDim].
    ///   - dt: [batch * tokens, heads], raw (before dt_bias and softplus).
    ///   - dtBias: [heads].
    ///   - A: [heads], already negative (= -exp(A_log)).
    ///   - B: [batch * tokens, groups * dState]; head h uses group h / (heads / groups).
    ///   - C: [batch * tokens, groups * dState].
    ///   - D: [heads].
    ///   - chunkSize: chunk length of the chunked algorithm (chunks aligned to the start of this call).
    ///   - dtMin: lower clamp of softplus(dt + dtBias) (HF `time_step_limit[0]`; 0 for none).
    ///   - dtMax: upper clamp (HF `time_step_limit[1]`; `.infinity` for none).
    ///   - state: [batch, heads, headDim, dState]; the initial state on entry, the final state on return.
    ///   - out: [batch * tokens, heads * headDim], y = SSM(x) + D * x (no gating).
    ///
    /// Recurrence: h_t = exp(dt_t A) h_{t-1} + dt_t * x_t (outer) B_t; y_t = h_t . C_t + D x_t.
    /// With more than one token the chunked SSD form is used: inside a chunk the masked quadratic form
    /// (C B^T scaled by L = exp(segsum(dt A))) applied to dt x, chunk states from B^T (decayed dt x), state passing
    /// across chunks and the states' contribution C h. One token uses the plain recurrence. Work is split over
    /// (batch, head); scratch memory per worker is O(chunkSize^2 + chunkSize * (dState + headDim) + headDim * dState).
    public static func scan(x: UnsafePointer<Float>, dt: UnsafePointer<Float>, dtBias: UnsafePointer<Float>,
                            A: UnsafePointer<Float>, B: UnsafePointer<Float>, C: UnsafePointer<Float>,
                            D: UnsafePointer<Float>, batch: Int, tokens: Int, heads: Int, headDim: Int, groups: Int,
                            dState: Int, chunkSize: Int, dtMin: Float, dtMax: Float,
                            state: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>) {
        precondition(groups >= 1 && heads % groups == 0, "SSD.scan: heads must be a multiple of groups")
        precondition(chunkSize >= 1, "SSD.scan: chunkSize must be positive")
        guard batch > 0, tokens > 0, heads > 0, headDim > 0 else { return }
        let shape = Shape(tokens: tokens, heads: heads, headDim: headDim, groups: groups, dState: dState,
                          chunk: min(chunkSize, tokens), dtMin: dtMin, dtMax: dtMax)
        let items = batch * heads
        let workPerItem = max(1, tokens * headDim * max(1, dState) * (tokens == 1 ? 3 : 8))
        let minimum = max(1, 65_536 / workPerItem)

        if tokens == 1 {
            Parallel.forRanges(items, minimumPerTask: minimum) { range in
                for item in range {
                    recurrence(x: x, dt: dt, dtBias: dtBias, A: A, B: B, C: C, D: D, b: item / heads,
                               h: item % heads, shape: shape, state: state, out: out)
                }
            }
            return
        }

        Parallel.forRanges(items, minimumPerTask: minimum) { range in
            let scratch = Scratch(shape)
            defer { scratch.deallocate() }
            var item = range.lowerBound
            while item < range.upperBound {
                let b = item / heads
                let h0 = item % heads
                let h1 = min(heads, h0 + (range.upperBound - item))
                var start = 0
                while start < tokens {
                    let length = min(shape.chunk, tokens - start)
                    var cachedGroup = -1
                    for h in h0..<h1 {
                        let g = h / (heads / groups)
                        if g != cachedGroup {
                            groupProducts(B: B, C: C, b: b, g: g, start: start, length: length, shape: shape,
                                          scratch: scratch)
                            cachedGroup = g
                        }
                        chunkHead(x: x, dt: dt, dtBias: dtBias, A: A, C: C, D: D, b: b, h: h, g: g, start: start,
                                  length: length, shape: shape, scratch: scratch, state: state, out: out)
                    }
                    start += length
                }
                item += h1 - h0
            }
        }
    }

    // MARK: - Shapes and scratch

    private struct Shape {
        let tokens: Int, heads: Int, headDim: Int, groups: Int, dState: Int, chunk: Int
        let dtMin: Float, dtMax: Float
        var xStride: Int { heads * headDim }
        var bcStride: Int { groups * dState }
        var headsPerGroup: Int { heads / groups }

        /// clamp(softplus(raw + bias), dtMin, dtMax), as torch.clamp(min, max).
        @inline(__always)
        func timeStep(_ raw: Float) -> Float {
            min(max(SSMMath.softplus(raw), dtMin), dtMax)
        }
    }

    /// Per-worker buffers, bounded by the chunk length and one head's state.
    private struct Scratch {
        let g: UnsafeMutablePointer<Float>      // [chunk, chunk]  C B^T of the current group
        let m: UnsafeMutablePointer<Float>      // [chunk, chunk]  G masked and decayed, per head
        let bT: UnsafeMutablePointer<Float>     // [dState, chunk] B^T of the current group
        let cs: UnsafeMutablePointer<Float>     // [chunk, dState] C scaled by exp(cumsum)
        let xdt: UnsafeMutablePointer<Float>    // [chunk, headDim] x * dt
        let xdec: UnsafeMutablePointer<Float>   // [chunk, headDim] x * dt * decay to the chunk end
        let hT: UnsafeMutablePointer<Float>     // [dState, headDim] the head's state, transposed
        let vec: UnsafeMutablePointer<Float>    // 5 * chunk: dt, dt*A, cumsum, decay-to-end, segsum row
        let chunk: Int

        init(_ s: Shape) {
            let q = s.chunk, n = max(1, s.dState), p = s.headDim
            chunk = q
            g = .allocate(capacity: q * q)
            m = .allocate(capacity: q * q)
            bT = .allocate(capacity: n * q)
            cs = .allocate(capacity: q * n)
            xdt = .allocate(capacity: q * p)
            xdec = .allocate(capacity: q * p)
            hT = .allocate(capacity: n * p)
            vec = .allocate(capacity: 5 * q + 8)
        }

        func deallocate() {
            g.deallocate(); m.deallocate(); bT.deallocate(); cs.deallocate()
            xdt.deallocate(); xdec.deallocate(); hT.deallocate(); vec.deallocate()
        }
    }

    // MARK: - Plain recurrence (one token)

    private static func recurrence(x: UnsafePointer<Float>, dt: UnsafePointer<Float>, dtBias: UnsafePointer<Float>,
                                   A: UnsafePointer<Float>, B: UnsafePointer<Float>, C: UnsafePointer<Float>,
                                   D: UnsafePointer<Float>, b: Int, h: Int, shape s: Shape,
                                   state: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>) {
        let p = s.headDim, n = s.dState
        let g = h / s.headsPerGroup
        let vecEnd = n & ~7
        let hs = state + (b * s.heads + h) * p * n
        for t in 0..<s.tokens {
            let row = b * s.tokens + t
            let step = s.timeStep(dt[row * s.heads + h] + dtBias[h])
            let decay = expf(step * A[h])
            let bRow = B + row * s.bcStride + g * n
            let cRow = C + row * s.bcStride + g * n
            let xRow = x + row * s.xStride + h * p
            let oRow = out + row * s.xStride + h * p
            let dv = SIMD8<Float>(repeating: decay)
            for i in 0..<p {
                let xv = xRow[i]
                let coef = step * xv
                let cv = SIMD8<Float>(repeating: coef)
                let hp = hs + i * n
                var acc = SIMD8<Float>()
                var k = 0
                while k < vecEnd {
                    let hv = (dv * SSMMath.load(hp + k)).addingProduct(cv, SSMMath.load(bRow + k))
                    SSMMath.store(hv, hp + k)
                    acc = acc.addingProduct(hv, SSMMath.load(cRow + k))
                    k += 8
                }
                var y = SSMMath.sum(acc)
                while k < n {
                    let hv = decay * hp[k] + coef * bRow[k]
                    hp[k] = hv
                    y += hv * cRow[k]
                    k += 1
                }
                oRow[i] = y + D[h] * xv
            }
        }
    }

    // MARK: - Chunked form

    /// B^T and G = C B^T (lower triangle and a little beyond) of one group over one chunk.
    private static func groupProducts(B: UnsafePointer<Float>, C: UnsafePointer<Float>, b: Int, g: Int, start: Int,
                                      length l: Int, shape s: Shape, scratch: Scratch) {
        let n = s.dState, q = scratch.chunk
        let row0 = b * s.tokens + start
        for t in 0..<l {
            let bRow = B + (row0 + t) * s.bcStride + g * n
            for k in 0..<n { scratch.bT[k * q + t] = bRow[k] }
        }
        SSDGemm.run(m: l, n: l, k: n, a: C + row0 * s.bcStride + g * n, lda: s.bcStride, b: scratch.bT, ldb: q,
                 c: scratch.g, ldc: q, accumulate: false, causal: .columns)
    }

    /// One head over one chunk: intra-chunk quadratic form, the incoming state's contribution, and the state update.
    private static func chunkHead(x: UnsafePointer<Float>, dt: UnsafePointer<Float>, dtBias: UnsafePointer<Float>,
                                  A: UnsafePointer<Float>, C: UnsafePointer<Float>, D: UnsafePointer<Float>,
                                  b: Int, h: Int, g: Int, start: Int, length l: Int, shape s: Shape,
                                  scratch: Scratch, state: UnsafeMutablePointer<Float>,
                                  out: UnsafeMutablePointer<Float>) {
        let p = s.headDim, n = s.dState, q = scratch.chunk
        let row0 = b * s.tokens + start
        let steps = scratch.vec              // dt after softplus and clamp
        let a = steps + q                    // dt * A
        let cum = a + q                      // inclusive cumulative sum of a
        let toEnd = cum + q                  // sum of a over (t, l): decay from t to the chunk end
        let seg = toEnd + q                  // one row of segsum
        let ah = A[h]
        var running: Float = 0
        for t in 0..<l {
            let step = s.timeStep(dt[(row0 + t) * s.heads + h] + dtBias[h])
            steps[t] = step
            a[t] = step * ah
            running += a[t]
            cum[t] = running
        }
        running = 0
        for t in stride(from: l - 1, through: 0, by: -1) {
            toEnd[t] = running
            running += a[t]
        }

        // M[t, s] = G[t, s] * exp(sum_{k=s+1..t} a[k]) for s <= t; zeros just above the diagonal where SSDGemm's
        // 4-row blocks read them.
        for t in 0..<l {
            var acc: Float = 0
            for j in stride(from: t, through: 0, by: -1) {
                seg[j] = acc
                acc += a[j]
            }
            let gRow = scratch.g + t * q
            let mRow = scratch.m + t * q
            var j = 0
            while j + 8 <= t + 1 {
                SSMMath.store(SSMMath.load(gRow + j) * SSMMath.exp(SSMMath.load(seg + j)), mRow + j)
                j += 8
            }
            while j <= t {
                mRow[j] = gRow[j] * expf(seg[j])
                j += 1
            }
            let zeroEnd = min(l, t + 4)
            while j < zeroEnd {
                mRow[j] = 0
                j += 1
            }
        }

        // dt-scaled inputs, and the same decayed to the chunk end; the output starts as D * x.
        let dh = D[h]
        for t in 0..<l {
            let xRow = x + (row0 + t) * s.xStride + h * p
            let oRow = out + (row0 + t) * s.xStride + h * p
            let step = steps[t]
            let decay = expf(toEnd[t])
            let xdtRow = scratch.xdt + t * p
            let xdecRow = scratch.xdec + t * p
            for i in 0..<p {
                let v = xRow[i] * step
                xdtRow[i] = v
                xdecRow[i] = v * decay
                oRow[i] = dh * xRow[i]
            }
        }

        let outBase = out + row0 * s.xStride + h * p
        // Intra-chunk (diagonal block): y += M (dt x).
        SSDGemm.run(m: l, n: p, k: l, a: scratch.m, lda: q, b: scratch.xdt, ldb: p, c: outBase, ldc: s.xStride,
                 accumulate: true, causal: .inner)

        guard n > 0 else { return }
        // Incoming state's contribution: y[t] += exp(cum[t]) * C[t] . h.
        let hs = state + (b * s.heads + h) * p * n
        let hT = scratch.hT
        for i in 0..<p {
            for k in 0..<n { hT[k * p + i] = hs[i * n + k] }
        }
        for t in 0..<l {
            let scale = expf(cum[t])
            let cRow = C + (row0 + t) * s.bcStride + g * n
            let csRow = scratch.cs + t * n
            for k in 0..<n { csRow[k] = cRow[k] * scale }
        }
        SSDGemm.run(m: l, n: p, k: n, a: scratch.cs, lda: n, b: hT, ldb: p, c: outBase, ldc: s.xStride,
                 accumulate: true, causal: .none)

        // State passing: h <- exp(sum a) h + B^T (decayed dt x), kept transposed as [dState, headDim].
        let total = expf(cum[l - 1])
        for k in 0..<(n * p) { hT[k] *= total }
        SSDGemm.run(m: n, n: p, k: l, a: scratch.bT, lda: q, b: scratch.xdec, ldb: p, c: hT, ldc: p,
                 accumulate: true, causal: .none)
        for i in 0..<p {
            for k in 0..<n { hs[i * n + k] = hT[k * p + i] }
        }
    }
}

/// Small blocked fp32 matrix product for the SSD chunk computations: C (+)= A B with A [m, k], B [k, n], row-major
/// with leading dimensions. `.inner` limits each 4-row block [i, i+4) to k < i+4 (A must be zero beyond its
/// diagonal up to there); `.columns` limits it to columns < i+4 (entries above the diagonal are left partly filled).
private enum SSDGemm {
    enum Causal { case none, inner, columns }

    static func run(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                    c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool, causal: Causal) {
        var i = 0
        while i < m {
            let rowsHere = m - i >= 4 ? 4 : 1
            let rowEnd = i + rowsHere
            let kEnd = causal == .inner ? min(k, rowEnd) : k
            let nEnd = causal == .columns ? min(n, rowEnd) : n
            if rowsHere == 4 {
                rows4(i: i, nEnd: nEnd, kEnd: kEnd, a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc,
                      accumulate: accumulate)
            } else {
                rows1(i: i, nEnd: nEnd, kEnd: kEnd, a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc,
                      accumulate: accumulate)
            }
            i = rowEnd
        }
    }

    @inline(__always)
    private static func put(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>, _ accumulate: Bool) {
        SSMMath.store(accumulate ? SSMMath.load(p) + v : v, p)
    }

    private static func rows4(i: Int, nEnd: Int, kEnd: Int, a: UnsafePointer<Float>, lda: Int,
                              b: UnsafePointer<Float>, ldb: Int, c: UnsafeMutablePointer<Float>, ldc: Int,
                              accumulate: Bool) {
        let a0 = a + i * lda, a1 = a0 + lda, a2 = a1 + lda, a3 = a2 + lda
        let c0 = c + i * ldc, c1 = c0 + ldc, c2 = c1 + ldc, c3 = c2 + ldc
        var j = 0
        while j + 16 <= nEnd {
            var s00 = SIMD8<Float>(), s01 = SIMD8<Float>(), s10 = SIMD8<Float>(), s11 = SIMD8<Float>()
            var s20 = SIMD8<Float>(), s21 = SIMD8<Float>(), s30 = SIMD8<Float>(), s31 = SIMD8<Float>()
            var bp = b + j
            for kk in 0..<kEnd {
                let b0 = SSMMath.load(bp), b1 = SSMMath.load(bp + 8)
                let v0 = SIMD8<Float>(repeating: a0[kk]), v1 = SIMD8<Float>(repeating: a1[kk])
                let v2 = SIMD8<Float>(repeating: a2[kk]), v3 = SIMD8<Float>(repeating: a3[kk])
                s00 = s00.addingProduct(v0, b0); s01 = s01.addingProduct(v0, b1)
                s10 = s10.addingProduct(v1, b0); s11 = s11.addingProduct(v1, b1)
                s20 = s20.addingProduct(v2, b0); s21 = s21.addingProduct(v2, b1)
                s30 = s30.addingProduct(v3, b0); s31 = s31.addingProduct(v3, b1)
                bp += ldb
            }
            put(s00, c0 + j, accumulate); put(s01, c0 + j + 8, accumulate)
            put(s10, c1 + j, accumulate); put(s11, c1 + j + 8, accumulate)
            put(s20, c2 + j, accumulate); put(s21, c2 + j + 8, accumulate)
            put(s30, c3 + j, accumulate); put(s31, c3 + j + 8, accumulate)
            j += 16
        }
        if j + 8 <= nEnd {
            var s0 = SIMD8<Float>(), s1 = SIMD8<Float>(), s2 = SIMD8<Float>(), s3 = SIMD8<Float>()
            var bp = b + j
            for kk in 0..<kEnd {
                let bv = SSMMath.load(bp)
                s0 = s0.addingProduct(SIMD8(repeating: a0[kk]), bv)
                s1 = s1.addingProduct(SIMD8(repeating: a1[kk]), bv)
                s2 = s2.addingProduct(SIMD8(repeating: a2[kk]), bv)
                s3 = s3.addingProduct(SIMD8(repeating: a3[kk]), bv)
                bp += ldb
            }
            put(s0, c0 + j, accumulate); put(s1, c1 + j, accumulate)
            put(s2, c2 + j, accumulate); put(s3, c3 + j, accumulate)
            j += 8
        }
        while j < nEnd {
            var s0: Float = 0, s1: Float = 0, s2: Float = 0, s3: Float = 0
            for kk in 0..<kEnd {
                let bv = b[kk * ldb + j]
                s0 += a0[kk] * bv; s1 += a1[kk] * bv; s2 += a2[kk] * bv; s3 += a3[kk] * bv
            }
            if accumulate {
                c0[j] += s0; c1[j] += s1; c2[j] += s2; c3[j] += s3
            } else {
                c0[j] = s0; c1[j] = s1; c2[j] = s2; c3[j] = s3
            }
            j += 1
        }
    }

    private static func rows1(i: Int, nEnd: Int, kEnd: Int, a: UnsafePointer<Float>, lda: Int,
                              b: UnsafePointer<Float>, ldb: Int, c: UnsafeMutablePointer<Float>, ldc: Int,
                              accumulate: Bool) {
        let a0 = a + i * lda
        let c0 = c + i * ldc
        var j = 0
        while j + 16 <= nEnd {
            var s0 = SIMD8<Float>(), s1 = SIMD8<Float>()
            var bp = b + j
            for kk in 0..<kEnd {
                let v = SIMD8<Float>(repeating: a0[kk])
                s0 = s0.addingProduct(v, SSMMath.load(bp))
                s1 = s1.addingProduct(v, SSMMath.load(bp + 8))
                bp += ldb
            }
            put(s0, c0 + j, accumulate); put(s1, c0 + j + 8, accumulate)
            j += 16
        }
        if j + 8 <= nEnd {
            var s0 = SIMD8<Float>()
            var bp = b + j
            for kk in 0..<kEnd {
                s0 = s0.addingProduct(SIMD8(repeating: a0[kk]), SSMMath.load(bp))
                bp += ldb
            }
            put(s0, c0 + j, accumulate)
            j += 8
        }
        while j < nEnd {
            var s0: Float = 0
            for kk in 0..<kEnd { s0 += a0[kk] * b[kk * ldb + j] }
            if accumulate { c0[j] += s0 } else { c0[j] = s0 }
            j += 1
        }
    }
}
