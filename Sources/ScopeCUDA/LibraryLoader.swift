#if canImport(Glibc)
import Glibc
#endif
import ScopeSupport

/// A shared library opened with `dlopen`, and where it came from.
public final class LoadedLibrary: @unchecked Sendable {
    /// What the library is, for messages ("NVRTC").
    public let what: String
    /// The file that was opened.
    public let path: String
    /// Which search location supplied it ("SSM_SCOPE_CUDA_LIBS", "CUDA_HOME", "system library path", ...).
    public let origin: String
    let handle: UnsafeMutableRawPointer

    init(what: String, path: String, origin: String, handle: UnsafeMutableRawPointer) {
        self.what = what
        self.path = path
        self.origin = origin
        self.handle = handle
    }

    /// The address of `symbol`, or a one-line error naming the library and the symbol.
    func address(_ symbol: String) throws -> UnsafeMutableRawPointer {
        guard let pointer = dlsym(handle, symbol) else {
            throw ScopeError("\(what) (\(path)) has no symbol \(symbol): the library is too old; install CUDA 12 or newer")
        }
        return pointer
    }

    /// `symbol` as a C function of type `F`.
    func function<F>(_ symbol: String, as type: F.Type = F.self) throws -> F {
        unsafeBitCast(try address(symbol), to: F.self)
    }

    /// `symbol` as a C function, or nil where the library lacks it.
    func optionalFunction<F>(_ symbol: String, as type: F.Type = F.self) -> F? {
        dlsym(handle, symbol).map { unsafeBitCast($0, to: F.self) }
    }
}

/// Where the CUDA libraries are looked for, in order: the folders of `SSM_SCOPE_CUDA_LIBS` (colon-separated),
/// `CUDA_HOME` and `CUDA_PATH` (lib64 and targets/x86_64-linux/lib), /usr/local/cuda, /usr/local/cuda-*
/// (newest first), the Python wheels' nvidia/cu13/lib and nvidia/cu12/lib in site-packages, then the system
/// library path (ld.so.cache, LD_LIBRARY_PATH).
public enum LibrarySearch {
    /// The environment variable naming extra folders to search first.
    public static let overrideVariable = "SSM_SCOPE_CUDA_LIBS"

    /// A folder to search and the name of the setting that put it there.
    public struct Location: Sendable, Equatable {
        public let directory: String
        public let origin: String
    }

    /// Every folder searched, in order (the system library path is tried after these).
    public static func locations(environment: (String) -> String? = LibrarySearch.environment) -> [Location] {
        var result: [Location] = []
        func add(_ directory: String, _ origin: String) {
            if !directory.isEmpty, !result.contains(where: { $0.directory == directory }) {
                result.append(Location(directory: directory, origin: origin))
            }
        }
        for directory in (environment(overrideVariable) ?? "").split(separator: ":") {
            add(String(directory), overrideVariable)
        }
        for variable in ["CUDA_HOME", "CUDA_PATH"] {
            guard let root = environment(variable), !root.isEmpty else { continue }
            add(root + "/lib64", variable)
            add(root + "/targets/x86_64-linux/lib", variable)
        }
        add("/usr/local/cuda/lib64", "/usr/local/cuda")
        add("/usr/local/cuda/targets/x86_64-linux/lib", "/usr/local/cuda")
        for directory in glob("/usr/local/cuda-*/targets/x86_64-linux/lib").sorted(by: versionOrder) {
            add(directory, "/usr/local/cuda-*")
        }
        for wheel in ["cu13", "cu12"] {
            for directory in sitePackages(environment: environment).flatMap({ glob($0 + "/nvidia/\(wheel)/lib") }) {
                add(directory, "python wheel nvidia/\(wheel)")
            }
            // The cu12 wheels keep each library in its own package folder (nvidia/cublas/lib, nvidia/cuda_nvrtc/lib).
            if wheel == "cu12" {
                for directory in sitePackages(environment: environment).flatMap({ glob($0 + "/nvidia/*/lib") }) {
                    add(directory, "python wheel nvidia/*")
                }
            }
        }
        return result
    }

    /// Opens the first of `names` (sonames, best first) found in `locations`, then on the system library path.
    /// `systemFirst` tries the system path first (the driver library must match the kernel driver).
    public static func open(_ names: [String], what: String, fix: String, systemFirst: Bool = false,
                            locations: [Location] = LibrarySearch.locations()) throws -> LoadedLibrary {
        var tried: [String] = []
        func fromSystem() -> LoadedLibrary? {
            for name in names {
                tried.append(name)
                if let handle = dlopen(name, RTLD_NOW | RTLD_GLOBAL) {
                    return LoadedLibrary(what: what, path: loadedPath(name) ?? name, origin: "system library path",
                                         handle: handle)
                }
            }
            return nil
        }
        let overrides = locations.filter { $0.origin == overrideVariable }
        let others = locations.filter { $0.origin != overrideVariable }
        // nil stands for the system library path.
        let order: [[Location]?] = systemFirst ? [overrides, nil, others] : [overrides, others, nil]
        for step in order {
            guard let group = step else {
                if let library = fromSystem() { return library }
                continue
            }
            for location in group {
                for name in names {
                    let path = location.directory + "/" + name
                    guard access(path, F_OK) == 0 else { continue }
                    tried.append(path)
                    if let handle = dlopen(path, RTLD_NOW | RTLD_GLOBAL) {
                        return LoadedLibrary(what: what, path: path, origin: location.origin, handle: handle)
                    }
                }
            }
        }
        let detail = tried.isEmpty ? "" : " (tried \(tried.count) candidates; last dlopen error: \(lastError()))"
        throw ScopeError("\(what) not found: none of \(names.joined(separator: ", ")) in \(overrideVariable), "
            + "CUDA_HOME, CUDA_PATH, /usr/local/cuda*, python nvidia wheels or the system library path\(detail); \(fix)")
    }

    // MARK: Helpers

    public static func environment(_ name: String) -> String? {
        guard let value = getenv(name) else { return nil }
        return String(cString: value)
    }

    /// Python site-packages folders: the active virtual environment's, the user's and the system's.
    static func sitePackages(environment: (String) -> String?) -> [String] {
        var patterns: [String] = []
        if let venv = environment("VIRTUAL_ENV") { patterns.append(venv + "/lib/python3*/site-packages") }
        if let conda = environment("CONDA_PREFIX") { patterns.append(conda + "/lib/python3*/site-packages") }
        if let home = environment("HOME") { patterns.append(home + "/.local/lib/python3*/site-packages") }
        patterns += ["/usr/local/lib/python3*/dist-packages", "/usr/local/lib/python3*/site-packages",
                     "/usr/lib/python3/dist-packages", "/usr/lib/python3*/site-packages",
                     "/opt/conda/lib/python3*/site-packages"]
        return patterns.flatMap(glob)
    }

    /// Paths matching a shell pattern.
    static func glob(_ pattern: String) -> [String] {
        var result = glob_t()
        defer { globfree(&result) }
        guard Glibc.glob(pattern, 0, nil, &result) == 0 else { return [] }
        return (0..<Int(result.gl_pathc)).compactMap { result.gl_pathv[$0].map { String(cString: $0) } }
    }

    /// Newest CUDA version folder first ("/usr/local/cuda-13.0" before "/usr/local/cuda-12.8").
    static func versionOrder(_ a: String, _ b: String) -> Bool {
        func numbers(_ s: String) -> [Int] { s.split { !$0.isNumber }.compactMap { Int($0) } }
        return numbers(b).lexicographicallyPrecedes(numbers(a))
    }

    static func lastError() -> String {
        dlerror().map { String(cString: $0) } ?? "none"
    }

    /// The file a library named `name` was mapped from, read from /proc/self/maps (the soname "libcuda.so.1" is
    /// usually a link to a file such as libcuda.so.580.159.04, so the match is on "libcuda.so").
    private static func loadedPath(_ name: String) -> String? {
        let stem = name.firstRange(of: ".so").map { String(name[..<$0.upperBound]) } ?? name
        guard let handle = fopen("/proc/self/maps", "r") else { return nil }
        defer { fclose(handle) }
        var line = [CChar](repeating: 0, count: 4096)
        while fgets(&line, Int32(line.count), handle) != nil {
            let text = String(cString: line).trimmed
            guard let slash = text.firstIndex(of: "/") else { continue }
            let path = String(text[slash...])
            if path.split(separator: "/").last.map({ $0.hasPrefix(stem) }) == true { return path }
        }
        return nil
    }
}
