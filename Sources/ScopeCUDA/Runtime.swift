import ScopeEngine
import ScopeSupport

/// A kernel: an `extern "C"` function of one embedded module.
struct Kernel: Hashable {
    let module: String
    let name: String
}

/// A kernel compiled for one activation type (bf16 or fp16).
private struct CompiledKernel: Hashable {
    let kernel: Kernel
    let activation: ElementType
}

/// One argument of a kernel launch.
enum KernelArgument {
    case pointer(CUdeviceptr)
    case int(Int32)
    case int64(Int64)
    case float(Float)
    /// A struct passed by value, as 8-byte words (pointers, or pairs of 32-bit fields low word first).
    case words([UInt64])

    static func int(_ v: Int) -> KernelArgument { .int(Int32(v)) }
    static func int64(_ v: Int) -> KernelArgument { .int64(Int64(v)) }
}

/// The process-wide CUDA state: libraries, GPU 0 with its primary context, cuBLAS, and the kernel modules
/// (compiled on first use and cached on disk). Backends share it.
public final class CUDARuntime: @unchecked Sendable {
    public let driver: Driver
    public let device: DeviceInfo
    public let cublas: CUBLAS
    public let compiler: KernelCompiler
    let context: OpaquePointer?
    private var modules: [String: OpaquePointer?] = [:]
    private var functions: [CompiledKernel: OpaquePointer?] = [:]
    private var sharedLimit: [CompiledKernel: Int] = [:]

    private static var instance: Result<CUDARuntime, Error>?

    /// The runtime, created on first use (the error of a failed start is kept and thrown again).
    public static func shared() throws -> CUDARuntime {
        if let instance { return try instance.get() }
        let result = Result { try CUDARuntime() }
        instance = result
        return try result.get()
    }

    /// Whether the driver loads and reports at least one GPU (no other library is needed for the answer).
    public static var gpuPresent: Bool {
        guard let driver = try? Driver(), let count = try? driver.deviceCount() else { return false }
        return count > 0
    }

    private init() throws {
        driver = try Driver()
        guard try driver.deviceCount() > 0 else { throw ScopeError("the CUDA driver reports no GPU") }
        device = try DeviceInfo(driver: driver, index: 0)
        try Self.requireSupported(device.computeCapability, name: device.name)
        var context: OpaquePointer?
        try driver.check(driver.cuDevicePrimaryCtxRetain(&context, 0), "cuDevicePrimaryCtxRetain")
        self.context = context
        try driver.check(driver.cuCtxSetCurrent(context), "cuCtxSetCurrent")
        programmaticLaunchAvailable = driver.cuLaunchKernelEx != nil && device.computeCapability.major >= 9
            && EnvironmentSwitch.isOn("SSM_SCOPE_CUDA_PDL")
        cublas = try CUBLAS()
        compiler = try KernelCompiler(nvrtc: try NVRTC(), cache: KernelCache(), architecture: device.architecture)
    }

    /// Throws unless a GPU of compute capability `capability` can run the kernels: they use cp.async and bf16
    /// tensor cores, which need 8.0 (Ampere) or newer.
    static func requireSupported(_ capability: (major: Int, minor: Int), name: String) throws {
        guard capability.major >= 8 else {
            throw ScopeError("\(name) has compute capability \(capability.major).\(capability.minor); the cuda "
                + "backend's kernels need 8.0 or newer (Ampere or later: cp.async and bf16 tensor cores); "
                + "measure on this machine with --backend cpu")
        }
    }

    /// Makes the primary context current on the calling thread.
    func makeCurrent() throws {
        try driver.check(driver.cuCtxSetCurrent(context), "cuCtxSetCurrent")
    }

    /// The device-to-device copy bandwidth in bytes per second, counting bytes read and written: `repeats` copies
    /// of `bytes` between two fresh buffers on the null stream, timed with events after one untimed copy. This is
    /// the bandwidth that decode floors are stated against.
    public func measureCopyBandwidth(bytes: Int = 512 << 20, repeats: Int = 10) throws -> Double {
        try makeCurrent()
        var source: CUdeviceptr = 0, target: CUdeviceptr = 0
        try driver.check(driver.cuMemAlloc(&source, bytes), "cuMemAlloc_v2(\(bytes))")
        defer { _ = driver.cuMemFree(source) }
        try driver.check(driver.cuMemAlloc(&target, bytes), "cuMemAlloc_v2(\(bytes))")
        defer { _ = driver.cuMemFree(target) }
        var start: OpaquePointer?, end: OpaquePointer?
        try driver.check(driver.cuEventCreate(&start, 0), "cuEventCreate")
        defer { _ = driver.cuEventDestroy(start) }
        try driver.check(driver.cuEventCreate(&end, 0), "cuEventCreate")
        defer { _ = driver.cuEventDestroy(end) }
        try driver.check(driver.cuMemsetD8Async(source, 1, bytes, nil), "cuMemsetD8Async")
        try driver.check(driver.cuMemcpyDtoDAsync(target, source, bytes, nil), "cuMemcpyDtoDAsync_v2")
        try driver.check(driver.cuEventRecord(start, nil), "cuEventRecord")
        for _ in 0..<repeats {
            try driver.check(driver.cuMemcpyDtoDAsync(target, source, bytes, nil), "cuMemcpyDtoDAsync_v2")
        }
        try driver.check(driver.cuEventRecord(end, nil), "cuEventRecord")
        try driver.check(driver.cuEventSynchronize(end), "cuEventSynchronize")
        var ms: Float = 0
        try driver.check(driver.cuEventElapsedTime(&ms, start, end), "cuEventElapsedTime")
        return Double(2 * bytes * repeats) / (Double(ms) / 1000)
    }

    /// Loads every module for activations of `activation` now (compiling what the cache lacks), so that compile
    /// time stays out of measurements.
    public func loadAllModules(activation: ElementType = .bf16) throws {
        for module in KernelCompiler.modules { _ = try self.module(module, activation) }
    }

    private func module(_ name: String, _ activation: ElementType) throws -> OpaquePointer? {
        let variant = KernelCompiler.variantName(name, activation)
        if let loaded = modules[variant] { return loaded }
        let (bytes, hit) = try compiler.cubin(name, activation: activation)
        var module: OpaquePointer?
        var status = bytes.withUnsafeBytes { driver.cuModuleLoadData(&module, $0.baseAddress!) }
        if status != 0 && hit {  // a cached cubin the driver rejects: compile it again
            let fresh = try compiler.recompile(name, activation: activation)
            status = fresh.withUnsafeBytes { driver.cuModuleLoadData(&module, $0.baseAddress!) }
        }
        try driver.check(status, "cuModuleLoadData(\(variant))")
        modules[variant] = module
        return module
    }

    private func function(_ compiled: CompiledKernel) throws -> OpaquePointer? {
        if let f = functions[compiled] { return f }
        let module = try self.module(compiled.kernel.module, compiled.activation)
        var f: OpaquePointer?
        let name = compiled.kernel.name
        try driver.check(driver.cuModuleGetFunction(&f, module, name), "cuModuleGetFunction(\(name))")
        functions[compiled] = f
        return f
    }

    /// Whether kernels can be launched to overlap the one before them (programmatic dependent launch: sm_90 and a
    /// driver with cuLaunchKernelEx; `SSM_SCOPE_CUDA_PDL=0` turns it off).
    let programmaticLaunchAvailable: Bool

    /// Launches `kernel`, compiled for activations of `activation`, on `stream` with `block` threads per block and
    /// `shared` bytes of dynamic shared memory. `programmatic` lets it start before the kernel ahead of it in the
    /// stream ends (every kernel calls grid_dependency_sync before touching memory the kernels before it use); it is
    /// ignored where `programmaticLaunchAvailable` is false.
    func launch(_ kernel: Kernel, activation: ElementType, grid: (Int, Int, Int), block: Int, shared: Int = 0,
                stream: OpaquePointer?, programmatic: Bool = false, _ arguments: [KernelArgument]) throws {
        let compiled = CompiledKernel(kernel: kernel, activation: activation)
        let f = try function(compiled)
        if shared > 48 * 1024, (sharedLimit[compiled] ?? 0) < shared {
            guard shared <= device.sharedMemoryPerBlock else {
                throw ScopeError("\(kernel.name) needs \(shared) bytes of shared memory; \(device.name) allows "
                    + "\(device.sharedMemoryPerBlock) per block")
            }
            try driver.check(driver.cuFuncSetAttribute(f, 8, Int32(shared)),
                             "cuFuncSetAttribute(\(kernel.name), MAX_DYNAMIC_SHARED_SIZE_BYTES, \(shared))")
            sharedLimit[compiled] = shared
        }
        guard grid.0 > 0, grid.1 > 0, grid.2 > 0 else { return }
        guard grid.1 <= 65535, grid.2 <= 65535, grid.0 < Int(Int32.max) else {
            throw ScopeError("\(kernel.name): grid \(grid) exceeds the device's limits")
        }
        // Each argument in its own 8-byte slots; kernelParams points at each argument's first slot.
        var slots: [UInt64] = []
        var offsets: [Int] = []
        for argument in arguments {
            offsets.append(slots.count)
            switch argument {
            case .pointer(let p): slots.append(p)
            case .int(let v): slots.append(UInt64(UInt32(bitPattern: v)))
            case .int64(let v): slots.append(UInt64(bitPattern: v))
            case .float(let v): slots.append(UInt64(v.bitPattern))
            case .words(let words): slots += words
            }
        }
        let launchEx = programmatic && programmaticLaunchAvailable ? driver.cuLaunchKernelEx : nil
        let status = slots.withUnsafeMutableBytes { raw -> Int32 in
            var pointers: [UnsafeMutableRawPointer?] = offsets.map { raw.baseAddress! + 8 * $0 }
            guard let launchEx else {
                return driver.cuLaunchKernel(f, UInt32(grid.0), UInt32(grid.1), UInt32(grid.2), UInt32(block), 1, 1,
                                             UInt32(shared), stream, &pointers, nil)
            }
            return ProgrammaticLaunch.withConfig(grid: grid, block: block, shared: shared, stream: stream) {
                launchEx($0, f, &pointers, nil)
            }
        }
        try driver.check(status, "cuLaunchKernel(\(kernel.name), grid \(grid), block \(block))")
    }
}

/// The CUlaunchConfig (56 bytes) with one CUlaunchAttribute (72 bytes) that allows programmatic stream serialization,
/// laid out as cuda.h declares them: config { gridDimX, Y, Z, blockDimX, Y, Z, sharedMemBytes: uint32; (pad);
/// hStream; attrs; numAttrs: uint32 }, attribute { id: int32; pad[4]; value: union of 64 bytes }.
enum ProgrammaticLaunch {
    static let programmaticStreamSerialization: Int32 = 6  // CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION

    static func withConfig(grid: (Int, Int, Int), block: Int, shared: Int, stream: OpaquePointer?,
                           _ body: (UnsafeRawPointer) -> Int32) -> Int32 {
        let attribute = UnsafeMutableRawPointer.allocate(byteCount: 72, alignment: 8)
        let config = UnsafeMutableRawPointer.allocate(byteCount: 56, alignment: 8)
        defer { attribute.deallocate(); config.deallocate() }
        attribute.initializeMemory(as: UInt8.self, repeating: 0, count: 72)
        attribute.storeBytes(of: programmaticStreamSerialization, as: Int32.self)
        attribute.storeBytes(of: Int32(1), toByteOffset: 8, as: Int32.self)  // programmaticStreamSerializationAllowed
        config.initializeMemory(as: UInt8.self, repeating: 0, count: 56)
        for (i, value) in [grid.0, grid.1, grid.2, block, 1, 1, shared].enumerated() {
            config.storeBytes(of: UInt32(value), toByteOffset: 4 * i, as: UInt32.self)
        }
        config.storeBytes(of: UInt(bitPattern: stream.map { Int(bitPattern: UnsafeRawPointer($0)) } ?? 0),
                          toByteOffset: 32, as: UInt.self)
        config.storeBytes(of: UInt(bitPattern: Int(bitPattern: attribute)), toByteOffset: 40, as: UInt.self)
        config.storeBytes(of: UInt32(1), toByteOffset: 48, as: UInt32.self)
        return body(UnsafeRawPointer(config))
    }
}
