#if canImport(Glibc)
import Glibc
#endif
import ScopeSupport

/// Compiled kernel modules (cubins) on disk, keyed by a hash of the source and its headers, the GPU architecture
/// and the NVRTC version. Each file carries a header with its length and checksum; a file that fails the check is
/// deleted and compiled again.
public struct KernelCache: Sendable {
    /// The environment variable naming the cache folder.
    public static let directoryVariable = "SSM_SCOPE_CACHE_DIR"

    public let directory: String

    public init(directory: String = KernelCache.defaultDirectory()) {
        self.directory = directory
    }

    /// $SSM_SCOPE_CACHE_DIR, else $XDG_CACHE_HOME/ssm-scope/kernels, else ~/.cache/ssm-scope/kernels.
    public static func defaultDirectory(environment: (String) -> String? = LibrarySearch.environment) -> String {
        if let dir = environment(directoryVariable), !dir.isEmpty { return dir }
        if let xdg = environment("XDG_CACHE_HOME"), !xdg.isEmpty { return xdg + "/ssm-scope/kernels" }
        if let home = environment("HOME"), !home.isEmpty { return home + "/.cache/ssm-scope/kernels" }
        return "/tmp/ssm-scope-kernels"
    }

    /// The cache key of a module: 16 hex digits of a 64-bit FNV-1a hash over everything that changes the cubin.
    public static func key(source: String, headers: [String: String], architecture: String,
                           compilerVersion: String) -> String {
        var hash = FNV1a()
        for part in [source, architecture, compilerVersion] + headers.keys.sorted().flatMap({ [$0, headers[$0]!] }) {
            hash.add(part)
            hash.add("\u{0}")
        }
        return hash.hex
    }

    /// The file of module `name` under `key`.
    public func path(name: String, key: String) -> String { "\(directory)/\(name)-\(key).cubin" }

    /// The cached cubin, or nil when absent or corrupt (a corrupt file is removed).
    public func load(name: String, key: String) -> [UInt8]? {
        let file = path(name: name, key: key)
        guard let bytes = Self.read(file) else { return nil }
        if let payload = Self.unwrap(bytes) { return payload }
        unlink(file)
        return nil
    }

    /// Writes a cubin atomically (a temporary file renamed into place).
    public func store(_ cubin: [UInt8], name: String, key: String) throws {
        try Self.makeDirectories(directory)
        let file = path(name: name, key: key)
        let temporary = file + ".tmp\(getpid())"
        guard let handle = fopen(temporary, "wb") else {
            throw ScopeError("cannot write the kernel cache file \(temporary); set \(Self.directoryVariable) "
                + "to a writable folder")
        }
        let data = Self.wrap(cubin)
        let written = data.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, handle) }
        fclose(handle)
        guard written == data.count, rename(temporary, file) == 0 else {
            unlink(temporary)
            throw ScopeError("cannot write the kernel cache file \(file) (disk full or not writable)")
        }
    }

    /// The cached cubin of `name`/`key`, or `compile()`'s result stored for next time; `hit` says which.
    public func cubin(name: String, key: String, compile: () throws -> [UInt8]) throws -> (bytes: [UInt8], hit: Bool) {
        if let cached = load(name: name, key: key) { return (cached, true) }
        let bytes = try compile()
        try store(bytes, name: name, key: key)
        return (bytes, false)
    }

    /// Removes a cached module (used when the driver rejects a cached cubin).
    public func remove(name: String, key: String) { unlink(path(name: name, key: key)) }

    // MARK: File format: "SSMK0001", payload length (8 bytes LE), FNV-1a of the payload (8 bytes LE), payload.

    private static let magic = Array("SSMK0001".utf8)

    static func wrap(_ payload: [UInt8]) -> [UInt8] {
        var hash = FNV1a()
        hash.add(payload)
        return magic + littleEndian(UInt64(payload.count)) + littleEndian(hash.value) + payload
    }

    static func unwrap(_ bytes: [UInt8]) -> [UInt8]? {
        guard bytes.count >= 24, Array(bytes[0..<8]) == magic else { return nil }
        let length = readLittleEndian(bytes, at: 8), checksum = readLittleEndian(bytes, at: 16)
        guard length == UInt64(bytes.count - 24), length > 0 else { return nil }
        let payload = Array(bytes[24...])
        var hash = FNV1a()
        hash.add(payload)
        return hash.value == checksum ? payload : nil
    }

    private static func littleEndian(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }

    private static func readLittleEndian(_ bytes: [UInt8], at offset: Int) -> UInt64 {
        (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[offset + $1]) << (8 * UInt64($1)) }
    }

    static func read(_ path: String) -> [UInt8]? {
        guard let handle = fopen(path, "rb") else { return nil }
        defer { fclose(handle) }
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = fread(&buffer, 1, buffer.count, handle)
            if n > 0 { result.append(contentsOf: buffer[0..<n]) }
            if n < buffer.count { break }
        }
        return result
    }

    /// mkdir -p.
    static func makeDirectories(_ path: String) throws {
        var current = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            current += "/" + part
            if mkdir(current, 0o755) != 0 && errno != EEXIST {
                throw ScopeError("cannot create the kernel cache folder \(current); set \(directoryVariable) "
                    + "to a writable folder")
            }
        }
    }
}

/// 64-bit FNV-1a.
struct FNV1a {
    private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325

    mutating func add<S: Sequence>(_ bytes: S) where S.Element == UInt8 {
        for b in bytes { value = (value ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
    }

    mutating func add(_ text: String) { add(text.utf8) }

    var hex: String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}
