import ScopeEngine
import Testing

@testable import ScopeCPU

/// Weights of [n, k] stored as `type`, plus the fp32 values they decode to (what the reference multiplies by).
private func makeWeights(_ values: [Float], _ type: ElementType) -> (bytes: [UInt8], decoded: [Float]) {
    var bytes = [UInt8](repeating: 0, count: values.count * type.byteSize)
    bytes.withUnsafeMutableBytes { raw in
        for (i, v) in values.enumerated() { ElementConversion.store(v, raw.baseAddress!, type, i) }
    }
    let decoded = bytes.withUnsafeBytes { raw in
        (0..<values.count).map { ElementConversion.load(raw.baseAddress!, type, $0) }
    }
    return (bytes, decoded)
}

private func runLinear(m: Int, k: Int, n: Int, type: ElementType, withBias: Bool, seed: UInt64) -> Double {
    var rng = SplitMix64(seed: seed)
    let x = rng.floats(m * k)
    let (weight, w) = makeWeights(rng.floats(n * k), type)
    let bias = withBias ? rng.floats(n) : nil
    var expected = [Double](repeating: 0, count: m * n)
    for i in 0..<m {
        for j in 0..<n {
            var s = Double(bias?[j] ?? 0)
            for p in 0..<k { s += Double(x[i * k + p]) * Double(w[j * k + p]) }
            expected[i * n + j] = s
        }
    }
    var out = [Float](repeating: .nan, count: m * n)
    weight.withUnsafeBytes { wp in
        out.withUnsafeMutableBufferPointer { op in
            if let bias {
                bias.withUnsafeBufferPointer { bp in
                    Matmul.linear(x: x, m: m, k: k, weight: wp.baseAddress!, weightType: type, n: n,
                                  bias: bp.baseAddress!, out: op.baseAddress!)
                }
            } else {
                Matmul.linear(x: x, m: m, k: k, weight: wp.baseAddress!, weightType: type, n: n, bias: nil,
                              out: op.baseAddress!)
            }
        }
    }
    return relativeError(out, expected)
}

private func runGemm(m: Int, n: Int, k: Int, seed: UInt64) -> Double {
    var rng = SplitMix64(seed: seed)
    let a = rng.floats(m * k), b = rng.floats(k * n)
    var expected = [Double](repeating: 0, count: m * n)
    for i in 0..<m {
        for p in 0..<k {
            let aip = Double(a[i * k + p])
            for j in 0..<n { expected[i * n + j] += aip * Double(b[p * n + j]) }
        }
    }
    var c = [Float](repeating: .nan, count: m * n)
    c.withUnsafeMutableBufferPointer { Matmul.gemm(a: a, b: b, c: $0.baseAddress!, m: m, n: n, k: k) }
    return relativeError(c, expected)
}

/// (m, k, n): tiny and odd shapes, both sides of the weight-streaming row limit and of the register tile.
private let linearShapes = [
    (1, 1, 1), (1, 3, 17), (1, 130, 65), (2, 17, 5), (3, 17, 65), (5, 9, 4), (17, 65, 130), (21, 8, 33),
    (65, 130, 3), (130, 17, 65), (24, 40, 33),
]

@Test(arguments: ElementType.allCases)
func linearMatchesReference(type: ElementType) {
    for (index, (m, k, n)) in linearShapes.enumerated() {
        for withBias in [false, true] {
            let error = runLinear(m: m, k: k, n: n, type: type, withBias: withBias, seed: UInt64(index * 2 + (withBias ? 1 : 0)))
            #expect(error < 1e-4, "linear m=\(m) k=\(k) n=\(n) \(type) bias=\(withBias): relative error \(error)")
        }
    }
}

@Test func linearSpansCacheBlocksAndThreads() {
    // k beyond one packed depth slab, m beyond one packed row block, enough work to run on every worker.
    for type in ElementType.allCases {
        let error = runLinear(m: 100, k: 300, n: 70, type: type, withBias: true, seed: 99)
        #expect(error < 1e-4, "\(type): relative error \(error)")
    }
    // n beyond one packed column block; decode rows stream the weights over several threads.
    #expect(runLinear(m: 1, k: 70, n: 1100, type: .bf16, withBias: true, seed: 7) < 1e-4)
    #expect(runLinear(m: 3, k: 600, n: 50, type: .fp16, withBias: false, seed: 8) < 1e-4)
}

@Test func linearWithEmptyDepthWritesBias() {
    let bias: [Float] = [1, -2, 3]
    var out = [Float](repeating: .nan, count: 6)
    let unused: [Float] = [0]
    unused.withUnsafeBytes { wp in
        Matmul.linear(x: unused, m: 2, k: 0, weight: wp.baseAddress!, weightType: .fp32, n: 3, bias: bias, out: &out)
    }
    #expect(out == bias + bias)
}

@Test func gemmMatchesReference() {
    let shapes = [(1, 1, 1), (1, 17, 3), (3, 5, 17), (6, 16, 8), (17, 130, 65), (65, 3, 130), (130, 65, 17), (7, 1030, 260)]
    for (index, (m, n, k)) in shapes.enumerated() {
        let error = runGemm(m: m, n: n, k: k, seed: 1000 + UInt64(index))
        #expect(error < 1e-4, "gemm m=\(m) n=\(n) k=\(k): relative error \(error)")
    }
}
