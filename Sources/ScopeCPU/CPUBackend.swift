#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import ScopeCost
import ScopeEngine
import ScopeModels
import ScopeSupport

/// The CPU backend: host memory with exact accounting, Swift SIMD kernels on every core, wall-clock operator
/// timing. Activations, caches and small parameters are fp32; linear weights and embeddings may be bf16 or fp16.
public final class CPUBackend: Backend, TensorAllocator {
    public let name = "cpu"
    public let memory: MemoryTracker
    public let activationType = ElementType.fp32
    private var profile: OperatorProfile?

    /// `memoryLimit` caps the bytes of live tensors (nil: no cap).
    public init(memoryLimit: Int? = nil) {
        memory = MemoryTracker(limit: memoryLimit)
    }

    // MARK: Memory

    public func makeTensor(_ shape: [Int], _ type: ElementType) throws -> Tensor {
        let bytes = max(1, shape.reduce(1, *)) * type.byteSize
        try memory.reserve(bytes)
        guard let pointer = calloc(bytes, 1) else {
            memory.release(bytes)
            throw OutOfMemory(requested: bytes, inUse: memory.inUse, limit: memory.limit ?? memory.inUse)
        }
        return Tensor(shape: shape, type: type, address: UInt(bitPattern: pointer), byteCount: bytes, allocator: self)
    }

    public func release(address: UInt, byteCount: Int) {
        free(UnsafeMutableRawPointer(bitPattern: address))
        memory.release(byteCount)
    }

    public func upload(_ values: [Float], into tensor: Tensor) throws {
        try check(values.count == tensor.count, "upload of \(values.count) values into \(tensor.shape)")
        let base = raw(tensor)
        for (i, v) in values.enumerated() { ElementConversion.store(v, base, tensor.type, i) }
    }

    public func upload(raw source: UnsafeRawBufferPointer, type: ElementType, into tensor: Tensor) throws {
        try check(source.count == tensor.count * type.byteSize, "upload of \(source.count) bytes into \(tensor.shape)")
        guard let from = source.baseAddress else { return }
        if type == tensor.type {
            memcpy(raw(tensor), from, source.count)
        } else {
            let base = raw(tensor)
            for i in 0..<tensor.count { ElementConversion.store(ElementConversion.load(from, type, i), base, tensor.type, i) }
        }
    }

    public func download(_ tensor: Tensor) throws -> [Float] {
        let base = UnsafeRawPointer(raw(tensor))
        return (0..<tensor.count).map { ElementConversion.load(base, tensor.type, $0) }
    }

    public func synchronize() throws {}

    public func timeRegion(_ body: () throws -> Void) throws -> Double {
        let start = Self.now()
        try body()
        return Self.now() - start
    }

    // MARK: Timing

    public func measure<T>(_ kind: OperatorKind, _ body: () throws -> T) throws -> T {
        guard profile != nil else { return try body() }
        let start = Self.now()
        let result = try body()
        profile?.add(kind, seconds: Self.now() - start)
        return result
    }

    public func startProfile() { profile = OperatorProfile() }

    public func finishProfile() throws -> OperatorProfile {
        defer { profile = nil }
        return profile ?? OperatorProfile()
    }

    /// Seconds on the monotonic clock.
    public static func now() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
    }

    // MARK: Kernels

    public func embedding(table: Tensor, ids: [Int32], out: Tensor) throws {
        let width = table.columns, vocab = table.rows
        let src = UnsafeRawPointer(raw(table)), dst = f32(out)
        for (row, id) in ids.enumerated() {
            try check(id >= 0 && Int(id) < vocab, "token id \(id) outside the vocabulary of \(vocab)")
            for c in 0..<width { dst[row * width + c] = ElementConversion.load(src, table.type, Int(id) * width + c) }
        }
    }

    public func linear(_ x: Tensor, weight: Tensor, rows: Range<Int>?, bias: Tensor?, out: Tensor) throws {
        let k = weight.columns
        let range = rows ?? 0..<weight.rows
        try check(x.columns == k && out.columns == range.count && out.rows == x.rows,
                  "linear \(x.shape) x \(weight.shape)[\(range)] -> \(out.shape)")
        let w = UnsafeRawPointer(raw(weight)) + range.lowerBound * k * weight.type.byteSize
        Matmul.linear(x: f32(x), m: x.rows, k: k, weight: w, weightType: weight.type, n: range.count,
                      bias: bias.map { UnsafePointer(f32($0)) }, out: f32(out))
    }

    public func rmsNorm(_ x: Tensor, weight: Tensor?, eps: Float, out: Tensor) throws {
        Norms.rms(x: f32(x), rows: x.rows, cols: x.columns, weight: weight.map { UnsafePointer(f32($0)) }, eps: eps,
                  out: f32(out))
    }

    public func rope(_ x: Tensor, heads: Int, headDim: Int, rotaryDim: Int, positions: [Int32], invFreq: [Float],
                     scale: Float) throws {
        try check(x.columns == heads * headDim && x.rows == positions.count, "rope on \(x.shape)")
        positions.withUnsafeBufferPointer { p in
            invFreq.withUnsafeBufferPointer { f in
                Rope.apply(x: f32(x), tokens: x.rows, heads: heads, headDim: headDim, rotaryDim: rotaryDim,
                           positions: p.baseAddress!, invFreq: f.baseAddress!, scale: scale)
            }
        }
    }

    public func attention(q: Tensor, kNew: Tensor, vNew: Tensor, cache: KVCacheLayer?, batch: Int, newTokens: Int,
                          past: Int, heads: Int, kvHeads: Int, headDim: Int, window: Int?, scale: Float,
                          out: Tensor) throws {
        Attention.causal(q: f32(q), kNew: f32(kNew), vNew: f32(vNew),
                         kCache: cache.map { UnsafePointer(f32($0.keys)) },
                         vCache: cache.map { UnsafePointer(f32($0.values)) }, capacity: cache?.capacity ?? 0,
                         batch: batch, newTokens: newTokens, past: past, heads: heads, kvHeads: kvHeads,
                         headDim: headDim, window: window, scale: scale, out: f32(out))
    }

    public func appendKV(kNew: Tensor, vNew: Tensor, cache: KVCacheLayer, batch: Int, newTokens: Int,
                         past: Int) throws {
        let width = kNew.columns, capacity = cache.capacity
        let first = max(0, newTokens - capacity)
        for (source, destination) in [(f32(kNew), f32(cache.keys)), (f32(vNew), f32(cache.values))] {
            for b in 0..<batch {
                for t in first..<newTokens {
                    let slot = (past + t) % capacity
                    (destination + (b * capacity + slot) * width).update(from: source + (b * newTokens + t) * width,
                                                                         count: width)
                }
            }
        }
    }

    public func activation(_ kind: Activation, _ x: Tensor, out: Tensor) throws {
        Activations.apply(Self.kind(kind), x: f32(x), count: x.count, out: f32(out))
    }

    public func gatedActivation(_ kind: Activation, gate: Tensor, up: Tensor, out: Tensor) throws {
        Activations.gated(Self.kind(kind), gate: f32(gate), up: f32(up), count: up.count, out: f32(out))
    }

    public func add(_ a: Tensor, _ b: Tensor, out: Tensor) throws {
        try check(a.count == b.count && b.count == out.count, "add \(a.shape) + \(b.shape)")
        Activations.add(f32(a), f32(b), count: a.count, out: f32(out))
    }

    public func scale(_ x: Tensor, by factor: Float, out: Tensor) throws {
        let src = f32(x), dst = f32(out)
        for i in 0..<x.count { dst[i] = src[i] * factor }
    }

    public func splitColumns(_ source: Tensor, _ ranges: [Range<Int>], into outputs: [Tensor]) throws {
        let width = source.columns, src = f32(source)
        for (range, output) in zip(ranges, outputs) {
            let dst = f32(output)
            for r in 0..<source.rows {
                (dst + r * range.count).update(from: src + r * width + range.lowerBound, count: range.count)
            }
        }
    }

    public func concatColumns(_ a: Tensor, _ b: Tensor, out: Tensor) throws {
        let dst = f32(out), wa = a.columns, wb = b.columns
        for r in 0..<a.rows {
            (dst + r * (wa + wb)).update(from: f32(a) + r * wa, count: wa)
            (dst + r * (wa + wb) + wa).update(from: f32(b) + r * wb, count: wb)
        }
    }

    public func gatherRows(_ source: Tensor, rows: [Int], out: Tensor) throws {
        let width = source.columns
        for (i, r) in rows.enumerated() { (f32(out) + i * width).update(from: f32(source) + r * width, count: width) }
    }

    public func scatterAddRows(_ source: Tensor, rows: [Int], weights: [Float], out: Tensor) throws {
        let width = source.columns, src = f32(source), dst = f32(out)
        for (i, r) in rows.enumerated() {
            for c in 0..<width { dst[r * width + c] += weights[i] * src[i * width + c] }
        }
    }

    public func conv1d(_ x: Tensor, weight: Tensor, bias: Tensor?, state: Tensor, batch: Int, tokens: Int,
                       silu: Bool, out: Tensor) throws {
        Conv1d.causal(x: f32(x), batch: batch, tokens: tokens, channels: x.columns, kernel: weight.columns,
                      weight: f32(weight), bias: bias.map { UnsafePointer(f32($0)) }, silu: silu, state: f32(state),
                      out: f32(out))
    }

    public func selectiveScan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, z: Tensor?,
                              state: Tensor, batch: Int, tokens: Int, out: Tensor) throws {
        SelectiveScan.scan(u: f32(u), delta: f32(delta), A: f32(A), B: f32(B), C: f32(C), D: f32(D),
                           z: z.map { UnsafePointer(f32($0)) }, batch: batch, tokens: tokens, dInner: u.columns,
                           dState: A.columns, state: f32(state), out: f32(out))
    }

    public func ssd(x: Tensor, dt: Tensor, dtBias: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, state: Tensor,
                    batch: Int, tokens: Int, heads: Int, headDim: Int, groups: Int, stateSize: Int, chunkSize: Int,
                    dtMin: Float, dtMax: Float, out: Tensor) throws {
        SSD.scan(x: f32(x), dt: f32(dt), dtBias: f32(dtBias), A: f32(A), B: f32(B), C: f32(C), D: f32(D),
                 batch: batch, tokens: tokens, heads: heads, headDim: headDim, groups: groups, dState: stateSize,
                 chunkSize: chunkSize, dtMin: dtMin, dtMax: dtMax, state: f32(state), out: f32(out))
    }

    public func gatedRMSNorm(_ x: Tensor, gate: Tensor, weight: Tensor, groups: Int, eps: Float, normBeforeGate: Bool,
                             out: Tensor) throws {
        GatedNorm.apply(x: f32(x), z: f32(gate), rows: x.rows, cols: x.columns, groups: groups, weight: f32(weight),
                        eps: eps, normBeforeGate: normBeforeGate, out: f32(out))
    }

    // MARK: Helpers

    private func raw(_ t: Tensor) -> UnsafeMutableRawPointer { UnsafeMutableRawPointer(bitPattern: t.address)! }

    private func f32(_ t: Tensor) -> UnsafeMutablePointer<Float> {
        precondition(t.type == .fp32, "kernel expects an fp32 tensor, got \(t.type) \(t.shape)")
        return raw(t).assumingMemoryBound(to: Float.self)
    }

    private func check(_ condition: Bool, _ what: @autoclosure () -> String) throws {
        if !condition { throw ScopeError("cpu backend: shape mismatch in \(what())") }
    }

    private static func kind(_ a: Activation) -> ActivationKind {
        switch a {
        case .silu: .silu
        case .gelu: .gelu
        case .geluTanh: .geluTanh
        case .relu: .relu
        case .relu2: .relu2
        }
    }
}
