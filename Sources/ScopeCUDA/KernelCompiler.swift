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

    /// The cache key of a module for this compiler and architecture.
    public func key(_ module: String) throws -> String {
        KernelCache.key(source: try source(module), headers: Self.headers, architecture: architecture,
                        compilerVersion: compilerVersion)
    }

    /// The module's cubin from the cache, or compiled now; `hit` says which.
    public func cubin(_ module: String) throws -> (bytes: [UInt8], hit: Bool) {
        let source = try source(module)
        return try cache.cubin(name: module, key: try key(module)) {
            try nvrtc.compile(source: source, name: module + ".cu", headers: Self.headers, architecture: architecture)
        }
    }

    /// Compiles a module, ignoring and replacing any cached copy.
    public func recompile(_ module: String) throws -> [UInt8] {
        cache.remove(name: module, key: try key(module))
        return try cubin(module).bytes
    }

    private func source(_ module: String) throws -> String {
        guard let text = KernelSources.files[module], module != "common" else {
            throw ScopeError("no kernel module '\(module)'; modules: \(Self.modules.joined(separator: ", "))")
        }
        return text
    }
}
