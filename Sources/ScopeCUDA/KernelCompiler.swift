import ScopeEngine
import ScopeSupport

/// The embedded kernel modules (Sources/ScopeCUDA/Kernels/*.cu) compiled through NVRTC for one architecture, each
/// cubin cached on disk by `KernelCache`.
public struct KernelCompiler {
    /// Names of the compilable modules ("attention", "ssd", ...); `common` is the header they include.
    public static var modules: [String] { KernelSources.files.keys.filter { $0 != "common" }.sorted() }

    static var headers: [String: String] { ["common.cuh": KernelSources.files["common"] ?? ""] }

    public let nvrtc: NVRTC
    public let cache: KernelCache
    public let architecture: String
    private let compilerVersion: String

    public init(nvrtc: NVRTC, cache: KernelCache, architecture: String) throws {
        self.nvrtc = nvrtc
        self.cache = cache
        self.architecture = architecture
        compilerVersion = try nvrtc.version()
    }

    /// Modules that use architecture-specific instructions (wgmma): compiled for "sm_90a" on sm_90, where their
    /// kernels run, and for the plain architecture elsewhere, where their kernels trap and are never launched.
    static let architectureSpecificModules: Set<String> = ["attention_wgmma"]

    /// The architecture a module is compiled for on a device of `architecture`.
    static func architecture(of module: String, on architecture: String) -> String {
        architectureSpecificModules.contains(module) && architecture == "sm_90" ? "sm_90a" : architecture
    }

    private func architecture(of module: String) -> String { Self.architecture(of: module, on: architecture) }

    /// The cache key of a module (for activations of `activation`) for this compiler and architecture.
    public func key(_ module: String, activation: ElementType = .bf16) throws -> String {
        KernelCache.key(source: try source(module, activation: activation), headers: Self.headers,
                        architecture: architecture(of: module), compilerVersion: compilerVersion)
    }

    /// The module's cubin for activations of `activation` (bf16 or fp16) from the cache, or compiled now; `hit`
    /// says which.
    public func cubin(_ module: String, activation: ElementType = .bf16) throws -> (bytes: [UInt8], hit: Bool) {
        let source = try source(module, activation: activation)
        return try cache.cubin(name: Self.variantName(module, activation), key: try key(module, activation: activation)) {
            try nvrtc.compile(source: source, name: module + ".cu", headers: Self.headers,
                              architecture: architecture(of: module))
        }
    }

    /// Compiles a module, ignoring and replacing any cached copy.
    public func recompile(_ module: String, activation: ElementType = .bf16) throws -> [UInt8] {
        cache.remove(name: Self.variantName(module, activation), key: try key(module, activation: activation))
        return try cubin(module, activation: activation).bytes
    }

    /// "attention" for bf16 activations, "attention-fp16" for fp16.
    static func variantName(_ module: String, _ activation: ElementType) -> String {
        activation == .fp16 ? module + "-fp16" : module
    }

    /// The module's source; fp16 activations define SCOPE_FP16 first (common.cuh picks the type from it).
    private func source(_ module: String, activation: ElementType) throws -> String {
        guard let text = KernelSources.files[module], module != "common" else {
            throw ScopeError("no kernel module '\(module)'; modules: \(Self.modules.joined(separator: ", "))")
        }
        switch activation {
        case .bf16: return text
        case .fp16: return "#define SCOPE_FP16 1\n" + text
        case .fp32: throw ScopeError("kernel modules take bf16 or fp16 activations, not fp32")
        }
    }
}
