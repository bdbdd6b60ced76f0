import ScopeCost
import ScopeModels

/// A backend that performs the executor's allocations without storing or computing anything: running a pass on
/// it gives the exact memory high-water mark of that pass on a real backend with the same allocation schedule,
/// in no time. Used to search the longest context that fits without running hours of arithmetic.
public final class MemoryProbeBackend: Backend, TensorAllocator {
    public let name: String
    public let memory: MemoryTracker
    public let activationType: ElementType

    /// `name` and `activationType` are those of the backend whose schedule this stands in for.
    /// How the backend stood in for allocates beyond the executor's tensors.
    public struct Kernels: Sendable {
        /// The backend runs `fusedLinear` and split convolutions as one kernel each (no temporaries) and folds norms
        /// into linears of up to this many rows (0: it runs the separate operators, as the protocol's defaults do).
        public var fusedRows: Int
        /// Bytes the backend's SSD kernels allocate for one call, by (batch, tokens, heads, headDim, groups,
        /// stateSize); nil for none.
        public var ssdScratch: (@Sendable (Int, Int, Int, Int, Int, Int) -> Int)?
        /// Bytes one linear layer allocates, by (input elements, output elements, weight type); nil for none.
        public var linearScratch: (@Sendable (Int, Int, ElementType) -> Int)?
        /// The backend's `gatedStepParts` by (rows, heads, headDim, innerSize); nil for none.
        public var gatedStepParts: (@Sendable (Int, Int, Int, Int) -> Int?)?

        public init(fusedRows: Int = 0, ssdScratch: (@Sendable (Int, Int, Int, Int, Int, Int) -> Int)? = nil,
                    linearScratch: (@Sendable (Int, Int, ElementType) -> Int)? = nil,
                    gatedStepParts: (@Sendable (Int, Int, Int, Int) -> Int?)? = nil) {
            self.fusedRows = fusedRows
            self.ssdScratch = ssdScratch
            self.linearScratch = linearScratch
            self.gatedStepParts = gatedStepParts
        }
    }

    /// Reserves and releases `bytes`: scratch alive only inside one operator.
    private func transient(_ bytes: Int) throws {
        guard bytes > 0 else { return }
        try memory.reserve(bytes)
        memory.release(bytes)
    }

    private let kernels: Kernels?

    /// `name` and `activationType` are those of the backend whose schedule this stands in for; `kernels` how it
    /// allocates inside operators (nil: the protocol's default implementations, as the CPU backend runs them).
    public init(standingInFor name: String, activationType: ElementType = .fp32, memoryLimit: Int?,
                kernels: Kernels? = nil) {
        self.name = name + "-probe"
        self.activationType = activationType
        self.kernels = kernels
        memory = MemoryTracker(limit: memoryLimit)
    }

    public func makeTensor(_ shape: [Int], _ type: ElementType) throws -> Tensor {
        let bytes = max(1, shape.reduce(1, *)) * type.byteSize
        try memory.reserve(bytes)
        return Tensor(shape: shape, type: type, address: 0, byteCount: bytes, allocator: self)
    }

    public func release(address: UInt, byteCount: Int) { memory.release(byteCount) }
    public func upload(_ values: [Float], into tensor: Tensor) throws {}
    public func upload(raw: UnsafeRawBufferPointer, type: ElementType, into tensor: Tensor) throws {}
    /// Zeros: the probe computes nothing.
    public func download(_ tensor: Tensor) throws -> [Float] { [Float](repeating: 0, count: tensor.count) }
    public func synchronize() throws {}
    public func timeRegion(_ body: () throws -> Void) throws -> Double {
        try body()
        return 0
    }
    public func measure<T>(_ kind: OperatorKind, _ body: () throws -> T) throws -> T { try body() }
    public func startProfile() {}
    public func finishProfile() throws -> OperatorProfile { OperatorProfile() }

    public func embedding(table: Tensor, ids: [Int32], out: Tensor) throws {}
    public func linear(_ x: Tensor, weight: Tensor, rows: Range<Int>?, bias: Tensor?, out: Tensor) throws {
        try transient(kernels?.linearScratch?(x.count, out.count, weight.type) ?? 0)
    }
    public func rmsNorm(_ x: Tensor, weight: Tensor?, eps: Float, out: Tensor) throws {}
    public func rope(_ x: Tensor, heads: Int, headDim: Int, rotaryDim: Int, positions: [Int32], invFreq: [Float],
                     scale: Float) throws {}
    public func attention(q: Tensor, kNew: Tensor, vNew: Tensor, cache: KVCacheLayer?, batch: Int, newTokens: Int,
                          past: Int, heads: Int, kvHeads: Int, headDim: Int, window: Int?, scale: Float,
                          out: Tensor) throws {}
    public func appendKV(kNew: Tensor, vNew: Tensor, cache: KVCacheLayer, batch: Int, newTokens: Int,
                         past: Int) throws {}
    public func activation(_ kind: Activation, _ x: Tensor, out: Tensor) throws {}
    public func gatedActivation(_ kind: Activation, gate: Tensor, up: Tensor, out: Tensor) throws {}
    public func add(_ a: Tensor, _ b: Tensor, out: Tensor) throws {}
    public func scale(_ x: Tensor, by factor: Float, out: Tensor) throws {}
    public func splitColumns(_ source: Tensor, _ ranges: [Range<Int>], into outputs: [Tensor]) throws {}
    public func concatColumns(_ a: Tensor, _ b: Tensor, out: Tensor) throws {}
    public func gatherRows(_ source: Tensor, rows: [Int], out: Tensor) throws {}
    public func scatterAddRows(_ source: Tensor, rows: [Int], weights: [Float], out: Tensor) throws {}
    public func conv1d(_ x: Tensor, weight: Tensor, bias: Tensor?, state: Tensor, batch: Int, tokens: Int,
                       silu: Bool, out: Tensor) throws {}
    public func selectiveScan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, z: Tensor?,
                              state: Tensor, batch: Int, tokens: Int, out: Tensor) throws {}
    public func ssd(x: Tensor, dt: Tensor, dtBias: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, state: Tensor,
                    batch: Int, tokens: Int, heads: Int, headDim: Int, groups: Int, stateSize: Int, chunkSize: Int,
                    dtMin: Float, dtMax: Float, out: Tensor) throws {
        try transient(kernels?.ssdScratch?(batch, tokens, heads, headDim, groups, stateSize) ?? 0)
    }

    public func foldsInputNorm(rows: Int) -> Bool { rows <= (kernels?.fusedRows ?? 0) }

    public func gatedStepParts(rows: Int, heads: Int, headDim: Int, innerSize: Int) -> Int? {
        kernels?.gatedStepParts?(rows, heads, headDim, innerSize)
    }

    /// One kernel where the backend has one (`gatedStepParts`): nothing beyond its operands.
    public func ssdStepGated(x: Tensor, dt: Tensor, dtBias: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor,
                             state: Tensor, batch: Int, heads: Int, headDim: Int, groups: Int, stateSize: Int,
                             dtMin: Float, dtMax: Float, gate: Tensor, normWeight: Tensor, normBeforeGate: Bool,
                             out: Tensor, squares: Tensor) throws {}

    public func fusedLinear(_ x: Tensor, norm: InputNorm?, weight: Tensor, rows: Range<Int>?, bias: Tensor?,
                            out: Tensor, accumulate: Bool) throws {
        if let kernels {  // one kernel: nothing beyond its operands and any linear scratch
            return try transient(kernels.linearScratch?(x.count, out.count, weight.type) ?? 0)
        }
        try fusedLinearBySeparateOperators(x, norm: norm, weight: weight, rows: rows, bias: bias, out: out,
                                           accumulate: accumulate)
    }

    public func conv1d(_ x: Tensor, weight: Tensor, bias: Tensor?, state: Tensor, batch: Int, tokens: Int, silu: Bool,
                       splitInto outputs: [Tensor], columns: [Range<Int>]) throws {
        guard kernels == nil else { return }  // one kernel writes the outputs
        try conv1dThenSplit(x, weight: weight, bias: bias, state: state, batch: batch, tokens: tokens, silu: silu,
                            splitInto: outputs, columns: columns)
    }
    public func gatedRMSNorm(_ x: Tensor, gate: Tensor, weight: Tensor, groups: Int, eps: Float, normBeforeGate: Bool,
                             out: Tensor) throws {}

    /// A GPU's argmax writes the rows' token ids to a device buffer of its own (4 bytes a row) before reading them
    /// back; the protocol's default reads the rows themselves back and allocates nothing.
    public func argmaxRows(_ x: Tensor) throws -> [Int32] {
        if kernels != nil { try transient(4 * x.rows) }
        return [Int32](repeating: 0, count: x.rows)
    }
}

/// Parameters with the right shapes and no values, for `MemoryProbeBackend`.
public final class ShapeOnlyWeights: WeightSource {
    public init() {}
    public func tensor(_ name: String, shape: [Int], role: WeightRole, type: ElementType, backend: Backend) throws
        -> Tensor {
        try backend.makeTensor(shape, type)
    }
    public func values(_ name: String, shape: [Int], role: WeightRole) throws -> [Float] {
        [Float](repeating: 0, count: shape.reduce(1, *))
    }
    public func finish() throws {}
}
