import Foundation
import ScopeCPU
import ScopeEngine
import ScopeModels
import Testing

/// The fused operations' default implementations (what the CPU backend and the allocation probe run) equal the
/// separate operators they stand for, and column blocks of one row view the right elements.
@Suite struct FusedOperationTests {
    let backend = CPUBackend()

    func tensor(_ shape: [Int], seed: UInt64) throws -> Tensor {
        var rng = SplitMix64(seed: seed)
        let t = try backend.makeTensor(shape, .fp32)
        try backend.upload((0..<shape.reduce(1, *)).map { _ in Float(rng.next() % 2001) / 1000 - 1 }, into: t)
        return t
    }

    @Test func columnBlocksOfOneRowAreViews() throws {
        let row = try tensor([1, 10], seed: 1)
        let values = try backend.download(row)
        let block = row.columnBlock(3..<7)
        #expect(block.shape == [1, 4])
        #expect(try backend.download(block) == Array(values[3..<7]))
        try backend.scale(block, by: 2, out: block)
        let after = try backend.download(row)
        #expect(after[3..<7].elementsEqual(values[3..<7].map { $0 * 2 }) && after[0..<3] == values[0..<3])
    }

    @Test func fusedLinearIsNormThenLinearThenSum() throws {
        let x = try tensor([3, 16], seed: 2), weight = try tensor([12, 16], seed: 3), normWeight = try tensor([16], seed: 4)
        let bias = try tensor([5], seed: 5), residual = try tensor([3, 5], seed: 6)
        let before = try backend.download(residual)
        try backend.fusedLinear(x, norm: .rms(weight: normWeight, eps: 1e-5), weight: weight, rows: 4..<9, bias: bias,
                                out: residual, accumulate: true)

        let normed = try backend.makeTensor([3, 16], .fp32), y = try backend.makeTensor([3, 5], .fp32)
        try backend.rmsNorm(x, weight: normWeight, eps: 1e-5, out: normed)
        try backend.linear(normed, weight: weight, rows: 4..<9, bias: bias, out: y)
        let expected = zip(before, try backend.download(y)).map { $0 + $1 }
        #expect(try backend.download(residual) == expected)
        #expect(!backend.foldsInputNorm(rows: 1), "the CPU backend shares one normalised copy between projections")
    }

    @Test func gatedNormLinearMatchesTheGatedNorm() throws {
        let y = try tensor([2, 8], seed: 7), gate = try tensor([2, 8], seed: 8), normWeight = try tensor([8], seed: 9)
        let weight = try tensor([3, 8], seed: 10), out = try backend.makeTensor([2, 3], .fp32)
        try backend.fusedLinear(y, norm: .gatedRMS(gate: gate, weight: normWeight, groups: 2, eps: 1e-6,
                                                   normBeforeGate: false),
                                weight: weight, rows: nil, bias: nil, out: out, accumulate: false)
        let normed = try backend.makeTensor([2, 8], .fp32), expected = try backend.makeTensor([2, 3], .fp32)
        try backend.gatedRMSNorm(y, gate: gate, weight: normWeight, groups: 2, eps: 1e-6, normBeforeGate: false,
                                 out: normed)
        try backend.linear(normed, weight: weight, rows: nil, bias: nil, out: expected)
        #expect(try backend.download(out) == backend.download(expected))
    }

    @Test func selectiveStepWithDeltaProjectionIsProjectionThenStep() throws {
        let u = try tensor([2, 6], seed: 20), dt = try tensor([2, 3], seed: 21), weight = try tensor([8, 3], seed: 22)
        let bias = try tensor([6], seed: 23), a = try tensor([6, 4], seed: 24), b = try tensor([2, 4], seed: 25)
        let c = try tensor([2, 4], seed: 26), d = try tensor([6], seed: 27), z = try tensor([2, 6], seed: 28)
        let stateA = try tensor([2, 6, 4], seed: 29), stateB = try backend.makeTensor([2, 6, 4], .fp32)
        try backend.upload(try backend.download(stateA), into: stateB)
        let out = try backend.makeTensor([2, 6], .fp32)
        try backend.selectiveStepWithDeltaProjection(u: u, dt: dt, dtProjection: Linear(weight: weight, rows: 1..<7,
                                                                                        bias: bias),
                                                     A: a, B: b, C: c, D: d, z: z, state: stateA, batch: 2, out: out)
        let delta = try backend.makeTensor([2, 6], .fp32), expected = try backend.makeTensor([2, 6], .fp32)
        try backend.linear(dt, weight: weight, rows: 1..<7, bias: bias, out: delta)
        try backend.selectiveScan(u: u, delta: delta, A: a, B: b, C: c, D: d, z: z, state: stateB, batch: 2, tokens: 1,
                                  out: expected)
        #expect(try backend.download(out) == backend.download(expected))
        #expect(try backend.download(stateA) == backend.download(stateB))
        #expect(!backend.foldsDeltaProjection(rows: 1), "the CPU backend runs the projection as its own operator")
    }

    /// A Mamba-2 step with its gated norm folded into the step and the scale into the projection equals the step,
    /// the gated RMSNorm of one group and the projection, with the norm before and after the gate.
    @Test(arguments: [false, true]) func gatedStepThenPresummedProjectionIsStepNormProjection(normBeforeGate: Bool)
        throws {
        let heads = 3, p = 4, n = 5, inner = heads * p
        let x = try tensor([2, inner], seed: 30), dt = try tensor([2, heads], seed: 31)
        let dtBias = try tensor([heads], seed: 32), a = try tensor([heads], seed: 33), d = try tensor([heads], seed: 34)
        let b = try tensor([2, n], seed: 35), c = try tensor([2, n], seed: 36), z = try tensor([2, inner], seed: 37)
        let normWeight = try tensor([inner], seed: 38), weight = try tensor([7, inner], seed: 39)
        let stateA = try tensor([2, heads, p, n], seed: 40), stateB = try backend.makeTensor([2, heads, p, n], .fp32)
        try backend.upload(try backend.download(stateA), into: stateB)
        let residualA = try tensor([2, 7], seed: 41), residualB = try backend.makeTensor([2, 7], .fp32)
        try backend.upload(try backend.download(residualA), into: residualB)

        let gated = try backend.makeTensor([2, inner], .fp32), squares = try backend.makeTensor([2, 3], .fp32)
        try backend.ssdStepGated(x: x, dt: dt, dtBias: dtBias, A: a, B: b, C: c, D: d, state: stateA, batch: 2,
                                 heads: heads, headDim: p, groups: 1, stateSize: n, dtMin: 0, dtMax: .infinity,
                                 gate: z, normWeight: normWeight, normBeforeGate: normBeforeGate, out: gated,
                                 squares: squares)
        try backend.fusedLinear(gated, norm: .presummedRMS(squares: squares, eps: 1e-5), weight: weight, rows: nil,
                                bias: nil, out: residualA, accumulate: true)

        let y = try backend.makeTensor([2, inner], .fp32), normed = try backend.makeTensor([2, inner], .fp32)
        try backend.ssd(x: x, dt: dt, dtBias: dtBias, A: a, B: b, C: c, D: d, state: stateB, batch: 2, tokens: 1,
                        heads: heads, headDim: p, groups: 1, stateSize: n, chunkSize: 1, dtMin: 0, dtMax: .infinity,
                        out: y)
        try backend.gatedRMSNorm(y, gate: z, weight: normWeight, groups: 1, eps: 1e-5, normBeforeGate: normBeforeGate,
                                 out: normed)
        try backend.fusedLinear(normed, norm: nil, weight: weight, rows: nil, bias: nil, out: residualB,
                                accumulate: true)
        let got = try backend.download(residualA), expected = try backend.download(residualB)
        #expect(zip(got, expected).allSatisfy { abs($0 - $1) <= 1e-5 * max(1, abs($1)) }, "\(got) against \(expected)")
        #expect(try backend.download(stateA) == backend.download(stateB))
        #expect(try backend.download(squares).enumerated().allSatisfy { $0.offset % 3 == 0 || $0.element == 0 },
                "the default writes each row's sum into its first part")
        #expect(backend.gatedStepParts(rows: 1, heads: heads, headDim: p, innerSize: inner) == nil,
                "the CPU backend runs the step and the norm apart")
    }

    @Test func splitConvolutionEqualsConvolutionThenSplit() throws {
        let x = try tensor([6, 10], seed: 11), weight = try tensor([10, 4], seed: 12), bias = try tensor([10], seed: 13)
        let stateA = try tensor([1, 3, 10], seed: 14), stateB = try backend.makeTensor([1, 3, 10], .fp32)
        try backend.upload(try backend.download(stateA), into: stateB)
        let blocks = [0..<4, 4..<7, 7..<10]
        let parts = try blocks.map { try backend.makeTensor([6, $0.count], .fp32) }
        try backend.conv1d(x, weight: weight, bias: bias, state: stateA, batch: 1, tokens: 6, silu: true,
                           splitInto: parts, columns: blocks)
        let whole = try backend.makeTensor([6, 10], .fp32)
        try backend.conv1d(x, weight: weight, bias: bias, state: stateB, batch: 1, tokens: 6, silu: true, out: whole)
        let rows = try backend.download(whole)
        for (part, block) in zip(parts, blocks) {
            let expected = (0..<6).flatMap { r in rows[(r * 10 + block.lowerBound)..<(r * 10 + block.upperBound)] }
            #expect(try backend.download(part) == expected)
        }
        #expect(try backend.download(stateA) == backend.download(stateB))
    }
}
