import ScopeSupport

/// NVML (libnvidia-ml.so.1), resolved with dlsym: the driver's version string for `doctor`.
public final class NVML: @unchecked Sendable {
    public let library: LoadedLibrary
    private let nvmlInit: @convention(c) () -> Int32
    private let nvmlShutdown: @convention(c) () -> Int32
    private let nvmlSystemGetDriverVersion: @convention(c) (UnsafeMutablePointer<CChar>, UInt32) -> Int32
    private let nvmlErrorString: @convention(c) (Int32) -> UnsafePointer<CChar>?

    public init(locations: [LibrarySearch.Location] = LibrarySearch.locations()) throws {
        library = try LibrarySearch.open(["libnvidia-ml.so.1", "libnvidia-ml.so"], what: "NVML (libnvidia-ml.so.1)",
                                         fix: "install the NVIDIA driver's NVML library", systemFirst: true,
                                         locations: locations)
        nvmlInit = try library.function("nvmlInit_v2")
        nvmlShutdown = try library.function("nvmlShutdown")
        nvmlSystemGetDriverVersion = try library.function("nvmlSystemGetDriverVersion")
        nvmlErrorString = try library.function("nvmlErrorString")
    }

    /// The kernel driver's version ("580.159.04").
    public func driverVersion() throws -> String {
        try check(nvmlInit(), "nvmlInit_v2")
        defer { _ = nvmlShutdown() }
        var text = [CChar](repeating: 0, count: 96)
        try check(nvmlSystemGetDriverVersion(&text, UInt32(text.count)), "nvmlSystemGetDriverVersion")
        return String(cString: text)
    }

    private func check(_ status: Int32, _ call: String) throws {
        guard status != 0 else { return }
        let reason = nvmlErrorString(status).map { String(cString: $0) } ?? "nvmlReturn \(status)"
        throw ScopeError("\(call) failed: \(reason)")
    }
}
