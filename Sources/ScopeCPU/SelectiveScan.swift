#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Mamba-1 selective scan (the recurrence of Hugging Face `MambaMixer.slow_forward`).
public enum SelectiveScan {
    /// Mamba-1 selective scan over `tokens` new tokens per sequence, continuing from `state` [batch, dInner, dState].
    ///
    /// - Parameters:
    ///   - u: [batch * tokens, dInner], the (convolved, activated) inputs.
    ///   - delta: [batch * tokens, dInner], the raw `dt_proj` output including its bias, before softplus
    ///     (softplus uses PyTorch's threshold 20).
    ///   - A: [dInner, dState], already negative (= -exp(A_log)).
    ///   - B: [batch * tokens, dState].
    ///   - C: [batch * tokens, dState].
    ///   - D: [dInner].
    ///   - z: [batch * tokens, dInner] gate, or nil for no gating.
    ///   - state: [batch, dInner, dState]; read as the initial state and overwritten with the final one.
    ///   - out: [batch * tokens, dInner].
    ///
    /// Per step: dA = exp(softplus(delta) * A); h = dA * h + softplus(delta) * B * u; y = sum_n C * h + D * u;
    /// then y *= silu(z) when z is non-nil. Work is split over (batch, blocks of 8 channels).
    public static func scan(u: UnsafePointer<Float>, delta: UnsafePointer<Float>, A: UnsafePointer<Float>,
                            B: UnsafePointer<Float>, C: UnsafePointer<Float>, D: UnsafePointer<Float>,
                            z: UnsafePointer<Float>?, batch: Int, tokens: Int, dInner: Int, dState: Int,
                            state: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>) {
        guard batch > 0, tokens > 0, dInner > 0 else { return }
        // Eight channels share one vector; their state and A rows are held transposed ([dState][8]) while the
        // tokens run, so that the recurrence needs no horizontal sums.
        let groups = (dInner + 7) / 8
        let workPerItem = max(1, tokens * 8 * max(1, dState) * 12)
        let minimum = max(1, 131_072 / workPerItem)
        Parallel.forRanges(batch * groups, minimumPerTask: minimum) { range in
            let n = max(1, dState)
            let h = UnsafeMutablePointer<SIMD8<Float>>.allocate(capacity: n)
            let a = UnsafeMutablePointer<SIMD8<Float>>.allocate(capacity: n)
            defer { h.deallocate(); a.deallocate() }
            for item in range {
                let b = item / groups
                let c0 = (item % groups) * 8
                scanLanes(u: u, delta: delta, A: A, B: B, C: C, D: D, z: z, b: b, c0: c0,
                          lanes: min(8, dInner - c0), tokens: tokens, dInner: dInner, dState: dState,
                          state: state, out: out, h: h, a: a)
            }
        }
    }

    /// Channels [c0, c0 + lanes) of sequence b, lanes <= 8 (missing lanes are zero and never stored).
    @inline(__always)
    private static func scanLanes(u: UnsafePointer<Float>, delta: UnsafePointer<Float>, A: UnsafePointer<Float>,
                                  B: UnsafePointer<Float>, C: UnsafePointer<Float>, D: UnsafePointer<Float>,
                                  z: UnsafePointer<Float>?, b: Int, c0: Int, lanes: Int, tokens: Int, dInner: Int,
                                  dState: Int, state: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>,
                                  h: UnsafeMutablePointer<SIMD8<Float>>, a: UnsafeMutablePointer<SIMD8<Float>>) {
        let hs = state + (b * dInner + c0) * dState
        for n in 0..<dState {
            var hv = SIMD8<Float>(), av = SIMD8<Float>()
            for lane in 0..<lanes {
                hv[lane] = hs[lane * dState + n]
                av[lane] = A[(c0 + lane) * dState + n]
            }
            h[n] = hv
            a[n] = av
        }
        let dv = SSMMath.load(D + c0, lanes)
        for t in 0..<tokens {
            let row = b * tokens + t
            let base = row * dInner + c0
            let step = SSMMath.softplus(SSMMath.load(delta + base, lanes))
            let uv = SSMMath.load(u + base, lanes)
            let du = step * uv
            let bRow = B + row * dState
            let cRow = C + row * dState
            var y0 = SIMD8<Float>(), y1 = SIMD8<Float>()
            var n = 0
            while n + 2 <= dState {
                let h0 = (SSMMath.exp(step * a[n]) * h[n]).addingProduct(du, SIMD8(repeating: bRow[n]))
                let h1 = (SSMMath.exp(step * a[n + 1]) * h[n + 1]).addingProduct(du, SIMD8(repeating: bRow[n + 1]))
                h[n] = h0
                h[n + 1] = h1
                y0 = y0.addingProduct(SIMD8(repeating: cRow[n]), h0)
                y1 = y1.addingProduct(SIMD8(repeating: cRow[n + 1]), h1)
                n += 2
            }
            if n < dState {
                let h0 = (SSMMath.exp(step * a[n]) * h[n]).addingProduct(du, SIMD8(repeating: bRow[n]))
                h[n] = h0
                y0 = y0.addingProduct(SIMD8(repeating: cRow[n]), h0)
            }
            var y = (y0 + y1).addingProduct(dv, uv)
            if let z { y *= SSMMath.silu(SSMMath.load(z + base, lanes)) }
            SSMMath.store(y, out + base, lanes)
        }
        for n in 0..<dState {
            let hv = h[n]
            for lane in 0..<lanes { hs[lane * dState + n] = hv[lane] }
        }
    }
}

/// Small vector math shared by the state-space kernels (Conv1d, SelectiveScan, SSD, GatedNorm).
internal enum SSMMath {
    @inline(__always)
    static func load(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
    }

    @inline(__always)
    static func load(_ p: UnsafeMutablePointer<Float>) -> SIMD8<Float> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
    }

    @inline(__always)
    static func store(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD8<Float>.self)
    }

    /// The first `count` (at most 8) floats at p, zeros in the other lanes.
    @inline(__always)
    static func load(_ p: UnsafePointer<Float>, _ count: Int) -> SIMD8<Float> {
        if count == 8 { return load(p) }
        var v = SIMD8<Float>()
        for i in 0..<count { v[i] = p[i] }
        return v
    }

    /// Stores the first `count` (at most 8) lanes of v at p.
    @inline(__always)
    static func store(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>, _ count: Int) {
        if count == 8 { return store(v, p) }
        for i in 0..<count { p[i] = v[i] }
    }

    /// Sum of the eight lanes (pairwise).
    @inline(__always)
    static func sum(_ v: SIMD8<Float>) -> Float {
        let half = v.lowHalf + v.highHalf
        let quarter = half.lowHalf + half.highHalf
        return quarter[0] + quarter[1]
    }

    /// PyTorch `softplus` (beta 1, threshold 20): x above 20 passes through, else log1p(exp(x)).
    @inline(__always)
    static func softplus(_ x: Float) -> Float {
        x > 20 ? x : log1pf(expf(x))
    }

    /// Vector PyTorch `softplus` (beta 1, threshold 20), with log1p(e) computed as log(1 + e) corrected by
    /// (e - ((1 + e) - 1)) / (1 + e), which keeps full relative accuracy for tiny e.
    @inline(__always)
    static func softplus(_ x: SIMD8<Float>) -> SIMD8<Float> {
        let e = exp(x)
        let u = e + 1
        let l1p = log(u) + (e - (u - 1)) / u
        return l1p.replacing(with: x, where: x .> 20)
    }

    /// Vector natural log for positive normal inputs (Cephes-style polynomial, about 1-2 ulp).
    @inline(__always)
    static func log(_ x: SIMD8<Float>) -> SIMD8<Float> {
        let bits = unsafeBitCast(x, to: SIMD8<Int32>.self)
        var exponent = SIMD8<Float>((bits &>> 23) &- 127)
        var m = unsafeBitCast((bits & 0x007F_FFFF) | 0x3F80_0000, to: SIMD8<Float>.self)  // [1, 2)
        let big = m .> 1.414_213_56
        m = m.replacing(with: m * 0.5, where: big)
        exponent = exponent.replacing(with: exponent + 1, where: big)
        let f = m - 1
        var p = SIMD8<Float>(repeating: 7.037_683_629_2e-2)
        p = SIMD8(repeating: -1.151_461_031_0e-1).addingProduct(p, f)
        p = SIMD8(repeating: 1.167_699_874_0e-1).addingProduct(p, f)
        p = SIMD8(repeating: -1.242_014_084_6e-1).addingProduct(p, f)
        p = SIMD8(repeating: 1.424_932_278_7e-1).addingProduct(p, f)
        p = SIMD8(repeating: -1.666_805_766_5e-1).addingProduct(p, f)
        p = SIMD8(repeating: 2.000_071_476_5e-1).addingProduct(p, f)
        p = SIMD8(repeating: -2.499_999_399_3e-1).addingProduct(p, f)
        p = SIMD8(repeating: 3.333_333_117_4e-1).addingProduct(p, f)
        let f2 = f * f
        var y = p * f * f2
        y = y.addingProduct(exponent, SIMD8(repeating: -2.121_944_40e-4))
        y = y.addingProduct(f2, SIMD8(repeating: -0.5))
        return (f + y).addingProduct(exponent, SIMD8(repeating: 0.693_359_375))
    }

    /// x * sigmoid(x).
    @inline(__always)
    static func silu(_ x: Float) -> Float {
        x / (1 + expf(-x))
    }

    @inline(__always)
    static func silu(_ x: SIMD8<Float>) -> SIMD8<Float> {
        x / (1 + exp(-x))
    }

    /// Vector exp (Cephes-style polynomial, about 1-2 ulp on the normal range). Inputs below about -87.3 give
    /// the smallest normal float instead of 0 or a subnormal; inputs above about 88.3 are clamped.
    @inline(__always)
    static func exp(_ input: SIMD8<Float>) -> SIMD8<Float> {
        let x = input.replacing(with: -87.3, where: input .< -87.3).replacing(with: 88.3, where: input .> 88.3)
        let magic = SIMD8<Float>(repeating: 12_582_912)  // 1.5 * 2^23: adding it rounds to an integer
        let t = magic.addingProduct(x, SIMD8(repeating: 1.442_695_04))
        let fx = t - magic
        var r = x.addingProduct(fx, SIMD8(repeating: -0.693_359_375))
        r = r.addingProduct(fx, SIMD8(repeating: 2.121_944_4e-4))
        var p = SIMD8<Float>(repeating: 1.987_569_15e-4)
        p = SIMD8(repeating: 1.398_199_95e-3).addingProduct(p, r)
        p = SIMD8(repeating: 8.333_451_9e-3).addingProduct(p, r)
        p = SIMD8(repeating: 4.166_579_59e-2).addingProduct(p, r)
        p = SIMD8(repeating: 1.666_666_55e-1).addingProduct(p, r)
        p = SIMD8(repeating: 5.000_000_12e-1).addingProduct(p, r)
        let poly = (r + 1).addingProduct(p, r * r)
        let n = unsafeBitCast(t, to: SIMD8<Int32>.self) &- unsafeBitCast(magic, to: SIMD8<Int32>.self)
        let scale = unsafeBitCast((n &+ 127) &<< 23, to: SIMD8<Float>.self)
        return poly * scale
    }
}
