import Glibc
import Testing

@testable import ScopeCPU

// MARK: - Norms

@Test func rmsNormMatchesReference() {
    var rng = SplitMix64(seed: 11)
    for (rows, cols) in [(1, 1), (3, 7), (5, 37), (2, 130), (40, 1024)] {
        for withWeight in [false, true] {
            let x = rng.floats(rows * cols, scale: 3)
            let weight = withWeight ? rng.floats(cols) : nil
            var expected = [Double](repeating: 0, count: rows * cols)
            for r in 0..<rows {
                var squares = 0.0
                for c in 0..<cols { squares += Double(x[r * cols + c]) * Double(x[r * cols + c]) }
                let inverse = 1 / (squares / Double(cols) + 1e-5).squareRoot()
                for c in 0..<cols {
                    expected[r * cols + c] = Double(x[r * cols + c]) * inverse * Double(weight?[c] ?? 1)
                }
            }
            var out = [Float](repeating: .nan, count: rows * cols)
            Norms.rms(x: x, rows: rows, cols: cols, weight: weight, eps: 1e-5, out: &out)
            #expect(relativeError(out, expected) < 1e-5, "rows=\(rows) cols=\(cols) weight=\(withWeight)")
            // In place.
            var inPlace = x
            inPlace.withUnsafeMutableBufferPointer { p in
                Norms.rms(x: p.baseAddress!, rows: rows, cols: cols, weight: weight, eps: 1e-5, out: p.baseAddress!)
            }
            #expect(inPlace == out)
        }
    }
}

@Test func layerNormMatchesReference() {
    var rng = SplitMix64(seed: 12)
    for (rows, cols) in [(1, 1), (3, 7), (5, 37), (2, 130), (40, 1024)] {
        for affine in [false, true] {
            // An offset mean checks the variance is computed around the mean, not from raw squares.
            let x = rng.floats(rows * cols).map { $0 + 50 }
            let weight = affine ? rng.floats(cols) : nil
            let bias = affine ? rng.floats(cols) : nil
            var expected = [Double](repeating: 0, count: rows * cols)
            for r in 0..<rows {
                let row = (0..<cols).map { Double(x[r * cols + $0]) }
                let mean = row.reduce(0, +) / Double(cols)
                let variance = row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(cols)
                for c in 0..<cols {
                    expected[r * cols + c] = (row[c] - mean) / (variance + 1e-5).squareRoot() * Double(weight?[c] ?? 1)
                        + Double(bias?[c] ?? 0)
                }
            }
            var out = [Float](repeating: .nan, count: rows * cols)
            Norms.layer(x: x, rows: rows, cols: cols, weight: weight, bias: bias, eps: 1e-5, out: &out)
            // Inputs near 50 carry fp32 rounding of ~50 * 2^-24 into the centred values.
            #expect(relativeError(out, expected) < 1e-4, "rows=\(rows) cols=\(cols) affine=\(affine)")
            var inPlace = x
            inPlace.withUnsafeMutableBufferPointer { p in
                Norms.layer(x: p.baseAddress!, rows: rows, cols: cols, weight: weight, bias: bias, eps: 1e-5,
                            out: p.baseAddress!)
            }
            #expect(inPlace == out)
        }
    }
}

// MARK: - Rope

@Test func ropeMatchesRotateHalfReference() {
    var rng = SplitMix64(seed: 13)
    let configurations = [(headDim: 8, rotaryDim: 8), (headDim: 20, rotaryDim: 20), (headDim: 64, rotaryDim: 32),
                          (headDim: 36, rotaryDim: 18)]
    for (headDim, rotaryDim) in configurations {
        let tokens = 5, heads = 3
        let half = rotaryDim / 2
        let invFreq = (0..<half).map { 1 / powf(10_000, Float(2 * $0) / Float(rotaryDim)) }
        let positions: [Int32] = [0, 1, 17, 4095, 1_000_000]
        let scale: Float = 1.25
        let x = rng.floats(tokens * heads * headDim)
        var expected = x.map(Double.init)
        for t in 0..<tokens {
            for h in 0..<heads {
                let base = (t * heads + h) * headDim
                for i in 0..<half {
                    // HF rounds the angle to fp32 before taking cos / sin.
                    let angle = Double(Float(positions[t]) * invFreq[i])
                    let c = cos(angle) * Double(scale), s = sin(angle) * Double(scale)
                    let a = Double(x[base + i]), b = Double(x[base + i + half])
                    expected[base + i] = a * c - b * s
                    expected[base + i + half] = b * c + a * s
                }
            }
        }
        var out = x
        Rope.apply(x: &out, tokens: tokens, heads: heads, headDim: headDim, rotaryDim: rotaryDim, positions: positions,
                   invFreq: invFreq, scale: scale)
        #expect(relativeError(out, expected) < 1e-5, "headDim=\(headDim) rotaryDim=\(rotaryDim)")
        for t in 0..<tokens {
            for h in 0..<heads {
                let base = (t * heads + h) * headDim
                #expect(out[(base + rotaryDim)..<(base + headDim)] == x[(base + rotaryDim)..<(base + headDim)])
            }
        }
    }
}

// MARK: - Activations

private func reference(_ kind: ActivationKind, _ x: Double) -> Double {
    switch kind {
    case .silu: x / (1 + exp(-x))
    case .gelu: 0.5 * x * (1 + erf(x / 2.0.squareRoot()))
    case .geluTanh: 0.5 * x * (1 + tanh((2 / Double.pi).squareRoot() * (x + 0.044715 * x * x * x)))
    case .relu: max(x, 0)
    case .relu2: max(x, 0) * max(x, 0)
    }
}

@Test(arguments: [ActivationKind.silu, .gelu, .geluTanh, .relu, .relu2])
func activationsMatchReference(kind: ActivationKind) {
    var rng = SplitMix64(seed: 14)
    let count = 1037
    let x = rng.floats(count, scale: 8) + [0, -30, 30]
    let up = rng.floats(x.count)
    let expected = x.map { reference(kind, Double($0)) }
    var out = [Float](repeating: .nan, count: x.count)
    Activations.apply(kind, x: x, count: x.count, out: &out)
    for (a, e) in zip(out, expected) { #expect(abs(Double(a) - e) <= 1e-5 * max(1, abs(e)), "\(kind)") }
    var inPlace = x
    inPlace.withUnsafeMutableBufferPointer { Activations.apply(kind, x: $0.baseAddress!, count: x.count, out: $0.baseAddress!) }
    #expect(inPlace == out)

    var gatedOut = [Float](repeating: .nan, count: x.count)
    Activations.gated(kind, gate: x, up: up, count: x.count, out: &gatedOut)
    for i in x.indices {
        let e = expected[i] * Double(up[i])
        #expect(abs(Double(gatedOut[i]) - e) <= 1e-5 * max(1, abs(e)), "gated \(kind)")
    }
}

@Test func addHandlesTailsAndAliasing() {
    var rng = SplitMix64(seed: 15)
    let a = rng.floats(43), b = rng.floats(43)
    var out = [Float](repeating: .nan, count: 43)
    Activations.add(a, b, count: 43, out: &out)
    #expect(out == zip(a, b).map { $0 + $1 })
    var inPlace = a
    inPlace.withUnsafeMutableBufferPointer { Activations.add($0.baseAddress!, b, count: 43, out: $0.baseAddress!) }
    #expect(inPlace == out)
}

@Test func softplusFollowsPyTorch() {
    for x: Float in [-30, -5, -1, 0, 0.5, 3, 19.5] {
        let expected = log1p(exp(Double(x)))
        #expect(abs(Double(Activations.softplus(x)) - expected) <= 1e-6 * max(1, expected))
    }
    #expect(Activations.softplus(20.5) == 20.5)
    #expect(Activations.softplus(100) == 100)
}
