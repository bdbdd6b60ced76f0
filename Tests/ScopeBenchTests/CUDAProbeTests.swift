import ScopeBackends
import ScopeCUDA
import ScopeEngine
import ScopeModels
import Testing

/// The allocation probe standing in for the CUDA backend allocates what that backend's operators allocate (its SSD
/// chunk states, converted inputs of fp32 weights) and nothing it does not (the protocol defaults' temporaries), so
/// `max-context --backend cuda` sees the GPU's high-water mark. No GPU needed: the sizes are the backend's own
/// formulas.
@Suite struct CUDAProbeTests {
    @Test func theProbeAllocatesTheSSDScratchTheBackendWould() throws {
        let probe = try BackendRegistry.probe(standingInFor: "cuda", dtype: .bf16, memoryLimit: nil)
        #expect(probe.activationType == .bf16 && probe.foldsInputNorm(rows: 8) && !probe.foldsInputNorm(rows: 9))
        let tokens = 20000, heads = 64, p = 64, n = 128
        func t(_ shape: [Int], _ type: ElementType = .bf16) throws -> Tensor { try probe.makeTensor(shape, type) }
        let x = try t([tokens, heads * p]), dt = try t([tokens, heads]), b = try t([tokens, n]), c = try t([tokens, n])
        let small = try t([heads], .fp32), state = try t([1, heads, p, n], .fp32), out = try t([tokens, heads * p])
        let live = probe.memory.inUse
        try probe.ssd(x: x, dt: dt, dtBias: small, A: small, B: b, C: c, D: small, state: state, batch: 1,
                      tokens: tokens, heads: heads, headDim: p, groups: 1, stateSize: n, chunkSize: 256, dtMin: 0,
                      dtMax: 1e9, out: out)
        // Super-chunks of 16384 tokens in 256-token chunks: 64 chunks' cb, fp32 states, bf16 incoming states, decays.
        let scratch = 64 * 256 * 256 * 2 + 64 * heads * p * n * 4 + 64 * heads * p * n * 2 + heads * 64 * 4
        #expect(probe.memory.peak == live + scratch && probe.memory.inUse == live)
    }

    /// Bytes `fusedLinear` (RMSNorm folded in, the sum into `out`) holds beyond its operands on `probe`.
    func fusedLinearScratch(_ probe: MemoryProbeBackend, weightType: ElementType) throws -> Int {
        let x = try probe.makeTensor([100, 64], probe.activationType)
        let out = try probe.makeTensor([100, 32], probe.activationType)
        let weight = try probe.makeTensor([32, 64], weightType), norm = try probe.makeTensor([64], .fp32)
        probe.memory.resetPeak()
        let live = probe.memory.inUse
        try probe.fusedLinear(x, norm: .rms(weight: norm, eps: 1e-5), weight: weight, rows: nil, bias: nil, out: out,
                              accumulate: true)
        return probe.memory.peak - live
    }

    @Test func fusedOperationsAllocateNothingAndForeignWeightsTheirConversion() throws {
        let cuda = try BackendRegistry.probe(standingInFor: "cuda", dtype: .bf16, memoryLimit: nil)
        #expect(try fusedLinearScratch(cuda, weightType: .bf16) == 0, "one gemv or GEMM, nothing else")
        #expect(try fusedLinearScratch(cuda, weightType: .fp32) == 100 * 64 * 4 + 100 * 32 * 4,
                "fp32 weights: an fp32 copy of x and an fp32 result")
        let cpu = try BackendRegistry.probe(standingInFor: "cpu", dtype: .fp32, memoryLimit: nil)
        #expect(try fusedLinearScratch(cpu, weightType: .fp32) == 100 * 64 * 4 + 100 * 32 * 4,
                "the protocol defaults: a normalised copy of x, then the product beside it")
    }
}
