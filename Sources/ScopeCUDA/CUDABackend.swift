import ScopeCost
import ScopeEngine
import ScopeModels
import ScopeSupport

/// The CUDA backend: bf16 or fp16 activations and caches with fp32 accumulation, fp32 SSM states, norms and
/// biases; GEMMs through cuBLAS, every other operator as an NVRTC-compiled kernel, all on one stream. Device memory
/// comes from a caching pool; `memory` counts the bytes of live tensors exactly, so a limit makes a large GPU stand
/// in for a small one and allocations past it throw `OutOfMemory`. Timing uses CUDA events. Decode steps are
/// recorded as CUDA graphs and replayed.
public final class CUDABackend: StepRecordingBackend, TensorAllocator {
    public let name = "cuda"
    public let memory: MemoryTracker
    /// bf16 (the default) or fp16; every kernel module is compiled for it.
    public let activationType: ElementType

    let runtime: CUDARuntime
    let stream: OpaquePointer?
    let blas: OpaquePointer?
    let allocator: DeviceAllocator
    let staging: StagingRing
    private var profile: OperatorProfile?
    private var pending: [(kind: OperatorKind, start: OpaquePointer?, end: OpaquePointer?)] = []
    private var spareEvents: [OpaquePointer?] = []
    /// The NVML power meter of this GPU, opened at the first energy measurement (see CUDABackend+Energy.swift).
    var energyMeterState: Result<EnergyMeter?, Error>?
    /// Set while a decode step is being recorded as a graph (see CUDABackend+Graphs.swift).
    var recording: StepRecordingState?
    /// Whether prefill attention at head size 64 may run on warpgroup MMAs where the GPU has them (the selftest turns
    /// it off to check the mma.sync kernel on the same GPU; see CUDABackend+Attention.swift).
    public var allowsWarpgroupAttention = true

    /// A backend on GPU 0 computing with `activations` (bf16 or fp16); `memoryLimit` caps the bytes of live tensors
    /// (nil: the device's memory).
    public init(memoryLimit: Int? = nil, activations: ElementType = .bf16) throws {
        guard activations == .bf16 || activations == .fp16 else {
            throw ScopeError("the cuda backend computes in bf16 or fp16, not \(activations)")
        }
        activationType = activations
        runtime = try CUDARuntime.shared()
        try runtime.makeCurrent()
        let driver = runtime.driver
        memory = MemoryTracker(limit: memoryLimit)
        var stream: OpaquePointer?
        try driver.check(driver.cuStreamCreate(&stream, 0), "cuStreamCreate")
        self.stream = stream
        var handle: OpaquePointer?
        try runtime.cublas.check(runtime.cublas.cublasCreate(&handle), "cublasCreate_v2")
        blas = handle
        try runtime.cublas.check(runtime.cublas.cublasSetStream(handle, stream), "cublasSetStream_v2")
        allocator = DeviceAllocator(memory: driver)
        staging = StagingRing(driver: driver, stream: stream)
        try runtime.loadAllModules(activation: activations)
    }

    deinit {
        _ = runtime.driver.cuStreamSynchronize(stream)
        _ = runtime.cublas.cublasDestroy(blas)
        for event in spareEvents + pending.flatMap({ [$0.start, $0.end] }) { _ = runtime.driver.cuEventDestroy(event) }
        try? allocator.releaseCache()
        try? staging.release()
        _ = runtime.driver.cuStreamDestroy(stream)
    }

    /// The GPU this backend runs on.
    public var device: DeviceInfo { runtime.device }

    // MARK: Memory

    public func makeTensor(_ shape: [Int], _ type: ElementType) throws -> Tensor {
        let tensor = try makeOutputTensor(shape, type)
        try driver.check(driver.cuMemsetD8Async(CUdeviceptr(tensor.address), 0, tensor.byteCount, stream),
                         "cuMemsetD8Async")
        return tensor
    }

    public func makeOutputTensor(_ shape: [Int], _ type: ElementType) throws -> Tensor {
        let bytes = max(1, shape.reduce(1, *)) * type.byteSize
        try memory.reserve(bytes)
        guard let pointer = try allocator.allocate(bytes) else {
            memory.release(bytes)
            throw OutOfMemory(requested: bytes, inUse: memory.inUse, limit: memory.limit ?? device.totalMemory)
        }
        return Tensor(shape: shape, type: type, address: UInt(pointer), byteCount: bytes, allocator: self)
    }

    public func release(address: UInt, byteCount: Int) {
        allocator.free(CUdeviceptr(address), bytes: byteCount)
        memory.release(byteCount)
    }

    public func upload(_ values: [Float], into tensor: Tensor) throws {
        try values.withUnsafeBytes { try upload(raw: $0, type: .fp32, into: tensor) }
    }

    public func upload(raw source: UnsafeRawBufferPointer, type: ElementType, into tensor: Tensor) throws {
        guard source.count == tensor.count * type.byteSize else {
            throw ScopeError("cuda backend: upload of \(source.count) bytes of \(type) into \(tensor.shape) \(tensor.type)")
        }
        guard let base = source.baseAddress, tensor.count > 0 else { return }
        if type == tensor.type {
            try driver.check(driver.cuMemcpyHtoD(CUdeviceptr(tensor.address), base, source.count), "cuMemcpyHtoD_v2")
            return
        }
        var converted = [UInt8](repeating: 0, count: tensor.byteCount)
        converted.withUnsafeMutableBytes { out in
            for i in 0..<tensor.count {
                ElementConversion.store(ElementConversion.load(base, type, i), out.baseAddress!, tensor.type, i)
            }
        }
        try driver.check(driver.cuMemcpyHtoD(CUdeviceptr(tensor.address), converted, converted.count),
                         "cuMemcpyHtoD_v2")
    }

    public func download(_ tensor: Tensor) throws -> [Float] {
        var bytes = [UInt8](repeating: 0, count: tensor.byteCount)
        try driver.check(driver.cuMemcpyDtoH(&bytes, CUdeviceptr(tensor.address), bytes.count), "cuMemcpyDtoH_v2")
        return bytes.withUnsafeBytes { raw in
            (0..<tensor.count).map { ElementConversion.load(raw.baseAddress!, tensor.type, $0) }
        }
    }

    public func synchronize() throws {
        try driver.check(driver.cuStreamSynchronize(stream), "cuStreamSynchronize")
    }

    // MARK: Timing

    public func timeRegion(_ body: () throws -> Void) throws -> Double {
        let start = try event(), end = try event()
        defer { spareEvents += [start, end] }
        try driver.check(driver.cuEventRecord(start, stream), "cuEventRecord")
        try body()
        try driver.check(driver.cuEventRecord(end, stream), "cuEventRecord")
        return try elapsed(start, end)
    }

    public func measure<T>(_ kind: OperatorKind, _ body: () throws -> T) throws -> T {
        guard profile != nil else { return try body() }
        let start = try event(), end = try event()
        try driver.check(driver.cuEventRecord(start, stream), "cuEventRecord")
        let result = try body()
        try driver.check(driver.cuEventRecord(end, stream), "cuEventRecord")
        pending.append((kind, start, end))
        return result
    }

    public func startProfile() { profile = OperatorProfile() }

    /// Steps are recorded as graphs except during a profiling pass, which times every operator with its own events,
    /// or when the environment sets `SSM_SCOPE_CUDA_GRAPHS=0` (every operator of every step issued from the host).
    public var canRecordSteps: Bool { graphsEnabled && profile == nil && recording == nil }

    /// False when `SSM_SCOPE_CUDA_GRAPHS=0`.
    public let graphsEnabled: Bool = EnvironmentSwitch.isOn("SSM_SCOPE_CUDA_GRAPHS")

    /// Waits for the profiled work and attributes each operator's event-timed span to its kind.
    public func finishProfile() throws -> OperatorProfile {
        defer {
            spareEvents += pending.flatMap { [$0.start, $0.end] }
            pending = []
            profile = nil
        }
        var result = profile ?? OperatorProfile()
        for entry in pending { result.add(entry.kind, seconds: try elapsed(entry.start, entry.end)) }
        return result
    }

    private func event() throws -> OpaquePointer? {
        if let spare = spareEvents.popLast() { return spare }
        var event: OpaquePointer?
        try driver.check(driver.cuEventCreate(&event, 0), "cuEventCreate")
        return event
    }

    private func elapsed(_ start: OpaquePointer?, _ end: OpaquePointer?) throws -> Double {
        try driver.check(driver.cuEventSynchronize(end), "cuEventSynchronize")
        var ms: Float = 0
        try driver.check(driver.cuEventElapsedTime(&ms, start, end), "cuEventElapsedTime")
        return Double(ms) / 1000
    }

    // MARK: Helpers for the operator files

    var driver: Driver { runtime.driver }

    /// Launches a kernel on this backend's stream; while a decode step is recorded, as a programmatic dependent
    /// launch (it may start while the kernel before it finishes).
    func launch(_ kernel: Kernel, grid: (Int, Int, Int), block: Int, shared: Int = 0,
                _ arguments: [KernelArgument]) throws {
        try runtime.launch(kernel, activation: activationType, grid: grid, block: block, shared: shared, stream: stream,
                           programmatic: recording != nil, arguments)
    }

    /// Launches a grid-stride kernel over `count` elements.
    func launchElementwise(_ kernel: Kernel, count: Int, _ arguments: [KernelArgument]) throws {
        guard count > 0 else { return }
        let blocks = max(1, min((count + 255) / 256, device.multiprocessors * 32))
        try launch(kernel, grid: (blocks, 1, 1), block: 256, arguments)
    }

    /// A scratch tensor, counted in `memory` like any other.
    func scratch(_ count: Int, _ type: ElementType) throws -> Tensor { try makeTensor([count], type) }

    func check(_ condition: Bool, _ what: @autoclosure () -> String) throws {
        if !condition { throw ScopeError("cuda backend: \(what())") }
    }

    /// Throws unless every tensor has the activation type (bf16 or fp16).
    func requireActivations(_ tensors: Tensor?..., in op: String) throws {
        try requireActivations(tensors, in: op)
    }

    func requireActivations(_ tensors: [Tensor?], in op: String) throws {
        for case let t? in tensors where t.type != activationType {
            throw ScopeError("cuda backend: \(op) expects \(activationType) activations, got \(t.type) \(t.shape)")
        }
    }

    /// Throws unless every tensor is fp32 (parameters, biases, states).
    func requireFP32(_ tensors: Tensor?..., in op: String) throws {
        for case let t? in tensors where t.type != .fp32 {
            throw ScopeError("cuda backend: \(op) expects an fp32 tensor, got \(t.type) \(t.shape)")
        }
    }
}

extension KernelArgument {
    static func tensor(_ t: Tensor?) -> KernelArgument { .pointer(CUdeviceptr(t?.address ?? 0)) }
}

extension ElementType {
    /// The type code the kernels use (fp32 0, bf16 1, fp16 2).
    var kernelCode: KernelArgument {
        switch self {
        case .fp32: .int(Int32(0))
        case .bf16: .int(Int32(1))
        case .fp16: .int(Int32(2))
        }
    }
}
