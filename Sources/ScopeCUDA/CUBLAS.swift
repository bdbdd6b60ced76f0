import ScopeSupport

/// cuBLAS and cuBLASLt (libcublas.so.13 / .12), resolved with dlsym. GEMMs go through `cublasGemmEx` with fp32
/// compute; cuBLASLt is opened first so that cuBLAS finds the same copy, and reported by `doctor`.
public final class CUBLAS: @unchecked Sendable {
    public let library: LoadedLibrary
    public let lt: LoadedLibrary

    typealias Handle = OpaquePointer?
    let cublasCreate: @convention(c) (UnsafeMutablePointer<Handle>) -> Int32
    let cublasDestroy: @convention(c) (Handle) -> Int32
    let cublasSetStream: @convention(c) (Handle, OpaquePointer?) -> Int32
    let cublasGemmEx: @convention(c) (Handle, Int32, Int32, Int32, Int32, Int32, UnsafeRawPointer,
                                      UnsafeRawPointer?, Int32, Int32, UnsafeRawPointer?, Int32, Int32,
                                      UnsafeRawPointer, UnsafeMutableRawPointer?, Int32, Int32, Int32, Int32) -> Int32
    private let cublasGetProperty: @convention(c) (Int32, UnsafeMutablePointer<Int32>) -> Int32
    private let cublasGetStatusName: (@convention(c) (Int32) -> UnsafePointer<CChar>?)?
    private let cublasLtGetVersion: @convention(c) () -> Int

    /// cudaDataType values.
    enum DataType {
        static let fp32: Int32 = 0
        static let fp16: Int32 = 2
        static let bf16: Int32 = 14
    }
    static let computeFP32: Int32 = 68  // CUBLAS_COMPUTE_32F
    static let defaultAlgorithm: Int32 = -1  // CUBLAS_GEMM_DEFAULT

    public init(locations: [LibrarySearch.Location] = LibrarySearch.locations()) throws {
        let fix = "install the CUDA toolkit's cuBLAS, or `pip install nvidia-cublas` and point "
            + "\(LibrarySearch.overrideVariable) at its nvidia/cu13/lib"
        lt = try LibrarySearch.open(["libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"],
                                    what: "cuBLASLt (libcublasLt.so.13 or .12)", fix: fix, locations: locations)
        library = try LibrarySearch.open(["libcublas.so.13", "libcublas.so.12", "libcublas.so"],
                                         what: "cuBLAS (libcublas.so.13 or .12)", fix: fix, locations: locations)
        cublasCreate = try library.function("cublasCreate_v2")
        cublasDestroy = try library.function("cublasDestroy_v2")
        cublasSetStream = try library.function("cublasSetStream_v2")
        cublasGemmEx = try library.function("cublasGemmEx")
        cublasGetProperty = try library.function("cublasGetProperty")
        cublasGetStatusName = library.optionalFunction("cublasGetStatusName")
        cublasLtGetVersion = try lt.function("cublasLtGetVersion")
    }

    /// cuBLAS's version as "13.0.2".
    public func version() throws -> String {
        var parts: [Int32] = []
        for property in Int32(0)...2 {
            var value: Int32 = 0
            try check(cublasGetProperty(property, &value), "cublasGetProperty")
            parts.append(value)
        }
        return parts.map(String.init).joined(separator: ".")
    }

    /// cuBLASLt's version number (major * 10000 + minor * 100 + patch) as "13.0.2".
    public var ltVersion: String {
        let v = cublasLtGetVersion()
        return "\(v / 10000).\(v / 100 % 100).\(v % 100)"
    }

    /// Throws a one-line error naming `call` and the cuBLAS status when `status` is not CUBLAS_STATUS_SUCCESS.
    func check(_ status: Int32, _ call: @autoclosure () -> String) throws {
        guard status != 0 else { return }
        throw ScopeError("\(call()) failed: \(statusName(status))")
    }

    func statusName(_ status: Int32) -> String {
        if let name = cublasGetStatusName?(status) { return String(cString: name) }
        let names: [Int32: String] = [
            1: "CUBLAS_STATUS_NOT_INITIALIZED", 3: "CUBLAS_STATUS_ALLOC_FAILED", 7: "CUBLAS_STATUS_INVALID_VALUE",
            8: "CUBLAS_STATUS_ARCH_MISMATCH", 11: "CUBLAS_STATUS_MAPPING_ERROR", 13: "CUBLAS_STATUS_EXECUTION_FAILED",
            14: "CUBLAS_STATUS_INTERNAL_ERROR", 15: "CUBLAS_STATUS_NOT_SUPPORTED", 16: "CUBLAS_STATUS_LICENSE_ERROR",
        ]
        return names[status] ?? "cublasStatus \(status)"
    }
}
