#if canImport(Glibc)
import Glibc
#endif
import ScopeSupport

/// The NVRTC runtime compiler (libnvrtc.so.13 or .12), resolved with dlsym. It needs no GPU.
public final class NVRTC: @unchecked Sendable {
    public let library: LoadedLibrary
    /// Folders passed with -I so that kernels can include cuda_bf16.h.
    public let includeDirectories: [String]

    private typealias Program = OpaquePointer?
    private let nvrtcGetErrorString: @convention(c) (Int32) -> UnsafePointer<CChar>?
    private let nvrtcVersion: @convention(c) (UnsafeMutablePointer<Int32>, UnsafeMutablePointer<Int32>) -> Int32
    private let nvrtcCreateProgram: @convention(c) (UnsafeMutablePointer<Program>, UnsafePointer<CChar>,
                                                    UnsafePointer<CChar>, Int32,
                                                    UnsafePointer<UnsafePointer<CChar>?>?,
                                                    UnsafePointer<UnsafePointer<CChar>?>?) -> Int32
    private let nvrtcCompileProgram: @convention(c) (Program, Int32, UnsafePointer<UnsafePointer<CChar>?>?) -> Int32
    private let nvrtcGetProgramLogSize: @convention(c) (Program, UnsafeMutablePointer<Int>) -> Int32
    private let nvrtcGetProgramLog: @convention(c) (Program, UnsafeMutablePointer<CChar>) -> Int32
    private let nvrtcGetCUBINSize: @convention(c) (Program, UnsafeMutablePointer<Int>) -> Int32
    private let nvrtcGetCUBIN: @convention(c) (Program, UnsafeMutablePointer<CChar>) -> Int32
    private let nvrtcDestroyProgram: @convention(c) (UnsafeMutablePointer<Program>) -> Int32

    /// Opens NVRTC from the CUDA search locations and finds the headers that belong with it.
    public init(locations: [LibrarySearch.Location] = LibrarySearch.locations(),
                environment: (String) -> String? = LibrarySearch.environment) throws {
        library = try LibrarySearch.open(
            ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"], what: "NVRTC (libnvrtc.so.13 or .12)",
            fix: "install the CUDA toolkit, or `pip install nvidia-cuda-nvrtc nvidia-cuda-runtime` and point "
                + "\(LibrarySearch.overrideVariable) at its nvidia/cu13/lib", locations: locations)
        let l = library
        nvrtcGetErrorString = try l.function("nvrtcGetErrorString")
        nvrtcVersion = try l.function("nvrtcVersion")
        nvrtcCreateProgram = try l.function("nvrtcCreateProgram")
        nvrtcCompileProgram = try l.function("nvrtcCompileProgram")
        nvrtcGetProgramLogSize = try l.function("nvrtcGetProgramLogSize")
        nvrtcGetProgramLog = try l.function("nvrtcGetProgramLog")
        nvrtcGetCUBINSize = try l.function("nvrtcGetCUBINSize")
        nvrtcGetCUBIN = try l.function("nvrtcGetCUBIN")
        nvrtcDestroyProgram = try l.function("nvrtcDestroyProgram")
        includeDirectories = Self.headerDirectories(libraryPath: library.path, environment: environment)
    }

    /// NVRTC's version as "13.0".
    public func version() throws -> String {
        var major: Int32 = 0, minor: Int32 = 0
        try check(nvrtcVersion(&major, &minor), "nvrtcVersion")
        return "\(major).\(minor)"
    }

    /// Compiles `source` (with `headers`: include name to text) for `architecture` ("sm_90") and returns the cubin.
    /// A compile error is reported with NVRTC's log.
    public func compile(source: String, name: String, headers: [String: String] = [:],
                        architecture: String) throws -> [UInt8] {
        guard !includeDirectories.isEmpty else {
            throw ScopeError("cuda_bf16.h not found next to \(library.path), in CUDA_HOME/include or "
                + "/usr/local/cuda/include; install the CUDA headers (`pip install nvidia-cuda-runtime`)")
        }
        let options = ["--gpu-architecture=\(architecture)", "--std=c++17"] + includeDirectories.map { "-I\($0)" }
        var program: Program = nil
        let names = headers.keys.sorted()
        try withCStrings(names.map { headers[$0]! }) { headerTexts in
            try withCStrings(names) { headerNames in
                try check(nvrtcCreateProgram(&program, source, name, Int32(names.count), headerTexts, headerNames),
                          "nvrtcCreateProgram(\(name))")
            }
        }
        defer { _ = nvrtcDestroyProgram(&program) }
        let status = withCStrings(options) { nvrtcCompileProgram(program, Int32(options.count), $0) }
        if status != 0 {
            throw ScopeError("nvrtcCompileProgram(\(name), \(architecture)) failed: \(errorString(status)): "
                + log(program).split(separator: "\n").prefix(8).joined(separator: " | "))
        }
        var size = 0
        try check(nvrtcGetCUBINSize(program, &size), "nvrtcGetCUBINSize(\(name))")
        var cubin = [CChar](repeating: 0, count: size)
        try check(nvrtcGetCUBIN(program, &cubin), "nvrtcGetCUBIN(\(name))")
        return cubin.map { UInt8(bitPattern: $0) }
    }

    // MARK: Helpers

    private func log(_ program: Program) -> String {
        var size = 0
        guard nvrtcGetProgramLogSize(program, &size) == 0, size > 1 else { return "(no log)" }
        var text = [CChar](repeating: 0, count: size)
        guard nvrtcGetProgramLog(program, &text) == 0 else { return "(no log)" }
        return String(cString: text)
    }

    private func errorString(_ status: Int32) -> String {
        nvrtcGetErrorString(status).map { String(cString: $0) } ?? "nvrtcResult \(status)"
    }

    private func check(_ status: Int32, _ call: @autoclosure () -> String) throws {
        if status != 0 { throw ScopeError("\(call()) failed: \(errorString(status))") }
    }

    /// Folders holding cuda_bf16.h: next to the library (../include, as in the toolkit and the pip wheels), then
    /// CUDA_HOME, CUDA_PATH and /usr/local/cuda.
    static func headerDirectories(libraryPath: String, environment: (String) -> String?) -> [String] {
        var candidates: [String] = []
        var parts = libraryPath.split(separator: "/", omittingEmptySubsequences: false)
        if parts.count >= 2 {
            parts.removeLast(2)
            candidates.append(parts.joined(separator: "/") + "/include")
        }
        for variable in ["CUDA_HOME", "CUDA_PATH"] {
            if let root = environment(variable), !root.isEmpty { candidates.append(root + "/include") }
        }
        candidates += ["/usr/local/cuda/include", "/usr/local/cuda/targets/x86_64-linux/include"]
        for directory in candidates where access(directory + "/cuda_bf16.h", F_OK) == 0 {
            return [directory]
        }
        return []
    }
}

/// Runs `body` with a C array of C strings that lives for the call.
func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>?) throws -> R) rethrows -> R {
    let copies = strings.map { strdup($0) }
    defer { copies.forEach { free($0) } }
    let pointers = copies.map { UnsafePointer($0) }
    return try pointers.withUnsafeBufferPointer { try body($0.baseAddress) }
}
