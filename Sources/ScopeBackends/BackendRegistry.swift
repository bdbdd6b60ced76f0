#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import ScopeBench
import ScopeCost
import ScopeCPU
import ScopeCUDA
import ScopeEngine
import ScopeModels
import ScopeSupport

/// The in-process backends this build can measure on, by name.
public enum BackendRegistry {
    /// "cpu", and "cuda" where the CUDA driver reports a GPU.
    public static let names = ["cpu"] + (CUDARuntime.gpuPresent ? ["cuda"] : [])

    /// A fresh backend with an optional memory cap, for weights of `dtype` (which picks the activation type; see
    /// `activationType(of:dtype:)`).
    public static func make(_ name: String, memoryLimit: Int?, dtype: ElementType = .bf16) throws -> Backend {
        if let error = unavailable(name) { throw error }
        switch name {
        case "cpu": return CPUBackend(memoryLimit: memoryLimit)
        case "cuda":
            return try CUDABackend(memoryLimit: memoryLimit, activations: try activationType(of: name, dtype: dtype))
        default:
            throw ScopeError("unknown backend '\(name)'\(Suggestions.hint(for: name, in: names)); "
                + "available: \(names.joined(separator: ", "))")
        }
    }

    /// The error for an engine this build has but this machine cannot run ("cuda" without a GPU, or with a GPU whose
    /// libraries or architecture the engine cannot use); nil otherwise.
    public static func unavailable(_ name: String) -> ScopeError? {
        guard name == "cuda" else { return nil }
        guard names.contains(name) else {
            return ScopeError("backend 'cuda' is unavailable: no NVIDIA GPU or CUDA driver here "
                + "(run 'doctor' for details); available: \(names.joined(separator: ", "))")
        }
        do {  // the GPU is there; its libraries (NVRTC, cuBLAS) and architecture must be too
            _ = try CUDARuntime.shared()
            return nil
        } catch {
            return ScopeError("backend 'cuda' is unavailable: \(error) (run 'doctor' for details)")
        }
    }

    /// The activation type a backend computes in with weights of `dtype`: fp32 on the CPU; on the GPU fp16 for fp16
    /// weights and bf16 otherwise.
    public static func activationType(of name: String, dtype: ElementType) throws -> ElementType {
        switch name {
        case "cpu": return .fp32
        case "cuda": return dtype == .fp16 ? .fp16 : .bf16
        default: return try make(name, memoryLimit: nil, dtype: dtype).activationType
        }
    }

    /// The allocation probe standing in for backend `name` with weights of `dtype`: its activation type, and for
    /// "cuda" its fused operations and the SSD kernels' scratch, so that the probe's high-water mark is the
    /// backend's (the small split-KV partials and a decode graph's few MB of held blocks are not modelled).
    public static func probe(standingInFor name: String, dtype: ElementType, memoryLimit: Int?) throws
        -> MemoryProbeBackend {
        let activation = try activationType(of: name, dtype: dtype)
        guard name == "cuda" else {
            return MemoryProbeBackend(standingInFor: name, activationType: activation, memoryLimit: memoryLimit)
        }
        let kernels = MemoryProbeBackend.Kernels(
            fusedRows: CUDABackend.foldedNormRows,
            ssdScratch: {
                CUDABackend.ssdScratch(batch: $0, tokens: $1, heads: $2, headDim: $3, groups: $4, stateSize: $5,
                                       activation: activation).reduce(0) { $0 + $1.count * $1.type.byteSize }
            },
            linearScratch: { CUDABackend.linearScratchBytes(input: $0, output: $1, weight: $2, activation: activation) },
            gatedStepParts: { CUDABackend.gatedStepParts(rows: $0, heads: $1, headDim: $2, innerSize: $3) })
        return MemoryProbeBackend(standingInFor: name, activationType: activation, memoryLimit: memoryLimit,
                                  kernels: kernels)
    }

    /// The copy bandwidth of the device a backend computes on, bytes read plus bytes written per second: the GPU's
    /// device-to-device copy for "cuda", a host memcpy otherwise; measured once per process (a fraction of a
    /// second). Nil where it cannot be measured.
    public static func copyBandwidth(of name: String) -> Double? {
        if let known = measuredBandwidth[name] { return known }
        let value: Double?
        if name == "cuda" {
            value = try? CUDARuntime.shared().measureCopyBandwidth()
        } else {
            let host = HostCalibration.copyBandwidth(megabytes: 256)
            value = host > 0 ? host : nil
        }
        measuredBandwidth[name] = value
        return value
    }

    /// Keeps a bandwidth measured elsewhere (the CPU calibration of a run's environment) unless one is known.
    static func recordCopyBandwidth(_ bandwidth: Double, of name: String) {
        if measuredBandwidth[name] == nil, bandwidth > 0 { measuredBandwidth[name] = bandwidth }
    }

    nonisolated(unsafe) private static var measuredBandwidth: [String: Double?] = [:]

    /// The memory a backend's tensors live in: the GPU's for "cuda", this machine's otherwise.
    public static func memoryCapacity(of name: String) -> Int {
        if name == "cuda", let runtime = try? CUDARuntime.shared() { return runtime.device.totalMemory }
        return physicalMemory
    }

    /// Physical memory of this machine, in bytes.
    public static var physicalMemory: Int {
        Int(sysconf(Int32(_SC_PHYS_PAGES))) * Int(sysconf(Int32(_SC_PAGESIZE)))
    }
}

/// The longest-context search on a backend: with the allocation probe (exact memory schedule, no arithmetic) or,
/// with `measure`, by running the model at every probe.
public enum MaxContextProbe {
    public static func search(model: String, batch: Int, dtype: String, backend: String, memoryLimit: Int,
                              measure: Bool, prefillChunking: PrefillChunking,
                              progress: ((MaxContextResult.Probe) -> Void)?) throws -> MaxContextResult {
        let spec = try ModelCatalog.resolve(model)
        guard let type = ElementType(name: dtype) else {
            throw ScopeError("dtype '\(dtype)' cannot run on an engine; use fp32, bf16 or fp16")
        }
        return try ContextSearch.maxContext(
            spec: spec, batch: batch, type: type, memoryLimit: memoryLimit, limit: 1 << 30,
            method: measure ? "measured" : "probe", backendName: backend,
            makeBackend: { limit in
                measure ? try BackendRegistry.make(backend, memoryLimit: limit, dtype: type) as Backend
                    : try BackendRegistry.probe(standingInFor: backend, dtype: type, memoryLimit: limit)
            },
            source: { measure ? RandomWeights(seed: 0) as WeightSource : ShapeOnlyWeights() },
            prefillChunking: prefillChunking, progress: { progress?($0) })
    }
}

/// Facts about this machine read without Foundation (the static worker has none).
public enum MachineFacts {
    /// The CPU model name from /proc/cpuinfo.
    public static var cpuName: String {
        firstValue(file: "/proc/cpuinfo", key: "model name", separator: ":") ?? "unknown CPU"
    }

    /// PRETTY_NAME from /etc/os-release, with the kernel release.
    public static var osName: String {
        var info = utsname()
        uname(&info)
        let kernel = withUnsafePointer(to: &info.release) {
            $0.withMemoryRebound(to: CChar.self, capacity: 65) { String(cString: $0) }
        }
        let name = firstValue(file: "/etc/os-release", key: "PRETTY_NAME", separator: "=")
            .map { $0.replacingQuotes } ?? "Linux"
        return "\(name) (kernel \(kernel))"
    }

    /// The run record of a run on `backend` from this machine; CPU runs calibrate the host for predictions.
    public static func environment(backend: String, dtype: String, gitRevision: String, commandLine: String,
                                   startedAt: String) -> RunEnvironment {
        let cpu = cpuName
        if backend.split(separator: ",").contains("cuda"), let runtime = try? CUDARuntime.shared() {
            let gpu = runtime.device
            return RunEnvironment(device: gpu.name, driver: "CUDA " + ((try? runtime.driver.version()) ?? "?"),
                                  os: osName, cpu: cpu, backend: backend, dtype: dtype, gitRevision: gitRevision,
                                  commandLine: commandLine, startedAt: startedAt,
                                  costDevice: catalogDevice(gpuName: gpu.name, memory: gpu.totalMemory))
        }
        let device = "cpu: \(cpu) (\(Parallel.workers) threads)"
        let calibrated = HostCalibration.device(name: device)
        // The calibration's copy is the one decode floors divide by: measure it once.
        BackendRegistry.recordCopyBandwidth(calibrated.memoryBandwidthBytesPerSecond, of: "cpu")
        return RunEnvironment(device: device, driver: "", os: osName, cpu: cpu, backend: backend, dtype: dtype,
                              gitRevision: gitRevision, commandLine: commandLine, startedAt: startedAt,
                              costDevice: calibrated)
    }

    /// The device catalog's entry for a GPU the driver names, where the catalog has it.
    static func catalogDevice(gpuName: String, memory: Int) -> Device? {
        let name = gpuName.lowercased()
        let id: String
        if name.contains("h200") { id = "h200" }
        else if name.contains("h100") { id = name.contains("pcie") ? "h100-pcie" : "h100-sxm" }
        else if name.contains("a100") { id = memory > 50 << 30 ? "a100-80gb" : "a100-40gb" }
        else { return nil }
        return try? DeviceCatalog.builtIn.device(id)
    }

    /// UTC now in ISO 8601.
    public static var now: String {
        var t = time(nil)
        var parts = tm()
        gmtime_r(&t, &parts)
        func two(_ n: Int32) -> String { n < 10 ? "0\(n)" : String(n) }
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T\(two(parts.tm_hour)):"
            + "\(two(parts.tm_min)):\(two(parts.tm_sec))Z"
    }

    static func firstValue(file: String, key: String, separator: Character) -> String? {
        guard let handle = fopen(file, "r") else { return nil }
        defer { fclose(handle) }
        var buffer = [CChar](repeating: 0, count: 4096)
        while fgets(&buffer, Int32(buffer.count), handle) != nil {
            let line = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if line.hasPrefix(key), let index = line.firstIndex(of: separator) {
                return String(line[line.index(after: index)...]).trimmed
            }
        }
        return nil
    }
}

extension String {
    var replacingQuotes: String { filter { $0 != "\"" } }
}
