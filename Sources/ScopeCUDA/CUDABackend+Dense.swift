import ScopeEngine
import ScopeModels
import ScopeSupport

/// Kernels of the modules "elementwise", "gemv", "norms" and "rope".
private enum K {
    static let embedding = Kernel(module: "elementwise", name: "embedding")
    static let add = Kernel(module: "elementwise", name: "add")
    static let scale = Kernel(module: "elementwise", name: "scale")
    static let activation = Kernel(module: "elementwise", name: "activation")
    static let gated = Kernel(module: "elementwise", name: "gated_activation")
    static let copyColumns = Kernel(module: "elementwise", name: "copy_columns")
    static let gather = Kernel(module: "elementwise", name: "gather_rows")
    static let scatterAdd = Kernel(module: "elementwise", name: "scatter_add_rows")
    static let convert = Kernel(module: "elementwise", name: "convert")
    static let biasStore = Kernel(module: "elementwise", name: "bias_store")
    static let argmax = Kernel(module: "elementwise", name: "argmax_rows")
    /// The gemv kernels by rows (1, or up to 8) and 16-byte loads per thread and column (1, 2, 4, 8).
    static let gemvKernels = [1, 8].map { rows in
        [1, 2, 4, 8].map { Kernel(module: "gemv", name: "gemv_r\(rows)_v\($0)") }
    }
    static let gemvNormKernels = [1, 8].map { rows in
        [1, 2, 4].map { Kernel(module: "gemv", name: "gemv_norm_r\(rows)_v\($0)") }
    }
    /// The gemv kernel for `rows` rows (one, or up to eight) and `loads` (1, 2, 4 or 8) loads per thread and column.
    static func gemv(rows: Int, loads: Int) -> Kernel { gemvKernels[rows == 1 ? 0 : 1][loads.trailingZeroBitCount] }
    /// The gemv kernel with the input norm folded in, for `rows` rows and `loads` (1, 2 or 4) eight-element chunks
    /// per thread.
    static func gemvNorm(rows: Int, loads: Int) -> Kernel {
        gemvNormKernels[rows == 1 ? 0 : 1][loads.trailingZeroBitCount]
    }
    /// The one-row gemv whose input carries an RMSNorm's weight, its sums of squares taken before (the scale in its
    /// epilogue), for `loads` 1, 2 or 4.
    static let gemvPresummedKernels = [1, 2, 4].map { Kernel(module: "gemv", name: "gemv_presummed_r1_v\($0)") }
    static let rmsnorm = Kernel(module: "norms", name: "rmsnorm")
    static let rope = Kernel(module: "rope", name: "rope")
}

/// Dense operators: embedding, linear (cuBLAS), RMSNorm, RoPE, activations, sums and copies.
extension CUDABackend {
    public func embedding(table: Tensor, ids: [Int32], out: Tensor) throws {
        try requireActivations(out, in: "embedding")
        let vocab = table.rows
        try check(out.rows == ids.count && out.columns == table.columns, "embedding \(table.shape) -> \(out.shape)")
        if let bad = ids.first(where: { $0 < 0 || Int($0) >= vocab }) {
            throw ScopeError("cuda backend: token id \(bad) outside the vocabulary of \(vocab)")
        }
        let device = try recording?.tokens(ids) ?? stage(ids)
        try launchElementwise(K.embedding, count: out.count, [
            .tensor(table), table.type.kernelCode, .pointer(device), .tensor(out), .int(table.columns),
            .int64(ids.count)])
    }

    /// out = x W[rows]^T (+ bias) with fp32 accumulation: up to 8 rows (decode) with bf16 weights by the gemv
    /// kernel; otherwise cublasGemmEx, bf16 weights multiplying the bf16 activations directly, fp16 and fp32
    /// weights with a converted copy of x and an fp32 result, rounded to bf16 with the bias.
    public func linear(_ x: Tensor, weight: Tensor, rows: Range<Int>?, bias: Tensor?, out: Tensor) throws {
        try project(x, weight: weight, rows: rows, bias: bias, out: out, accumulate: false)
    }

    /// The norm and the residual sum folded into the gemv kernel for up to 8 rows with weights of the activation
    /// type (the norm recomputed by every block, the sum taken in fp32 before rounding); otherwise the norm as its
    /// own kernel and the sum through cuBLAS's beta.
    public func fusedLinear(_ x: Tensor, norm: InputNorm?, weight: Tensor, rows: Range<Int>?, bias: Tensor?,
                            out: Tensor, accumulate: Bool) throws {
        guard let norm else {
            return try project(x, weight: weight, rows: rows, bias: bias, out: out, accumulate: accumulate)
        }
        let segment = try gemvSegment(x, weight: weight, rows: rows, bias: bias, out: out)
        if weight.type == activationType,
           try gemv(x, norm: norm, [segment], k: weight.columns, accumulate: accumulate) { return }
        try project(try applyNorm(norm, to: x), weight: weight, rows: rows, bias: bias, out: out,
                    accumulate: accumulate)
    }

    /// Up to three projections of one decode-sized input by weights of the activation type as one gemv launch
    /// (the input norm folded in as for `fusedLinear`); otherwise one `fusedLinear` each.
    public func fusedLinears(_ x: Tensor, norm: InputNorm?, _ projections: [(linear: Linear, out: Tensor)]) throws {
        let k = projections.first?.linear.weight.columns ?? 0
        if (1...3).contains(projections.count),
           projections.allSatisfy({ $0.linear.weight.type == activationType && $0.linear.weight.columns == k }) {
            let segments = try projections.map {
                try gemvSegment(x, weight: $0.linear.weight, rows: $0.linear.rows, bias: $0.linear.bias, out: $0.out)
            }
            if try gemv(x, norm: norm, segments, k: k, accumulate: false) { return }
        }
        try fusedLinearsOneByOne(x, norm: norm, projections)
    }

    /// The conv step runs in the projection gemv's epilogue (the thread that writes a conv column owns its channel's
    /// state), for one row: where the gemv does not take the shapes, the separate operators stand in, and they take
    /// one row.
    public func foldsConvStep(rows: Int) -> Bool { rows == 1 }

    public func linearThenConvStep(_ x: Tensor, norm: InputNorm?, _ projection: Linear, out: Tensor,
                                   convColumns: Range<Int>, convWeight: Tensor, convBias: Tensor?, convState: Tensor,
                                   silu: Bool, convOut: Tensor) throws {
        let weight = projection.weight, channels = convColumns.count, kernel = convWeight.columns
        let segment = try gemvSegment(x, weight: weight, rows: projection.rows, bias: projection.bias, out: out)
        try requireActivations(convState, convOut, in: "conv1d step")
        try requireFP32(convWeight, convBias, in: "conv1d parameters")
        try check(convColumns.upperBound <= out.columns && (1...8).contains(kernel) && convWeight.rows == channels
                  && (convBias?.count ?? channels) == channels && convState.count == x.rows * (kernel - 1) * channels
                  && convOut.rows == x.rows && convOut.columns == channels,
                  "conv step over columns \(convColumns) of \(out.shape): weight \(convWeight.shape), state "
                  + "\(convState.shape), out \(convOut.shape)")
        let step = GemvConvStep(weight: convWeight, bias: convBias, state: convState, out: convOut,
                                first: convColumns.lowerBound, kernel: kernel, silu: silu)
        if weight.type == activationType,
           try gemv(x, norm: norm, [segment], k: weight.columns, accumulate: false, conv: step) { return }
        try linearThenConvStepBySeparateOperators(x, norm: norm, projection, out: out, convColumns: convColumns,
                                                  convWeight: convWeight, convBias: convBias, convState: convState,
                                                  silu: silu, convOut: convOut)
    }

    public func foldsInputNorm(rows: Int) -> Bool { rows <= Self.foldedNormRows }

    /// Bytes a linear layer allocates beyond its operands: with weights of another type than the activations, a
    /// converted copy of the input and an fp32 result; nothing otherwise. Public so that the allocation probe can
    /// stand in for this backend.
    public static func linearScratchBytes(input: Int, output: Int, weight: ElementType, activation: ElementType)
        -> Int {
        weight == activation ? 0 : max(1, input) * weight.byteSize + max(1, output) * 4
    }

    /// Linears of up to this many rows (decode steps) take their input's norm inside the gemv kernel.
    public static let foldedNormRows = 8

    private func project(_ x: Tensor, weight: Tensor, rows: Range<Int>?, bias: Tensor?, out: Tensor,
                         accumulate: Bool) throws {
        let segment = try gemvSegment(x, weight: weight, rows: rows, bias: bias, out: out)
        let k = weight.columns, m = x.rows, n = out.columns, w = segment.weight
        guard m > 0, n > 0 else { return }
        if weight.type == activationType {
            if try gemv(x, norm: nil, [segment], k: k, accumulate: accumulate) { return }
            try gemm(w, x: CUdeviceptr(x.address), out: CUdeviceptr(out.address), type: activationType,
                     outType: activationType,
                     m: m, n: n, k: k, accumulate: accumulate)
            if let bias {
                try launchElementwise(K.biasStore, count: out.count, [
                    .tensor(out), activationType.kernelCode, .tensor(bias), .tensor(out), .int(n), .int64(m),
                    .int(0)])
            }
            return
        }
        // The bytes of these two are `linearScratchBytes`.
        let converted = try scratch(x.count, weight.type), result = try scratch(out.count, .fp32)
        try launchElementwise(K.convert, count: x.count, [
            .tensor(x), activationType.kernelCode, .tensor(converted), weight.type.kernelCode, .int64(x.count)])
        try gemm(w, x: CUdeviceptr(converted.address), out: CUdeviceptr(result.address), type: weight.type,
                 outType: .fp32, m: m, n: n, k: k, accumulate: false)
        try launchElementwise(K.biasStore, count: out.count, [
            .tensor(result), ElementType.fp32.kernelCode, .tensor(bias), .tensor(out), .int(n), .int64(m),
            .int(accumulate ? 1 : 0)])
    }

    /// Row-major out[m, n] = x[m, k] W[n, k]^T, i.e. column-major out^T = W^T(op T) x^T.
    /// `accumulate`: out += instead of out = (cuBLAS beta 1).
    private func gemm(_ w: CUdeviceptr, x: CUdeviceptr, out: CUdeviceptr, type: ElementType, outType: ElementType,
                      m: Int, n: Int, k: Int, accumulate: Bool) throws {
        func code(_ t: ElementType) -> Int32 {
            switch t {
            case .fp32: CUBLAS.DataType.fp32
            case .bf16: CUBLAS.DataType.bf16
            case .fp16: CUBLAS.DataType.fp16
            }
        }
        var alpha: Float = 1, beta: Float = accumulate ? 1 : 0
        let blas = runtime.cublas
        let status = blas.cublasGemmEx(
            self.blas, 1, 0, Int32(n), Int32(m), Int32(k), &alpha,
            UnsafeRawPointer(bitPattern: UInt(w)), code(type), Int32(k),
            UnsafeRawPointer(bitPattern: UInt(x)), code(type), Int32(k), &beta,
            UnsafeMutableRawPointer(bitPattern: UInt(out)), code(outType), Int32(n),
            CUBLAS.computeFP32, CUBLAS.defaultAlgorithm)
        try blas.check(status, "cublasGemmEx(\(type), m \(m), n \(n), k \(k))")
    }

    public func rmsNorm(_ x: Tensor, weight: Tensor?, eps: Float, out: Tensor) throws {
        try requireActivations(x, out, in: "rmsNorm")
        try requireFP32(weight, in: "rmsNorm weight")
        try check(x.count == out.count && (weight?.count ?? x.columns) == x.columns, "rmsNorm \(x.shape)")
        try launch(K.rmsnorm, grid: (x.rows, 1, 1), block: x.rows < 64 ? 1024 : 128, [
            .tensor(x), .tensor(weight), .float(eps), .tensor(out), .int(x.columns)])
    }

    public func rope(_ x: Tensor, heads: Int, headDim: Int, rotaryDim: Int, positions: [Int32], invFreq: [Float],
                     scale: Float) throws {
        try requireActivations(x, in: "rope")
        try check(x.columns == heads * headDim && x.rows == positions.count && rotaryDim % 2 == 0
                  && rotaryDim <= headDim && invFreq.count >= rotaryDim / 2, "rope on \(x.shape)")
        guard rotaryDim > 0, !positions.isEmpty else { return }
        // Positions base + t % period (every executor pass) need no upload.
        // A recorded step reads its positions from the step inputs that each replay refreshes.
        let recorded = recording?.positions(positions)
        let pattern = recorded == nil ? Self.periodicPattern(positions) : nil
        let table = try stage(Array(invFreq.prefix(rotaryDim / 2)))
        let explicit = try recorded ?? (pattern == nil ? stage(positions) : 0)
        try launchElementwise(K.rope, count: positions.count * heads * rotaryDim / 2, [
            .tensor(x), .int(heads), .int(headDim), .int(rotaryDim), .pointer(explicit),
            .int(Int(pattern?.base ?? 0)), .int(pattern?.period ?? 1), .pointer(table), .float(scale),
            .int64(positions.count)])
    }

    /// (base, period) when positions[i] == base + i % period for every i.
    static func periodicPattern(_ positions: [Int32]) -> (base: Int32, period: Int)? {
        let base = positions[0]
        var period = positions.count
        for i in 1..<max(1, positions.count) where positions[i] != base + Int32(i) {
            period = i
            break
        }
        for i in positions.indices where positions[i] != base + Int32(i % period) { return nil }
        return (base, period)
    }

    public func activation(_ kind: Activation, _ x: Tensor, out: Tensor) throws {
        try requireActivations(x, out, in: "activation")
        try check(x.count == out.count, "activation \(x.shape) -> \(out.shape)")
        try launchElementwise(K.activation, count: x.count, [Self.code(kind), .tensor(x), .tensor(out), .int64(x.count)])
    }

    public func gatedActivation(_ kind: Activation, gate: Tensor, up: Tensor, out: Tensor) throws {
        try requireActivations(gate, up, out, in: "gatedActivation")
        try check(gate.count == up.count && up.count == out.count, "gatedActivation \(gate.shape) x \(up.shape)")
        try launchElementwise(K.gated, count: up.count, [
            Self.code(kind), .tensor(gate), .tensor(up), .tensor(out), .int64(up.count)])
    }

    public func add(_ a: Tensor, _ b: Tensor, out: Tensor) throws {
        try requireActivations(a, b, out, in: "add")
        try check(a.count == b.count && b.count == out.count, "add \(a.shape) + \(b.shape)")
        try launchElementwise(K.add, count: a.count, [.tensor(a), .tensor(b), .tensor(out), .int64(a.count)])
    }

    public func scale(_ x: Tensor, by factor: Float, out: Tensor) throws {
        try requireActivations(x, out, in: "scale")
        try check(x.count == out.count, "scale \(x.shape)")
        try launchElementwise(K.scale, count: x.count, [.tensor(x), .float(factor), .tensor(out), .int64(x.count)])
    }

    public func splitColumns(_ source: Tensor, _ ranges: [Range<Int>], into outputs: [Tensor]) throws {
        try requireActivations(source, in: "splitColumns")
        for (range, output) in zip(ranges, outputs) {
            try requireActivations(output, in: "splitColumns")
            try check(output.columns == range.count && output.rows == source.rows
                      && range.upperBound <= source.columns, "splitColumns \(source.shape)[\(range)]")
            try copyColumns(source, offset: range.lowerBound, into: output, at: 0, count: range.count)
        }
    }

    public func concatColumns(_ a: Tensor, _ b: Tensor, out: Tensor) throws {
        try requireActivations(a, b, out, in: "concatColumns")
        try check(a.rows == b.rows && out.rows == a.rows && out.columns == a.columns + b.columns,
                  "concatColumns \(a.shape) | \(b.shape) -> \(out.shape)")
        try copyColumns(a, offset: 0, into: out, at: 0, count: a.columns)
        try copyColumns(b, offset: 0, into: out, at: a.columns, count: b.columns)
    }

    private func copyColumns(_ source: Tensor, offset: Int, into destination: Tensor, at: Int, count: Int) throws {
        try launchElementwise(K.copyColumns, count: source.rows * count, [
            .tensor(source), .int(source.columns), .int(offset), .tensor(destination), .int(destination.columns),
            .int(at), .int(count), .int64(source.rows)])
    }

    public func gatherRows(_ source: Tensor, rows: [Int], out: Tensor) throws {
        try requireActivations(source, out, in: "gatherRows")
        try check(out.rows == rows.count && out.columns == source.columns
                  && rows.allSatisfy { $0 >= 0 && $0 < source.rows }, "gatherRows \(source.shape) -> \(out.shape)")
        guard !rows.isEmpty else { return }
        let indices = try stage(rows.map { Int32($0) })
        try launchElementwise(K.gather, count: out.count, [
            .tensor(source), .pointer(indices), .tensor(out), .int(source.columns), .int64(rows.count)])
    }

    /// out[rows[i]] += weights[i] * source[i]; the rows must be distinct (as the executor's routing gives them).
    public func scatterAddRows(_ source: Tensor, rows: [Int], weights: [Float], out: Tensor) throws {
        try requireActivations(source, out, in: "scatterAddRows")
        try check(source.rows == rows.count && weights.count == rows.count && out.columns == source.columns
                  && rows.allSatisfy { $0 >= 0 && $0 < out.rows } && Set(rows).count == rows.count,
                  "scatterAddRows \(source.shape) -> \(out.shape) (rows must be distinct and in range)")
        guard !rows.isEmpty else { return }
        let indices = try stage(rows.map { Int32($0) }), factors = try stage(weights)
        try launchElementwise(K.scatterAdd, count: source.count, [
            .tensor(source), .pointer(indices), .pointer(factors), .tensor(out), .int(source.columns),
            .int64(rows.count)])
    }

    /// One block per row finds its argmax on the GPU; only the row count's token ids come back.
    public func argmaxRows(_ x: Tensor) throws -> [Int32] {
        try requireActivations(x, in: "argmaxRows")
        guard x.rows > 0 else { return [] }
        let out = try makeOutputTensor([x.rows], .fp32)  // int32 bits
        try launch(K.argmax, grid: (x.rows, 1, 1), block: 1024, [.tensor(x), .int(Int32(x.columns)), .tensor(out)])
        var ids = [Int32](repeating: 0, count: x.rows)
        try driver.check(driver.cuMemcpyDtoH(&ids, CUdeviceptr(out.address), 4 * x.rows), "cuMemcpyDtoH_v2")
        return ids
    }

    static func code(_ kind: Activation) -> KernelArgument {
        switch kind {
        case .silu: .int(Int32(0))
        case .gelu: .int(Int32(1))
        case .geluTanh: .int(Int32(2))
        case .relu: .int(Int32(3))
        case .relu2: .int(Int32(4))
        }
    }
}

/// The causal conv step a gemv launch folds into its epilogue (gemv.cu's ConvEpilogue): the columns [first, first +
/// out.columns) of the first weight's output feed a depthwise conv of `kernel` taps.
struct GemvConvStep {
    let weight: Tensor
    let bias: Tensor?
    let state: Tensor
    let out: Tensor
    let first: Int
    let kernel: Int
    let silu: Bool

    /// The kernel's ConvEpilogue struct: weight, bias, state, out, then first | channels << 32, kernel | silu << 32.
    var words: [UInt64] {
        [UInt64(weight.address), UInt64(bias?.address ?? 0), UInt64(state.address), UInt64(out.address),
         UInt64(UInt32(first)) | UInt64(UInt32(out.columns)) << 32,
         UInt64(UInt32(kernel)) | UInt64(silu ? 1 : 0) << 32]
    }

    /// No conv (channels 0).
    static let none: [UInt64] = [0, 0, 0, 0, 0, 0]
}

/// One weight of a gemv launch: the address of its first used row, its bias and its output ([rows, columns]).
struct GemvSegment {
    let weight: CUdeviceptr
    let bias: Tensor?
    let out: Tensor
}

extension CUDABackend {
    /// Checks one projection's shapes and types and returns it as a gemv segment.
    func gemvSegment(_ x: Tensor, weight: Tensor, rows: Range<Int>?, bias: Tensor?, out: Tensor) throws
        -> GemvSegment {
        try requireActivations(x, out, in: "linear")
        try requireFP32(bias, in: "linear bias")
        let k = weight.columns, range = rows ?? 0..<weight.rows
        try check(x.columns == k && out.columns == range.count && out.rows == x.rows
                  && range.upperBound <= weight.rows && (bias?.count ?? range.count) == range.count,
                  "linear \(x.shape) x \(weight.shape)[\(range)] -> \(out.shape)")
        let w = CUdeviceptr(weight.address) + CUdeviceptr(range.lowerBound * k * weight.type.byteSize)
        return GemvSegment(weight: w, bias: bias, out: out)
    }

    /// Launches one gemv kernel over `segments` (weights of the activation type sharing the input x, whose rows
    /// are k wide), with `norm` folded in and `conv` in the epilogue; false, launching nothing, where the kernels
    /// do not take these shapes (more than 8 rows or 3 weights, k not a multiple of 8 or over their limits,
    /// unaligned rows, a norm they cannot fold, too little shared memory).
    func gemv(_ x: Tensor, norm: InputNorm?, _ segments: [GemvSegment], k: Int, accumulate: Bool,
              conv: GemvConvStep? = nil) throws -> Bool {
        let m = x.rows, widths = segments.map(\.out.columns), n = widths.reduce(0, +)
        guard (1...8).contains(m), (1...3).contains(segments.count), k % 8 == 0, k <= 8 * 2048, x.columns == k,
              x.address % 16 == 0, segments.allSatisfy({ $0.weight % 16 == 0 }) else { return false }
        guard n > 0 else { return true }
        let shape = GemvShape(k: k, columns: n, multiprocessors: device.multiprocessors)
        var shared = shape.sharedBytes(rows: m)
        var normArguments: [KernelArgument] = []
        let kernel: Kernel
        if case .presummedRMS(let squares, let eps) = norm {
            try requireFP32(squares, in: "presummed RMSNorm squares")
            guard m == 1, shape.loads <= 4, squares.rows == 1, squares.columns <= Self.presummedParts,
                  conv == nil else { return false }
            kernel = K.gemvPresummedKernels[shape.loads.trailingZeroBitCount]
            shared += 4 * 8  // the warps' sums of the parts
            normArguments = [.tensor(squares), .int(squares.columns), .float(eps)]
        } else if let norm {
            guard k <= 4 * 2048, let arguments = try foldedNormArguments(norm, x: x) else { return false }
            // The norm's per-warp sums of squares (the kernel's ROWS x 8 warps), then the staged rows.
            shared += 4 * 8 * (m == 1 ? 1 : 8) + 4 * m * k
            normArguments = arguments
            kernel = K.gemvNorm(rows: m, loads: shape.loads)  // loads <= 4: k <= 8192
        } else {
            kernel = K.gemv(rows: m, loads: shape.loads)
        }
        guard shared <= device.sharedMemoryPerBlock - 1024 else { return false }
        // The kernel's Segments struct: three weights, three biases, three outputs, then end0 | end1 << 32.
        func slot(_ i: Int, _ address: (GemvSegment) -> UInt64) -> UInt64 {
            i < segments.count ? address(segments[i]) : 0
        }
        let end0 = widths[0], end1 = widths.count > 1 ? end0 + widths[1] : n
        let words = (0..<3).map { slot($0) { $0.weight } }
            + (0..<3).map { slot($0) { UInt64($0.bias?.address ?? 0) } }
            + (0..<3).map { slot($0) { UInt64($0.out.address) } }
            + [UInt64(UInt32(end0)) | UInt64(UInt32(end1)) << 32]
        try launch(kernel, grid: (shape.blocks, 1, 1), block: 256, shared: shared, [
            .tensor(x), .words(words), .words(conv?.words ?? GemvConvStep.none), .int(m), .int(n), .int(k),
            .int(accumulate ? 1 : 0), .int(shape.threadsPerColumn)] + normArguments)
        return true
    }

    /// The gemv_norm kernels' trailing arguments for `norm` over rows of x, or nil where they cannot fold it.
    private func foldedNormArguments(_ norm: InputNorm, x: Tensor) throws -> [KernelArgument]? {
        let k = x.columns
        switch norm {
        case .rms(let normWeight, let eps):
            try requireFP32(normWeight, in: "rmsNorm weight")
            guard (normWeight?.count ?? k) == k, (normWeight?.address ?? 0) % 16 == 0 else { return nil }
            return [.int(1), .tensor(normWeight), .float(eps), .tensor(nil), .int(1), .int(0)]
        case .gatedRMS(let gate, let normWeight, let groups, let eps, let normBeforeGate):
            try requireActivations(gate, in: "gatedRMSNorm gate")
            try requireFP32(normWeight, in: "gatedRMSNorm weight")
            guard (1...8).contains(groups), k % groups == 0, (k / groups) % 8 == 0, gate.count == x.count,
                  normWeight.count == k, normWeight.address % 16 == 0, gate.address % 16 == 0 else { return nil }
            return [.int(2), .tensor(normWeight), .float(eps), .tensor(gate), .int(groups),
                    .int(normBeforeGate ? 1 : 0)]
        case .gatedActivation(let gate, let kind):
            try requireActivations(gate, in: "gatedActivation gate")
            guard gate.count == x.count, gate.address % 16 == 0, gate.rows == x.rows else { return nil }
            return [.int(3), .tensor(nil), .float(0), .tensor(gate), .int(1), Self.code(kind)]
        case .presummedRMS:
            return nil  // gemv_presummed's own arguments
        }
    }
}

/// How the gemv kernels (gemv.cu, 256 threads per block) cover an n x k weight: `threadsPerColumn` threads share a
/// column (256, or the fewest warps whose eight-element chunks cover a short k), each taking `loads` 16-byte chunks
/// of it (a power of two, k <= 8 x loads x threadsPerColumn); about two blocks per multiprocessor, so that one wave
/// covers any n, and none without columns; `perBlock` columns each.
struct GemvShape {
    let loads: Int
    let threadsPerColumn: Int
    let blocks: Int
    let perBlock: Int

    /// Dynamic shared memory for the 8 warps' shares of the block's column sums, in the kernel for `rows` rows (the
    /// one-row kernel, or the one for up to eight), before any staged input rows.
    func sharedBytes(rows: Int) -> Int { (8 * perBlock * (rows == 1 ? 1 : 8) + 3) / 4 * 16 }

    init(k: Int, columns n: Int, multiprocessors: Int) {
        let chunks = (k + 7) / 8
        var threads = 32
        while threads < 256 && threads < chunks { threads *= 2 }
        var loads = 1
        while loads * threads < chunks { loads *= 2 }
        self.loads = loads
        threadsPerColumn = threads
        let groups = 256 / threads
        let target = max(1, min((n + groups - 1) / groups, 2 * multiprocessors))
        perBlock = max(1, (n + target - 1) / target)
        blocks = max(1, (n + perBlock - 1) / perBlock)
    }
}
