#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import ScopeCost
import ScopeModels
import ScopeSupport

/// Raised when an allocation would exceed the memory limit: a result to record, not a crash.
public struct OutOfMemory: Error, CustomStringConvertible, Sendable {
    public let requested: Int
    public let inUse: Int
    public let limit: Int

    public init(requested: Int, inUse: Int, limit: Int) {
        self.requested = requested
        self.inUse = inUse
        self.limit = limit
    }

    public var description: String {
        "out of memory: \(Format.bytes(Double(requested))) requested with \(Format.bytes(Double(inUse))) in use "
            + "and a limit of \(Format.bytes(Double(limit)))"
    }
}

/// Exact byte counts of a backend's live tensors.
public final class MemoryTracker: @unchecked Sendable {
    public private(set) var inUse = 0
    public private(set) var peak = 0
    /// Bytes the backend may hand out; nil for no limit beyond the device's.
    public var limit: Int?

    public init(limit: Int? = nil) { self.limit = limit }

    /// Records an allocation, or throws `OutOfMemory` when it would pass the limit.
    public func reserve(_ bytes: Int) throws {
        if let limit, inUse + bytes > limit { throw OutOfMemory(requested: bytes, inUse: inUse, limit: limit) }
        inUse += bytes
        peak = max(peak, inUse)
    }

    public func release(_ bytes: Int) { inUse -= bytes }

    /// Starts a new high-water mark from the bytes in use now.
    public func resetPeak() { peak = inUse }
}

/// Time attributed to operator kinds during a profiled pass.
public struct OperatorProfile: Sendable, Hashable {
    public var seconds: [OperatorKind: Double] = [:]
    public var calls: [OperatorKind: Int] = [:]

    public init() {}

    public mutating func add(_ kind: OperatorKind, seconds t: Double) {
        seconds[kind, default: 0] += t
        calls[kind, default: 0] += 1
    }

    public var total: Double { seconds.values.reduce(0, +) }

    /// Seconds by category.
    public var byCategory: [OpCategory: Double] {
        var result: [OpCategory: Double] = [:]
        for (kind, t) in seconds { result[kind.category, default: 0] += t }
        return result
    }
}

/// Where an executor's per-operator timing goes. A backend times with its own clock (host clock on CPU, events on
/// GPU); `measure` runs `body` and attributes its time to `kind` while a profile is being recorded.
public protocol OperatorTimer: AnyObject {
    func measure<T>(_ kind: OperatorKind, _ body: () throws -> T) throws -> T
    /// Starts recording a new profile (nil stops recording).
    func startProfile()
    /// Stops recording and returns what was recorded.
    func finishProfile() throws -> OperatorProfile
}

/// The operations an inference engine needs. Every tensor argument belongs to this backend. Activations, KV
/// caches and conv states use `activationType`; SSM states, norms, biases and SSM parameters are fp32; weights may
/// be fp32, bf16 or fp16; row width is a tensor's last dimension.
public protocol Backend: AnyObject, OperatorTimer {
    var name: String { get }
    var memory: MemoryTracker { get }
    /// Element type of activations and caches (fp32 on CPU; bf16 or fp16 on GPUs, with fp32 accumulation).
    var activationType: ElementType { get }

    /// A zero-filled tensor (throws `OutOfMemory` past the memory limit).
    func makeTensor(_ shape: [Int], _ type: ElementType) throws -> Tensor
    /// A tensor whose contents are undefined until written: for outputs an operator writes in full (saves the
    /// zero fill on GPUs). Defaults to `makeTensor`.
    func makeOutputTensor(_ shape: [Int], _ type: ElementType) throws -> Tensor
    /// Copies fp32 values into a tensor, converting to its element type.
    func upload(_ values: [Float], into tensor: Tensor) throws
    /// Copies raw elements of `type` into a tensor of the same count, converting if the types differ.
    func upload(raw: UnsafeRawBufferPointer, type: ElementType, into tensor: Tensor) throws
    /// The tensor's values as fp32.
    func download(_ tensor: Tensor) throws -> [Float]
    /// Waits for queued work (no-op on CPU).
    func synchronize() throws
    /// Seconds `body` takes on this backend's clock, all of its queued work included (CPU: monotonic host clock;
    /// GPU: events around the region).
    func timeRegion(_ body: () throws -> Void) throws -> Double

    /// out[r] = table[ids[r]].
    func embedding(table: Tensor, ids: [Int32], out: Tensor) throws
    /// out = x W[rows]^T (+ bias): `rows` selects a contiguous block of the weight's output rows (nil: all).
    func linear(_ x: Tensor, weight: Tensor, rows: Range<Int>?, bias: Tensor?, out: Tensor) throws
    /// out = norm(x) W[rows]^T (+ bias), or out += that when `accumulate` (a projection added to a residual
    /// stream): a linear layer with its input's norm and its residual sum folded into the product where the backend
    /// can. Defaults to the separate operators.
    func fusedLinear(_ x: Tensor, norm: InputNorm?, weight: Tensor, rows: Range<Int>?, bias: Tensor?, out: Tensor,
                     accumulate: Bool) throws
    /// Several projections of one input, out_i = norm(x) W_i[rows_i]^T (+ bias_i), as one operator where the
    /// backend can (a decode step's q, k and v, or gate and up, stored as separate weights). Defaults to
    /// `fusedLinear` for each.
    func fusedLinears(_ x: Tensor, norm: InputNorm?, _ projections: [(linear: Linear, out: Tensor)]) throws
    /// A decode step's input projection with its causal conv step: `fusedLinear` of x (no accumulate) into out, then
    /// `conv1d` of out's columns `convColumns` for one new token of each of x.rows sequences into convOut, rolling
    /// convState. One operator where the backend folds the conv into the product's epilogue; defaults to the two.
    func linearThenConvStep(_ x: Tensor, norm: InputNorm?, _ projection: Linear, out: Tensor, convColumns: Range<Int>,
                            convWeight: Tensor, convBias: Tensor?, convState: Tensor, silu: Bool,
                            convOut: Tensor) throws
    /// Whether `linearThenConvStep` is one operator for inputs of `rows` rows (so that the executor uses it, and
    /// times the conv with the projection). Defaults to false.
    func foldsConvStep(rows: Int) -> Bool
    /// Whether `fusedLinear` folds a norm into the product for inputs of `rows` rows, so that every projection of a
    /// normalised input may normalise it again rather than share a normalised copy. Defaults to false.
    func foldsInputNorm(rows: Int) -> Bool
    /// RMSNorm over rows of width `x.columns` (weight nil: no scale).
    func rmsNorm(_ x: Tensor, weight: Tensor?, eps: Float, out: Tensor) throws
    /// Rotary embedding in place on [tokens, heads x headDim].
    func rope(_ x: Tensor, heads: Int, headDim: Int, rotaryDim: Int, positions: [Int32], invFreq: [Float],
              scale: Float) throws
    /// Causal attention of new queries against the cache plus the new keys and values (see `Attention.causal`).
    func attention(q: Tensor, kNew: Tensor, vNew: Tensor, cache: KVCacheLayer?, batch: Int, newTokens: Int,
                   past: Int, heads: Int, kvHeads: Int, headDim: Int, window: Int?, scale: Float, out: Tensor) throws
    /// Stores the new keys and values of positions past ..< past + newTokens in the ring-buffer cache.
    func appendKV(kNew: Tensor, vNew: Tensor, cache: KVCacheLayer, batch: Int, newTokens: Int, past: Int) throws
    func activation(_ kind: Activation, _ x: Tensor, out: Tensor) throws
    /// out = act(gate) * up.
    func gatedActivation(_ kind: Activation, gate: Tensor, up: Tensor, out: Tensor) throws
    /// out = a + b (out may be a).
    func add(_ a: Tensor, _ b: Tensor, out: Tensor) throws
    /// out = x * factor (out may be x).
    func scale(_ x: Tensor, by factor: Float, out: Tensor) throws
    /// Copies column blocks of `source` into separate tensors.
    func splitColumns(_ source: Tensor, _ ranges: [Range<Int>], into outputs: [Tensor]) throws
    /// out = [a | b] along columns.
    func concatColumns(_ a: Tensor, _ b: Tensor, out: Tensor) throws
    /// out[i] = source[rows[i]].
    func gatherRows(_ source: Tensor, rows: [Int], out: Tensor) throws
    /// out[rows[i]] += weights[i] * source[i].
    func scatterAddRows(_ source: Tensor, rows: [Int], weights: [Float], out: Tensor) throws
    /// Causal depthwise conv with state [batch, kernel - 1, channels] (see `Conv1d.causal`).
    func conv1d(_ x: Tensor, weight: Tensor, bias: Tensor?, state: Tensor, batch: Int, tokens: Int, silu: Bool,
                out: Tensor) throws
    /// `conv1d` whose output channels go to column blocks of several tensors: `outputs[i]` receives channels
    /// `columns[i]` (contiguous blocks covering every channel, as Mamba-2 splits x, B and C). Defaults to `conv1d`
    /// into one tensor and `splitColumns`.
    func conv1d(_ x: Tensor, weight: Tensor, bias: Tensor?, state: Tensor, batch: Int, tokens: Int, silu: Bool,
                splitInto outputs: [Tensor], columns: [Range<Int>]) throws
    /// Mamba-1 selective scan (see `SelectiveScan.scan`).
    func selectiveScan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, z: Tensor?,
                       state: Tensor, batch: Int, tokens: Int, out: Tensor) throws
    /// A Mamba-1 decode step whose delta is projected from the low-rank dt (x_proj's first block): `linear` of dt
    /// by `dtProjection` into delta (the activation type), then `selectiveScan` of one token for each of `batch`
    /// sequences. One operator where the backend computes delta inside the step; defaults to the two.
    func selectiveStepWithDeltaProjection(u: Tensor, dt: Tensor, dtProjection: Linear, A: Tensor, B: Tensor,
                                          C: Tensor, D: Tensor, z: Tensor?, state: Tensor, batch: Int,
                                          out: Tensor) throws
    /// Whether `selectiveStepWithDeltaProjection` is one operator for steps of `rows` sequences (so that the
    /// executor uses it, and times the projection with the step). Defaults to false.
    func foldsDeltaProjection(rows: Int) -> Bool
    /// Mamba-2 SSD (see `SSD.scan`).
    func ssd(x: Tensor, dt: Tensor, dtBias: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, state: Tensor,
             batch: Int, tokens: Int, heads: Int, headDim: Int, groups: Int, stateSize: Int, chunkSize: Int,
             dtMin: Float, dtMax: Float, out: Tensor) throws
    /// A Mamba-2 decode step (`ssd` of one token for each of `batch` sequences) whose output is its gated RMSNorm's
    /// input up to the norm's scale: out = y * silu(gate) * normWeight for the step's output y, and `squares`
    /// ([batch, parts]) holding in each row parts that add up to the sum of squares the norm takes (of y *
    /// silu(gate), or of y when normBeforeGate), over one group. `fusedLinear` of out with `.presummedRMS(squares:)`
    /// then equals `ssd`, `gatedRMSNorm` of one group and the projection, so that a backend can fold the norm into
    /// the step instead of the projection. Defaults to `ssd` and the rest on the host, in one part.
    func ssdStepGated(x: Tensor, dt: Tensor, dtBias: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, state: Tensor,
                      batch: Int, heads: Int, headDim: Int, groups: Int, stateSize: Int, dtMin: Float, dtMax: Float,
                      gate: Tensor, normWeight: Tensor, normBeforeGate: Bool, out: Tensor, squares: Tensor) throws
    /// The parts per sequence of `ssdStepGated`'s squares where the backend runs it, and the projection of its
    /// output with `.presummedRMS`, as one kernel each for steps of `rows` sequences of these sizes; nil where it
    /// does not (the executor then runs `ssd` and folds the gated norm into the projection, or runs it apart).
    /// Defaults to nil.
    func gatedStepParts(rows: Int, heads: Int, headDim: Int, innerSize: Int) -> Int?
    /// Gated RMSNorm of Mamba-2 mixers (see `GatedNorm.apply`).
    func gatedRMSNorm(_ x: Tensor, gate: Tensor, weight: Tensor, groups: Int, eps: Float, normBeforeGate: Bool,
                      out: Tensor) throws
    /// Each row's `Greedy.argmax`: greedy decoding's next tokens, read back without the rows themselves where the
    /// backend computes it in place (GPUs). Defaults to reading the rows back and scanning them.
    func argmaxRows(_ x: Tensor) throws -> [Int32]
}

extension Backend {
    public func makeOutputTensor(_ shape: [Int], _ type: ElementType) throws -> Tensor {
        try makeTensor(shape, type)
    }

    public func fusedLinear(_ x: Tensor, norm: InputNorm?, weight: Tensor, rows: Range<Int>?, bias: Tensor?,
                            out: Tensor, accumulate: Bool) throws {
        try fusedLinearBySeparateOperators(x, norm: norm, weight: weight, rows: rows, bias: bias, out: out,
                                           accumulate: accumulate)
    }

    public func fusedLinears(_ x: Tensor, norm: InputNorm?, _ projections: [(linear: Linear, out: Tensor)]) throws {
        try fusedLinearsOneByOne(x, norm: norm, projections)
    }

    /// `fusedLinears` as one `fusedLinear` per projection (the default).
    public func fusedLinearsOneByOne(_ x: Tensor, norm: InputNorm?, _ projections: [(linear: Linear, out: Tensor)])
        throws {
        for (linear, out) in projections {
            try fusedLinear(x, norm: norm, weight: linear.weight, rows: linear.rows, bias: linear.bias, out: out,
                            accumulate: false)
        }
    }

    public func linearThenConvStep(_ x: Tensor, norm: InputNorm?, _ projection: Linear, out: Tensor,
                                   convColumns: Range<Int>, convWeight: Tensor, convBias: Tensor?, convState: Tensor,
                                   silu: Bool, convOut: Tensor) throws {
        try linearThenConvStepBySeparateOperators(x, norm: norm, projection, out: out, convColumns: convColumns,
                                                  convWeight: convWeight, convBias: convBias, convState: convState,
                                                  silu: silu, convOut: convOut)
    }

    /// `linearThenConvStep` as its two operators (the default). The conv's input is a column view of out, so x must
    /// be one row.
    public func linearThenConvStepBySeparateOperators(_ x: Tensor, norm: InputNorm?, _ projection: Linear, out: Tensor,
                                                      convColumns: Range<Int>, convWeight: Tensor, convBias: Tensor?,
                                                      convState: Tensor, silu: Bool, convOut: Tensor) throws {
        guard x.rows == 1 else {
            throw ScopeError("linearThenConvStep by separate operators takes one row, not \(x.rows)")
        }
        try fusedLinear(x, norm: norm, weight: projection.weight, rows: projection.rows, bias: projection.bias,
                        out: out, accumulate: false)
        try conv1d(out.columnBlock(convColumns), weight: convWeight, bias: convBias, state: convState, batch: x.rows,
                   tokens: 1, silu: silu, out: convOut)
    }

    /// `fusedLinear` as separate operators: the norm into a new tensor, the product, the sum (the default).
    public func fusedLinearBySeparateOperators(_ x: Tensor, norm: InputNorm?, weight: Tensor, rows: Range<Int>?,
                                               bias: Tensor?, out: Tensor, accumulate: Bool) throws {
        let input = try norm.map { try applyNorm($0, to: x) } ?? x
        guard accumulate else { return try linear(input, weight: weight, rows: rows, bias: bias, out: out) }
        let y = try makeOutputTensor(out.shape, out.type)
        try linear(input, weight: weight, rows: rows, bias: bias, out: y)
        try add(out, y, out: out)
    }

    public func foldsInputNorm(rows: Int) -> Bool { false }

    public func foldsConvStep(rows: Int) -> Bool { false }

    public func selectiveStepWithDeltaProjection(u: Tensor, dt: Tensor, dtProjection: Linear, A: Tensor, B: Tensor,
                                                 C: Tensor, D: Tensor, z: Tensor?, state: Tensor, batch: Int,
                                                 out: Tensor) throws {
        try selectiveStepWithDeltaProjectionBySeparateOperators(u: u, dt: dt, dtProjection: dtProjection, A: A, B: B,
                                                                C: C, D: D, z: z, state: state, batch: batch,
                                                                out: out)
    }

    /// `selectiveStepWithDeltaProjection` as its two operators (the default): the projection into a new tensor,
    /// then the scan of one token.
    public func selectiveStepWithDeltaProjectionBySeparateOperators(u: Tensor, dt: Tensor, dtProjection: Linear,
                                                                    A: Tensor, B: Tensor, C: Tensor, D: Tensor,
                                                                    z: Tensor?, state: Tensor, batch: Int,
                                                                    out: Tensor) throws {
        let delta = try makeOutputTensor([dt.rows, dtProjection.outputs], activationType)
        try linear(dt, weight: dtProjection.weight, rows: dtProjection.rows, bias: dtProjection.bias, out: delta)
        try selectiveScan(u: u, delta: delta, A: A, B: B, C: C, D: D, z: z, state: state, batch: batch, tokens: 1,
                          out: out)
    }

    public func foldsDeltaProjection(rows: Int) -> Bool { false }

    public func ssdStepGated(x: Tensor, dt: Tensor, dtBias: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor,
                             state: Tensor, batch: Int, heads: Int, headDim: Int, groups: Int, stateSize: Int,
                             dtMin: Float, dtMax: Float, gate: Tensor, normWeight: Tensor, normBeforeGate: Bool,
                             out: Tensor, squares: Tensor) throws {
        try ssdStepGatedBySeparateOperators(x: x, dt: dt, dtBias: dtBias, A: A, B: B, C: C, D: D, state: state,
                                            batch: batch, heads: heads, headDim: headDim, groups: groups,
                                            stateSize: stateSize, dtMin: dtMin, dtMax: dtMax, gate: gate,
                                            normWeight: normWeight, normBeforeGate: normBeforeGate, out: out,
                                            squares: squares)
    }

    /// `ssdStepGated` as `ssd` into out, then the gating, the norm's weight and the sums of squares on the host
    /// (the default; every part but each row's first is zero).
    public func ssdStepGatedBySeparateOperators(x: Tensor, dt: Tensor, dtBias: Tensor, A: Tensor, B: Tensor,
                                                C: Tensor, D: Tensor, state: Tensor, batch: Int, heads: Int,
                                                headDim: Int, groups: Int, stateSize: Int, dtMin: Float,
                                                dtMax: Float, gate: Tensor, normWeight: Tensor, normBeforeGate: Bool,
                                                out: Tensor, squares: Tensor) throws {
        let width = out.columns, parts = squares.columns
        guard gate.shape == out.shape, normWeight.count == width, squares.rows == out.rows, parts >= 1 else {
            throw ScopeError("ssdStepGated: gate \(gate.shape), norm weight \(normWeight.shape) and squares "
                             + "\(squares.shape) do not fit the output \(out.shape)")
        }
        try ssd(x: x, dt: dt, dtBias: dtBias, A: A, B: B, C: C, D: D, state: state, batch: batch, tokens: 1,
                heads: heads, headDim: headDim, groups: groups, stateSize: stateSize, chunkSize: 1, dtMin: dtMin,
                dtMax: dtMax, out: out)
        var y = try download(out), sums = [Float](repeating: 0, count: squares.count)
        let z = try download(gate), w = try download(normWeight)
        for r in 0..<out.rows {
            var total: Float = 0
            for c in 0..<width {
                let i = r * width + c, gated = y[i] * (z[i] / (1 + expf(-z[i])))
                let normed = normBeforeGate ? y[i] : gated
                total += normed * normed
                y[i] = gated * w[c]
            }
            sums[r * parts] = total
        }
        try upload(y, into: out)
        try upload(sums, into: squares)
    }

    public func gatedStepParts(rows: Int, heads: Int, headDim: Int, innerSize: Int) -> Int? { nil }

    public func argmaxRows(_ x: Tensor) throws -> [Int32] {
        let values = try download(x), columns = x.columns
        return (0..<x.rows).map { Greedy.argmax(values[($0 * columns)..<(($0 + 1) * columns)]) }
    }

    public func conv1d(_ x: Tensor, weight: Tensor, bias: Tensor?, state: Tensor, batch: Int, tokens: Int, silu: Bool,
                       splitInto outputs: [Tensor], columns: [Range<Int>]) throws {
        try conv1dThenSplit(x, weight: weight, bias: bias, state: state, batch: batch, tokens: tokens, silu: silu,
                            splitInto: outputs, columns: columns)
    }

    /// The split convolution as `conv1d` into one new tensor and `splitColumns` (the default).
    public func conv1dThenSplit(_ x: Tensor, weight: Tensor, bias: Tensor?, state: Tensor, batch: Int, tokens: Int,
                                silu: Bool, splitInto outputs: [Tensor], columns: [Range<Int>]) throws {
        let whole = try makeOutputTensor(x.shape, x.type)
        try conv1d(x, weight: weight, bias: bias, state: state, batch: batch, tokens: tokens, silu: silu, out: whole)
        try splitColumns(whole, columns, into: outputs)
    }

    /// norm(x) as a new tensor.
    public func applyNorm(_ norm: InputNorm, to x: Tensor) throws -> Tensor {
        let out = try makeOutputTensor(x.shape, x.type)
        switch norm {
        case .rms(let weight, let eps):
            try rmsNorm(x, weight: weight, eps: eps, out: out)
        case .gatedRMS(let gate, let weight, let groups, let eps, let normBeforeGate):
            try gatedRMSNorm(x, gate: gate, weight: weight, groups: groups, eps: eps, normBeforeGate: normBeforeGate,
                             out: out)
        case .gatedActivation(let gate, let kind):
            try gatedActivation(kind, gate: gate, up: x, out: out)
        case .presummedRMS(let squares, let eps):
            try scaleByPresummedRMS(x, squares: squares, eps: eps, out: out)
        }
        return out
    }

    /// out = x / sqrt(sum of squares' row / x.columns + eps), row by row, on the host.
    func scaleByPresummedRMS(_ x: Tensor, squares: Tensor, eps: Float, out: Tensor) throws {
        guard squares.rows == x.rows else {
            throw ScopeError("presummed RMSNorm: squares \(squares.shape) for \(x.rows) rows")
        }
        var values = try download(x)
        let sums = try download(squares), width = x.columns, parts = squares.columns
        for r in 0..<x.rows {
            let total = sums[(r * parts)..<((r + 1) * parts)].reduce(0, +)
            let scale = 1 / (total / Float(width) + eps).squareRoot()
            for c in 0..<width { values[r * width + c] *= scale }
        }
        try upload(values, into: out)
    }
}

/// Greedy decoding's choice of token.
public enum Greedy {
    /// The index of the largest value, the first of equal ones; NaN never wins; 0 when no value is larger than -inf.
    public static func argmax(_ values: ArraySlice<Float>) -> Int32 {
        var best = -Float.infinity, index = values.startIndex
        for i in values.indices where values[i] > best {
            best = values[i]
            index = i
        }
        return Int32(index - values.startIndex)
    }

    public static func argmax(_ values: [Float]) -> Int32 { argmax(values[...]) }
}

/// A transformation of a linear layer's input rows that the backend may fold into the product (see
/// `Backend.fusedLinear`): a normalisation, or the gated activation before an MLP's down projection.
public enum InputNorm {
    /// RMSNorm (weight nil: no scale).
    case rms(weight: Tensor?, eps: Float)
    /// Mamba-2's gated RMSNorm with `gate` (see `Backend.gatedRMSNorm`).
    case gatedRMS(gate: Tensor, weight: Tensor, groups: Int, eps: Float, normBeforeGate: Bool)
    /// act(gate) * x, a gated MLP's activation (see `Backend.gatedActivation`).
    case gatedActivation(gate: Tensor, kind: Activation)
    /// x / sqrt(s / x.columns + eps) with s the sum of row r of `squares` ([rows, parts], fp32): an RMSNorm whose
    /// weighting and sums of squares were done before (`Backend.ssdStepGated`).
    case presummedRMS(squares: Tensor, eps: Float)
}

/// One attention layer's ring-buffer KV cache: [batch, capacity, kvHeads x headDim] for keys and values.
public final class KVCacheLayer {
    public let keys: Tensor
    public let values: Tensor
    /// Positions the ring holds; position p lives in slot p % capacity.
    public let capacity: Int

    public init(keys: Tensor, values: Tensor, capacity: Int) {
        self.keys = keys
        self.values = values
        self.capacity = capacity
    }

    public var byteCount: Int { keys.byteCount + values.byteCount }
}
