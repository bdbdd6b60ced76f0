#if canImport(Glibc)
import Glibc
#endif
import ScopeCPU
import ScopeCUDA
import ScopeEngine
import ScopeModels
import ScopeSupport

/// Each CUDA operator against the CPU backend on fresh random inputs. Inputs are rounded to bf16 first, so both
/// backends see the same values; bf16 outputs must agree to 1e-2, fp32 outputs (SSM states) to 1e-3.
final class KernelChecks {
    static let bf16Tolerance = 1e-2
    static let fp32Tolerance = 1e-3

    let cpu = CPUBackend()
    let gpu: CUDABackend
    private var rng = SplitMix64(seed: 2026)
    private let report: (SelfTestResult) -> Void
    private var results: [SelfTestResult] = [] {
        didSet { if let last = results.last { report(last) } }
    }

    /// `report` sees each result as soon as it exists.
    init(gpu: CUDABackend, report: @escaping (SelfTestResult) -> Void) {
        self.gpu = gpu
        self.report = report
    }

    /// The same values on both backends: fp32 on the CPU; `type` on the GPU.
    struct Pair {
        let cpu: Tensor
        let gpu: Tensor
    }

    func run() throws -> [SelfTestResult] {
        try dense()
        try attention()
        try ssm()
        return results
    }

    // MARK: Inputs and comparisons

    private func random(_ count: Int, _ low: Float, _ high: Float) -> [Float] {
        (0..<count).map { _ in
            ElementConversion.float(bf16: ElementConversion.bf16(Float(rng.uniform(Double(low), Double(high)))))
        }
    }

    private func pair(_ shape: [Int], _ type: ElementType = .bf16, values: [Float]) throws -> Pair {
        let c = try cpu.makeTensor(shape, .fp32), g = try gpu.makeTensor(shape, type)
        try cpu.upload(values, into: c)
        try gpu.upload(values, into: g)
        return Pair(cpu: c, gpu: g)
    }

    private func pair(_ shape: [Int], _ type: ElementType = .bf16, _ low: Float = -1, _ high: Float = 1) throws -> Pair {
        try pair(shape, type, values: random(shape.reduce(1, *), low, high))
    }

    private func zeros(_ shape: [Int], _ type: ElementType = .bf16) throws -> Pair {
        Pair(cpu: try cpu.makeTensor(shape, .fp32), gpu: try gpu.makeTensor(shape, type))
    }

    private func compare(_ group: String, _ name: String, _ p: Pair) {
        let tolerance = p.gpu.type == .fp32 ? Self.fp32Tolerance : Self.bf16Tolerance
        do {
            let error = CUDASelfTest.relativeError(try gpu.download(p.gpu), try cpu.download(p.cpu))
            results.append(SelfTestResult(group: group, name: name, error: error, tolerance: tolerance, failure: nil))
        } catch {
            results.append(SelfTestResult(group: group, name: name, error: .infinity, tolerance: tolerance,
                                          failure: "\(error)"))
        }
    }

    /// Runs `body` on both backends; an error from either is recorded as a failed check.
    private func check(_ group: String, _ name: String, _ body: () throws -> [Pair]) {
        do {
            let outputs = try body()
            for (i, p) in outputs.enumerated() {
                compare(group, outputs.count > 1 && i > 0 ? "\(name) #\(i)" : name, p)
            }
        } catch {
            results.append(SelfTestResult(group: group, name: name, error: .infinity, tolerance: Self.bf16Tolerance,
                                          failure: "\(error)"))
        }
    }

    // MARK: Dense operators

    private func dense() throws {
        check("dense", "embedding (bf16 table)") {
            let table = try pair([50, 96]), out = try zeros([7, 96])
            let ids: [Int32] = [3, 0, 49, 7, 7, 12, 31]
            try cpu.embedding(table: table.cpu, ids: ids, out: out.cpu)
            try gpu.embedding(table: table.gpu, ids: ids, out: out.gpu)
            return [out]
        }
        let linearCases: [(ElementType, Range<Int>?, Int)] = [
            (.bf16, nil, 37), (.bf16, 16..<56, 37), (.fp16, nil, 37), (.fp32, 8..<40, 37), (.bf16, nil, 3),
            (.bf16, 16..<56, 1),
        ]
        for (type, rows, m) in linearCases {
            check("dense", "linear \(m) rows, \(type) weight\(rows.map { " rows \($0)" } ?? "") + bias") {
                let x = try pair([m, 96]), w = try pair([80, 96], type, -0.2, 0.2)
                let n = rows?.count ?? 80
                let bias = try pair([n], .fp32), out = try zeros([m, n])
                try cpu.linear(x.cpu, weight: w.cpu, rows: rows, bias: bias.cpu, out: out.cpu)
                try gpu.linear(x.gpu, weight: w.gpu, rows: rows, bias: bias.gpu, out: out.gpu)
                return [out]
            }
        }
        // The decode gemv's shapes: short rows (one or a few warps per column), one to eight loads per thread and
        // column with a partial last one, several rows, the residual sum; then the input norms folded in.
        for (m, k, n) in [(1, 128, 300), (5, 1000, 37), (1, 2048, 1000), (3, 4096, 257), (1, 6144, 90), (2, 16384, 40)] {
            check("dense", "gemv \(m) x \(k) -> \(n) + bias, accumulated") {
                let x = try pair([m, k]), w = try pair([n, k], .bf16, -0.05, 0.05), bias = try pair([n], .fp32)
                let out = try pair([m, n])
                try cpu.fusedLinear(x.cpu, norm: nil, weight: w.cpu, rows: nil, bias: bias.cpu, out: out.cpu,
                                    accumulate: true)
                try gpu.fusedLinear(x.gpu, norm: nil, weight: w.gpu, rows: nil, bias: bias.gpu, out: out.gpu,
                                    accumulate: true)
                return [out]
            }
        }
        // groups 0: a plain RMSNorm; one group defers the norm's scale to the epilogue, two or more do not.
        for (m, k, groups, normBeforeGate) in [(1, 2048, 0, false), (8, 1024, 0, false), (1, 4096, 2, false),
                                               (3, 8192, 2, false), (1, 4096, 1, false), (3, 4096, 1, true)] {
            let gated = groups > 0
            let order = normBeforeGate ? ", norm before gate" : ""
            let name = gated ? "gated RMSNorm (\(groups) group\(groups > 1 ? "s" : "")\(order))" : "RMSNorm"
            check("dense", "gemv \(m) x \(k) with the \(name) folded in") {
                let x = try pair([m, k], .bf16, -2, 2), w = try pair([700, k], .bf16, -0.05, 0.05)
                let normWeight = try pair([k], .fp32, 0.5, 1.5), gate = try pair([m, k], .bf16, -2, 2)
                let out = try pair([m, 700])
                func norm(_ side: KeyPath<Pair, Tensor>) -> InputNorm {
                    gated ? .gatedRMS(gate: gate[keyPath: side], weight: normWeight[keyPath: side], groups: groups,
                                      eps: 1e-5, normBeforeGate: normBeforeGate)
                        : .rms(weight: normWeight[keyPath: side], eps: 1e-5)
                }
                try cpu.fusedLinear(x.cpu, norm: norm(\.cpu), weight: w.cpu, rows: nil, bias: nil, out: out.cpu,
                                    accumulate: true)
                try gpu.fusedLinear(x.gpu, norm: norm(\.gpu), weight: w.gpu, rows: nil, bias: nil, out: out.gpu,
                                    accumulate: true)
                return [out]
            }
        }
        // k 14336 (a gated MLP's down projection in several hybrids) is past the norm-folding kernels: the separate
        // operators run.
        for (m, k, kind) in [(1, 8192, Activation.silu), (2, 8192, .gelu), (1, 14336, .silu)] {
            check("dense", "gemv \(m) x \(k) with the gated \(kind) activation folded in") {
                let x = try pair([m, k], .bf16, -2, 2), gate = try pair([m, k], .bf16, -3, 3)
                let w = try pair([600, k], .bf16, -0.05, 0.05), out = try pair([m, 600])
                try cpu.fusedLinear(x.cpu, norm: .gatedActivation(gate: gate.cpu, kind: kind), weight: w.cpu,
                                    rows: nil, bias: nil, out: out.cpu, accumulate: true)
                try gpu.fusedLinear(x.gpu, norm: .gatedActivation(gate: gate.gpu, kind: kind), weight: w.gpu,
                                    rows: nil, bias: nil, out: out.gpu, accumulate: true)
                return [out]
            }
        }
        for (m, normed) in [(1, false), (1, true), (3, true)] {
            let folded = normed ? ", RMSNorm folded in" : ""
            check("dense", "three projections of one \(m)-row input as one gemv\(folded)") {
                let x = try pair([m, 2048]), normWeight = try pair([2048], .fp32, 0.5, 1.5)
                let widths = [2048, 512, 512]
                let weights = try widths.map { try pair([$0, 2048], .bf16, -0.05, 0.05) }
                let bias = try pair([512], .fp32), outs = try widths.map { try zeros([m, $0]) }
                func run(_ backend: Backend, _ side: KeyPath<Pair, Tensor>) throws {
                    let projections = (0..<3).map { i in
                        (linear: Linear(weight: weights[i][keyPath: side], rows: nil,
                                        bias: i == 1 ? bias[keyPath: side] : nil), out: outs[i][keyPath: side])
                    }
                    let norm: InputNorm? = normed ? .rms(weight: normWeight[keyPath: side], eps: 1e-5) : nil
                    try backend.fusedLinears(x[keyPath: side], norm: norm, projections)
                }
                try run(cpu, \.cpu)
                try run(gpu, \.gpu)
                return outs
            }
        }
        for normed in [false, true] {
            let folded = normed ? ", RMSNorm folded in" : ""
            check("dense", "projection with the conv step folded in\(folded)") {
                let x = try pair([1, 2048]), w = try pair([3000, 2048], .bf16, -0.05, 0.05)
                let normWeight = try pair([2048], .fp32, 0.5, 1.5)
                let convWeight = try pair([1500, 4], .fp32, -0.5, 0.5), convBias = try pair([1500], .fp32)
                let state = try pair([1, 3, 1500]), out = try zeros([1, 2900]), conv = try zeros([1, 1500])
                func run(_ backend: Backend, _ side: KeyPath<Pair, Tensor>) throws {
                    try backend.linearThenConvStep(
                        x[keyPath: side], norm: normed ? .rms(weight: normWeight[keyPath: side], eps: 1e-5) : nil,
                        Linear(weight: w[keyPath: side], rows: 100..<3000, bias: nil), out: out[keyPath: side],
                        convColumns: 1000..<2500, convWeight: convWeight[keyPath: side],
                        convBias: convBias[keyPath: side], convState: state[keyPath: side], silu: true,
                        convOut: conv[keyPath: side])
                }
                try run(cpu, \.cpu)
                try run(gpu, \.gpu)
                return [out, conv, state]
            }
        }
        for weighted in [true, false] {
            check("dense", "rmsNorm\(weighted ? "" : " (no weight)")") {
                let x = try pair([33, 1000], .bf16, -3, 3), w = try pair([1000], .fp32, 0.5, 1.5)
                let out = try zeros([33, 1000])
                try cpu.rmsNorm(x.cpu, weight: weighted ? w.cpu : nil, eps: 1e-5, out: out.cpu)
                try gpu.rmsNorm(x.gpu, weight: weighted ? w.gpu : nil, eps: 1e-5, out: out.gpu)
                return [out]
            }
        }
        for explicit in [false, true] {
            check("dense", "rope (\(explicit ? "explicit" : "contiguous") positions, partial rotary)") {
                let x = try pair([2 * 40, 4 * 64])
                let positions: [Int32] = explicit ? (0..<80).map { Int32(($0 * 37) % 5000) }
                    : (0..<80).map { Int32(1000 + $0 % 40) }
                let invFreq = (0..<24).map { Float(pow(10000.0, -Double(2 * $0) / 48)) }
                try cpu.rope(x.cpu, heads: 4, headDim: 64, rotaryDim: 48, positions: positions, invFreq: invFreq,
                             scale: 1.1)
                try gpu.rope(x.gpu, heads: 4, headDim: 64, rotaryDim: 48, positions: positions, invFreq: invFreq,
                             scale: 1.1)
                return [x]
            }
        }
        for kind in [Activation.silu, .gelu, .geluTanh, .relu, .relu2] {
            check("dense", "activation \(kind) and gated") {
                let x = try pair([3000], .bf16, -4, 4), up = try pair([3000]), out = try zeros([3000]),
                    gated = try zeros([3000])
                try cpu.activation(kind, x.cpu, out: out.cpu)
                try gpu.activation(kind, x.gpu, out: out.gpu)
                try cpu.gatedActivation(kind, gate: x.cpu, up: up.cpu, out: gated.cpu)
                try gpu.gatedActivation(kind, gate: x.gpu, up: up.gpu, out: gated.gpu)
                return [out, gated]
            }
        }
        argmaxRows()
        check("dense", "add, scale") {
            let a = try pair([5000]), b = try pair([5000]), sum = try zeros([5000])
            try cpu.add(a.cpu, b.cpu, out: sum.cpu)
            try gpu.add(a.gpu, b.gpu, out: sum.gpu)
            try cpu.scale(a.cpu, by: 0.37, out: a.cpu)
            try gpu.scale(a.gpu, by: 0.37, out: a.gpu)
            return [sum, a]
        }
        check("dense", "split, concat, gather, scatter-add rows") {
            let s = try pair([21, 50]), a = try zeros([21, 20]), b = try zeros([21, 30]), joined = try zeros([21, 50])
            try cpu.splitColumns(s.cpu, [5..<25, 20..<50], into: [a.cpu, b.cpu])
            try gpu.splitColumns(s.gpu, [5..<25, 20..<50], into: [a.gpu, b.gpu])
            try cpu.concatColumns(a.cpu, b.cpu, out: joined.cpu)
            try gpu.concatColumns(a.gpu, b.gpu, out: joined.gpu)
            let rows = [20, 3, 7, 0, 11], picked = try zeros([5, 50]), target = try pair([21, 50])
            try cpu.gatherRows(s.cpu, rows: rows, out: picked.cpu)
            try gpu.gatherRows(s.gpu, rows: rows, out: picked.gpu)
            try cpu.scatterAddRows(picked.cpu, rows: rows, weights: [0.5, 1, -2, 0.25, 3], out: target.cpu)
            try gpu.scatterAddRows(picked.gpu, rows: rows, weights: [0.5, 1, -2, 0.25, 3], out: target.gpu)
            return [joined, picked, target]
        }
    }

    // MARK: Attention

    private struct AttentionCase {
        let name: String
        let batch, newTokens, past, heads, kvHeads, headDim: Int
        let window: Int?
        let capacity: Int
    }

    private func attention() throws {
        let cases = [
            AttentionCase(name: "prefill d64 GQA 8/2 (tensor cores)", batch: 2, newTokens: 150, past: 0, heads: 8,
                          kvHeads: 2, headDim: 64, window: nil, capacity: 0),
            AttentionCase(name: "prefill d128 after 70 cached (tensor cores)", batch: 1, newTokens: 90, past: 70,
                          heads: 4, kvHeads: 4, headDim: 128, window: nil, capacity: 256),
            AttentionCase(name: "prefill d64 window 32, ring of 32 (tensor cores)", batch: 1, newTokens: 48,
                          past: 70, heads: 4, kvHeads: 2, headDim: 64, window: 32, capacity: 32),
            AttentionCase(name: "prefill d64 GQA 8/2, 600 after 400 cached (tensor cores, many tiles)", batch: 1,
                          newTokens: 600, past: 400, heads: 8, kvHeads: 2, headDim: 64, window: nil, capacity: 1024),
            AttentionCase(name: "prefill d64 window 200 after 300 cached, ring of 256 (tensor cores)", batch: 2,
                          newTokens: 500, past: 300, heads: 4, kvHeads: 1, headDim: 64, window: 200, capacity: 256),
            AttentionCase(name: "prefill d64 window 250 after 700 cached, ring of 256 (tensor cores, tiles after the wrap)",
                          batch: 1, newTokens: 130, past: 700, heads: 4, kvHeads: 2, headDim: 64, window: 250,
                          capacity: 256),
            AttentionCase(name: "prefill d128 window 250 after 700 cached, ring of 256 (tensor cores, tiles after the wrap)",
                          batch: 1, newTokens: 70, past: 700, heads: 2, kvHeads: 1, headDim: 128, window: 250,
                          capacity: 256),
            AttentionCase(name: "prefill d32 GQA 4/2 (tensor cores)", batch: 1, newTokens: 200, past: 0, heads: 4,
                          kvHeads: 2, headDim: 32, window: nil, capacity: 0),
            AttentionCase(name: "prefill d8 (split-KV)", batch: 2, newTokens: 24, past: 5, heads: 4, kvHeads: 2,
                          headDim: 8, window: nil, capacity: 64),
            AttentionCase(name: "decode d64 past 3000 (split-KV)", batch: 2, newTokens: 1, past: 3000, heads: 8,
                          kvHeads: 2, headDim: 64, window: nil, capacity: 4096),
            AttentionCase(name: "decode d128 window 100 ring 100", batch: 1, newTokens: 1, past: 777, heads: 4,
                          kvHeads: 1, headDim: 128, window: 100, capacity: 100),
            AttentionCase(name: "decode d256 GQA 16/2 past 1500 (split-KV, 8 heads a block)", batch: 1, newTokens: 1,
                          past: 1500, heads: 16, kvHeads: 2, headDim: 256, window: nil, capacity: 1536),
            AttentionCase(name: "3 rows d80 GQA 12/4 window 300 after 1000 cached, ring of 320 (split-KV)", batch: 2,
                          newTokens: 3, past: 1000, heads: 12, kvHeads: 4, headDim: 80, window: 300, capacity: 320),
            AttentionCase(name: "decode d12 GQA 6/2 past 300 (split-KV, element-wise loads)", batch: 2, newTokens: 1,
                          past: 300, heads: 6, kvHeads: 2, headDim: 12, window: nil, capacity: 512),
        ]
        // On GPUs with warpgroup MMAs, head size 64 prefills run on both kernels.
        let warpgroups = gpu.usesWarpgroupAttention
        let runs = cases.flatMap { c -> [(AttentionCase, Bool?)] in
            c.headDim == 64 && c.newTokens >= 16 && warpgroups ? [(c, true), (c, false)] : [(c, nil)]
        }
        defer { gpu.allowsWarpgroupAttention = true }
        for (c, warpgroup) in runs {
            let kernel = warpgroup.map { $0 ? " [warpgroup MMAs]" : " [mma.sync]" } ?? ""
            check("attention", c.name + kernel) {
                gpu.allowsWarpgroupAttention = warpgroup ?? true
                let rows = c.batch * c.newTokens, kvWidth = c.kvHeads * c.headDim
                let q = try pair([rows, c.heads * c.headDim], .bf16, -2, 2)
                let k = try pair([rows, kvWidth], .bf16, -2, 2), v = try pair([rows, kvWidth])
                let out = try zeros([rows, c.heads * c.headDim])
                var caches: (cpu: KVCacheLayer, gpu: KVCacheLayer)?
                if c.capacity > 0 {
                    let kc = try pair([c.batch, c.capacity, kvWidth], .bf16, -2, 2)
                    let vc = try pair([c.batch, c.capacity, kvWidth])
                    caches = (KVCacheLayer(keys: kc.cpu, values: vc.cpu, capacity: c.capacity),
                              KVCacheLayer(keys: kc.gpu, values: vc.gpu, capacity: c.capacity))
                }
                let scale = 1 / Float(c.headDim).squareRoot()
                try cpu.attention(q: q.cpu, kNew: k.cpu, vNew: v.cpu, cache: c.past > 0 ? caches?.cpu : nil,
                                  batch: c.batch, newTokens: c.newTokens, past: c.past, heads: c.heads,
                                  kvHeads: c.kvHeads, headDim: c.headDim, window: c.window, scale: scale, out: out.cpu)
                try gpu.attention(q: q.gpu, kNew: k.gpu, vNew: v.gpu, cache: c.past > 0 ? caches?.gpu : nil,
                                  batch: c.batch, newTokens: c.newTokens, past: c.past, heads: c.heads,
                                  kvHeads: c.kvHeads, headDim: c.headDim, window: c.window, scale: scale, out: out.gpu)
                guard let caches else { return [out] }
                try cpu.appendKV(kNew: k.cpu, vNew: v.cpu, cache: caches.cpu, batch: c.batch, newTokens: c.newTokens,
                                 past: c.past)
                try gpu.appendKV(kNew: k.gpu, vNew: v.gpu, cache: caches.gpu, batch: c.batch, newTokens: c.newTokens,
                                 past: c.past)
                return [out, Pair(cpu: caches.cpu.keys, gpu: caches.gpu.keys),
                        Pair(cpu: caches.cpu.values, gpu: caches.gpu.values)]
            }
        }
    }

    /// Greedy decoding's argmax on the GPU against `Greedy.argmax` of the same (bf16) values: a vocabulary-sized row,
    /// a row whose maximum appears twice (the first wins), a row of equal values, one of -inf and one with NaN
    /// among finite values. The error is the share of rows whose index differs.
    private func argmaxRows() {
        let columns = 128_256
        var rows = [random(columns, -4, 4), random(columns, -4, 4), [Float](repeating: 0.5, count: columns),
                    [Float](repeating: -.infinity, count: columns), random(columns, -4, 4)]
        rows[1][70_000] = 9
        rows[1][90_000] = 9
        rows[4][3] = .nan
        rows[4][100_000] = 8
        do {
            let x = try pair([rows.count, columns], .bf16, values: rows.flatMap { $0 })
            let expected = try cpu.download(x.cpu)
            let reference = (0..<rows.count).map { Greedy.argmax(expected[($0 * columns)..<(($0 + 1) * columns)]) }
            let got = try gpu.argmaxRows(x.gpu)
            let wrong = zip(got, reference).filter { $0 != $1 }.count
            results.append(SelfTestResult(group: "dense", name: "argmax of 5 rows of 128256 (ties, -inf, NaN)",
                                          error: Double(wrong) / Double(rows.count), tolerance: 0.1,
                                          failure: wrong == 0 ? nil : "indices \(got), expected \(reference)"))
        } catch {
            results.append(SelfTestResult(group: "dense", name: "argmax of 5 rows of 128256 (ties, -inf, NaN)",
                                          error: .infinity, tolerance: 0.1, failure: "\(error)"))
        }
    }

    // MARK: State-space operators

    private func ssm() throws {
        for (tokens, kernel) in [(100, 4), (1, 4), (2, 4), (37, 2)] {
            check("ssm", "conv1d \(tokens) tokens, kernel \(kernel) (out, state)") {
                let channels = 200
                let x = try pair([2 * tokens, channels]), w = try pair([channels, kernel], .fp32, -0.5, 0.5)
                let bias = try pair([channels], .fp32), state = try pair([2, kernel - 1, channels])
                let out = try zeros([2 * tokens, channels])
                try cpu.conv1d(x.cpu, weight: w.cpu, bias: bias.cpu, state: state.cpu, batch: 2, tokens: tokens,
                               silu: true, out: out.cpu)
                try gpu.conv1d(x.gpu, weight: w.gpu, bias: bias.gpu, state: state.gpu, batch: 2, tokens: tokens,
                               silu: true, out: out.gpu)
                return [out, state]
            }
        }
        // Three outputs, as Mamba-2's x, B and C: block boundaries on multiples of 8 (eight channels a thread) or not
        // (one channel a thread); kernels 6 and 8 take the variant for kernel sizes up to 8; 150 tokens are two
        // whole runs of 64 tokens and a partial one.
        let aligned = [0..<192, 192..<232, 232..<272], unaligned = [0..<100, 100..<150, 150..<203]
        for (blocks, kernel) in [(aligned, 4), (unaligned, 4), (aligned, 6), (unaligned, 8)] {
            let channels = blocks[2].upperBound, tokens = 150, ends = blocks.map(\.upperBound)
            check("ssm", "conv1d \(tokens) tokens, kernel \(kernel), split at \(ends) (x, B, C, state)") {
                let x = try pair([2 * tokens, channels]), w = try pair([channels, kernel], .fp32, -0.5, 0.5)
                let bias = try pair([channels], .fp32), state = try pair([2, kernel - 1, channels])
                let outputs = try blocks.map { try zeros([2 * tokens, $0.count]) }
                try cpu.conv1d(x.cpu, weight: w.cpu, bias: bias.cpu, state: state.cpu, batch: 2, tokens: tokens,
                               silu: true, splitInto: outputs.map(\.cpu), columns: blocks)
                try gpu.conv1d(x.gpu, weight: w.gpu, bias: bias.gpu, state: state.gpu, batch: 2, tokens: tokens,
                               silu: true, splitInto: outputs.map(\.gpu), columns: blocks)
                return outputs + [state]
            }
        }
        // Steps softplus(delta) from delta in [-4, 0] (0.02 to 0.7) forget the state within tens of tokens; the
        // 5000-token case's delta in [-8, -5] (0.0003 to 0.007) carries it across many of the CUDA scan's 256-token
        // tiles from a nonzero start. 100 channels: rows too narrow for 16-byte loads, a block past the last channel.
        let scans: [(tokens: Int, dState: Int, gated: Bool, dInner: Int, delta: ClosedRange<Float>)] = [
            (150, 16, true, 96, -4...0), (1, 16, true, 96, -4...0), (40, 8, false, 96, -4...0),
            (3000, 16, true, 96, -4...0), (70, 1, true, 96, -4...0), (90, 100, false, 96, -4...0),
            (5000, 16, true, 96, -8...(-5)), (300, 16, true, 100, -4...0)]
        for (tokens, dState, gated, dInner, range) in scans {
            let channels = dInner == 96 ? "" : ", \(dInner) channels"
            check("ssm", "selective scan \(tokens) tokens, N \(dState)\(gated ? ", gated" : "")\(channels) (out, state)") {
                let u = try pair([2 * tokens, dInner])
                let delta = try pair([2 * tokens, dInner], .bf16, range.lowerBound, range.upperBound)
                let a = try pair([dInner, dState], .fp32, values: (0..<(dInner * dState)).map { -Float($0 % dState + 1) })
                let b = try pair([2 * tokens, dState]), c = try pair([2 * tokens, dState])
                let d = try pair([dInner], .fp32, 0.5, 1.5), z = try pair([2 * tokens, dInner], .bf16, -2, 2)
                let state = try pair([2, dInner, dState], .fp32, -0.5, 0.5), out = try zeros([2 * tokens, dInner])
                try cpu.selectiveScan(u: u.cpu, delta: delta.cpu, A: a.cpu, B: b.cpu, C: c.cpu, D: d.cpu,
                                      z: gated ? z.cpu : nil, state: state.cpu, batch: 2, tokens: tokens, out: out.cpu)
                try gpu.selectiveScan(u: u.gpu, delta: delta.gpu, A: a.gpu, B: b.gpu, C: c.gpu, D: d.gpu,
                                      z: gated ? z.gpu : nil, state: state.gpu, batch: 2, tokens: tokens, out: out.gpu)
                return [out, state]
            }
        }
        // A decode step with dt_proj folded in against the projection then the one-token scan: Mamba-1 1.4B's
        // shape (rank 128, 4096 channels, N 16) for one and a few sequences, with and without the dt bias; ranks of
        // 48 (chunks for some lanes only) and 256 (two per lane); ranks that are not multiples of 8 (element by
        // element); 100 channels (a block past the last one), N 1 and N 100; weight blocks past row 0. The CPU
        // computes in fp32, so its reference rounds the projection to bf16, as the GPU's separate projection stores
        // it.
        let steps: [(rows: Int, rank: Int, dInner: Int, dState: Int, bias: Bool, offset: Int)] = [
            (1, 128, 4096, 16, true, 0), (3, 128, 4096, 16, true, 0), (1, 128, 4096, 16, false, 0),
            (2, 48, 96, 16, true, 0), (1, 256, 200, 16, true, 0), (2, 5, 100, 8, true, 0),
            (1, 12, 100, 100, false, 0), (4, 24, 40, 1, true, 8), (8, 36, 64, 16, true, 3)]
        for (rows, rank, dInner, dState, hasBias, offset) in steps {
            let name = "selective step with dt_proj folded in, \(rows) x \(rank) -> \(dInner)"
                + (hasBias ? " + bias" : "") + (offset > 0 ? " (weight rows from \(offset))" : "")
            check("ssm", "\(name), N \(dState) (out, state)") {
                let u = try pair([rows, dInner]), dt = try pair([rows, rank], .bf16, -2, 2)
                let w = try pair([offset + dInner, rank], .bf16, -0.3, 0.3), bias = try pair([dInner], .fp32, -3, -1)
                let a = try pair([dInner, dState], .fp32,
                                 values: (0..<(dInner * dState)).map { -Float($0 % dState + 1) })
                let b = try pair([rows, dState]), c = try pair([rows, dState])
                let d = try pair([dInner], .fp32, 0.5, 1.5), z = try pair([rows, dInner], .bf16, -2, 2)
                let state = try pair([rows, dInner, dState], .fp32, -0.5, 0.5), out = try zeros([rows, dInner])
                let weightRows = offset > 0 ? offset..<(offset + dInner) : nil
                let delta = try cpu.makeTensor([rows, dInner], .fp32)
                try cpu.linear(dt.cpu, weight: w.cpu, rows: weightRows, bias: hasBias ? bias.cpu : nil, out: delta)
                let rounded = try cpu.download(delta).map { ElementConversion.float(bf16: ElementConversion.bf16($0)) }
                try cpu.upload(rounded, into: delta)
                try cpu.selectiveScan(u: u.cpu, delta: delta, A: a.cpu, B: b.cpu, C: c.cpu, D: d.cpu, z: z.cpu,
                                      state: state.cpu, batch: rows, tokens: 1, out: out.cpu)
                try gpu.selectiveStepWithDeltaProjection(
                    u: u.gpu, dt: dt.gpu, dtProjection: Linear(weight: w.gpu, rows: weightRows,
                                                               bias: hasBias ? bias.gpu : nil),
                    A: a.gpu, B: b.gpu, C: c.gpu, D: d.gpu, z: z.gpu, state: state.gpu, batch: rows, out: out.gpu)
                return [out, state]
            }
        }
        // Batch 2 walks super-chunks of 8192 tokens: 17000 tokens take three (the last one 616 tokens, not a whole
        // number of 256-token chunks), each starting from the state the previous one left. P 128 takes two p tiles;
        // P 24 and N 256 pad their tiles; P 12 and N 20 take the plain recurrence.
        let ssdCases = [(150, 64, 128), (1, 64, 128), (17000, 64, 128), (700, 128, 64), (300, 24, 256), (77, 8, 8),
                        (1, 8, 8), (40, 12, 20)]
        for (tokens, p, n) in ssdCases {
            check("ssm", "ssd \(tokens) tokens, P \(p), N \(n), 4 heads, 2 groups (out, state)") {
                let heads = 4, groups = 2, rows = 2 * tokens
                let x = try pair([rows, heads * p]), dt = try pair([rows, heads], .bf16, -4, 0)
                let dtBias = try pair([heads], .fp32, -1, 1), a = try pair([heads], .fp32, -8, -1)
                let b = try pair([rows, groups * n]), c = try pair([rows, groups * n])
                let d = try pair([heads], .fp32, 0.5, 1.5), state = try pair([2, heads, p, n], .fp32, -0.5, 0.5)
                let out = try zeros([rows, heads * p])
                try cpu.ssd(x: x.cpu, dt: dt.cpu, dtBias: dtBias.cpu, A: a.cpu, B: b.cpu, C: c.cpu, D: d.cpu,
                            state: state.cpu, batch: 2, tokens: tokens, heads: heads, headDim: p, groups: groups,
                            stateSize: n, chunkSize: 64, dtMin: 0.001, dtMax: .infinity, out: out.cpu)
                try gpu.ssd(x: x.gpu, dt: dt.gpu, dtBias: dtBias.gpu, A: a.gpu, B: b.gpu, C: c.gpu, D: d.gpu,
                            state: state.gpu, batch: 2, tokens: tokens, heads: heads, headDim: p, groups: groups,
                            stateSize: n, chunkSize: 64, dtMin: 0.001, dtMax: .infinity, out: out.gpu)
                return [out, state]
            }
        }
        // A Mamba-2 decode step with its gated norm inside the step and the norm's scale inside the out projection
        // (ssd_step_gated, gemv_presummed) against the CPU's ssd, gated RMSNorm and projection; P 20 leaves warps
        // past P in each block's sum, 64 heads of P 64 are Mamba-2 1.3B's shapes.
        for (heads, p, n, normBeforeGate) in [(16, 64, 128, false), (6, 20, 64, true), (64, 64, 128, false)] {
            let order = normBeforeGate ? "before" : "after"
            check("ssm", "ssd step with the gated norm (\(heads) heads, P \(p), N \(n), norm \(order) gate), then "
                  + "the out projection (residual, state)") {
                // (With SSM_SCOPE_CUDA_GATED_STEP=0 this checks the host fallback instead, in one part.)
                let inner = heads * p, outputs = 700
                let parts = gpu.gatedStepParts(rows: 1, heads: heads, headDim: p, innerSize: inner) ?? 1
                let x = try pair([1, inner]), dt = try pair([1, heads], .bf16, -4, 0)
                let z = try pair([1, inner], .bf16, -3, 3)
                let dtBias = try pair([heads], .fp32, -1, 1), a = try pair([heads], .fp32, -8, -1)
                let b = try pair([1, n]), c = try pair([1, n]), d = try pair([heads], .fp32, 0.5, 1.5)
                let state = try pair([1, heads, p, n], .fp32, -0.5, 0.5)
                let normWeight = try pair([inner], .fp32, 0.5, 1.5)
                let w = try pair([outputs, inner], .bf16, -0.05, 0.05), residual = try pair([1, outputs])
                let y = try cpu.makeTensor([1, inner], .fp32), normed = try cpu.makeTensor([1, inner], .fp32)
                try cpu.ssd(x: x.cpu, dt: dt.cpu, dtBias: dtBias.cpu, A: a.cpu, B: b.cpu, C: c.cpu, D: d.cpu,
                            state: state.cpu, batch: 1, tokens: 1, heads: heads, headDim: p, groups: 1, stateSize: n,
                            chunkSize: 64, dtMin: 0.001, dtMax: .infinity, out: y)
                try cpu.gatedRMSNorm(y, gate: z.cpu, weight: normWeight.cpu, groups: 1, eps: 1e-5,
                                     normBeforeGate: normBeforeGate, out: normed)
                try cpu.fusedLinear(normed, norm: nil, weight: w.cpu, rows: nil, bias: nil, out: residual.cpu,
                                    accumulate: true)
                let gated = try gpu.makeTensor([1, inner], gpu.activationType)
                let squares = try gpu.makeTensor([1, parts], .fp32)
                try gpu.ssdStepGated(x: x.gpu, dt: dt.gpu, dtBias: dtBias.gpu, A: a.gpu, B: b.gpu, C: c.gpu,
                                     D: d.gpu, state: state.gpu, batch: 1, heads: heads, headDim: p, groups: 1,
                                     stateSize: n, dtMin: 0.001, dtMax: .infinity, gate: z.gpu, normWeight: normWeight.gpu,
                                     normBeforeGate: normBeforeGate, out: gated, squares: squares)
                try gpu.fusedLinear(gated, norm: .presummedRMS(squares: squares, eps: 1e-5), weight: w.gpu,
                                    rows: nil, bias: nil, out: residual.gpu, accumulate: true)
                return [residual, state]
            }
        }
        for normBeforeGate in [false, true] {
            check("ssm", "gated RMSNorm, 2 groups, norm \(normBeforeGate ? "before" : "after") gate") {
                let x = try pair([19, 256], .bf16, -3, 3), z = try pair([19, 256], .bf16, -3, 3)
                let w = try pair([256], .fp32, 0.5, 1.5), out = try zeros([19, 256])
                try cpu.gatedRMSNorm(x.cpu, gate: z.cpu, weight: w.cpu, groups: 2, eps: 1e-6,
                                     normBeforeGate: normBeforeGate, out: out.cpu)
                try gpu.gatedRMSNorm(x.gpu, gate: z.gpu, weight: w.gpu, groups: 2, eps: 1e-6,
                                     normBeforeGate: normBeforeGate, out: out.gpu)
                return [out]
            }
        }
    }
}
