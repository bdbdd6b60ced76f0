import ScopeSupport

/// Device pointers of the driver API.
public typealias CUdeviceptr = UInt64

/// The CUDA driver API (libcuda.so.1), resolved with dlsym. Every call goes through `check`, which turns a
/// failure into a one-line `ScopeError` naming the call, the error name and its description.
public final class Driver: @unchecked Sendable {
    public typealias Handle = OpaquePointer?

    public let library: LoadedLibrary

    let cuInit: @convention(c) (UInt32) -> Int32
    let cuDriverGetVersion: @convention(c) (UnsafeMutablePointer<Int32>) -> Int32
    let cuDeviceGetCount: @convention(c) (UnsafeMutablePointer<Int32>) -> Int32
    let cuDeviceGet: @convention(c) (UnsafeMutablePointer<Int32>, Int32) -> Int32
    let cuDeviceGetName: @convention(c) (UnsafeMutablePointer<CChar>, Int32, Int32) -> Int32
    let cuDeviceTotalMem: @convention(c) (UnsafeMutablePointer<Int>, Int32) -> Int32
    let cuDeviceGetAttribute: @convention(c) (UnsafeMutablePointer<Int32>, Int32, Int32) -> Int32
    let cuDevicePrimaryCtxRetain: @convention(c) (UnsafeMutablePointer<Handle>, Int32) -> Int32
    let cuCtxSetCurrent: @convention(c) (Handle) -> Int32
    let cuMemGetInfo: @convention(c) (UnsafeMutablePointer<Int>, UnsafeMutablePointer<Int>) -> Int32
    let cuMemAlloc: @convention(c) (UnsafeMutablePointer<CUdeviceptr>, Int) -> Int32
    let cuMemFree: @convention(c) (CUdeviceptr) -> Int32
    let cuMemAllocHost: @convention(c) (UnsafeMutablePointer<UnsafeMutableRawPointer?>, Int) -> Int32
    let cuMemFreeHost: @convention(c) (UnsafeMutableRawPointer?) -> Int32
    let cuMemcpyHtoD: @convention(c) (CUdeviceptr, UnsafeRawPointer?, Int) -> Int32
    let cuMemcpyDtoH: @convention(c) (UnsafeMutableRawPointer?, CUdeviceptr, Int) -> Int32
    let cuMemcpyHtoDAsync: @convention(c) (CUdeviceptr, UnsafeRawPointer?, Int, Handle) -> Int32
    let cuMemcpyDtoDAsync: @convention(c) (CUdeviceptr, CUdeviceptr, Int, Handle) -> Int32
    let cuMemsetD8Async: @convention(c) (CUdeviceptr, UInt8, Int, Handle) -> Int32
    let cuStreamCreate: @convention(c) (UnsafeMutablePointer<Handle>, UInt32) -> Int32
    let cuStreamSynchronize: @convention(c) (Handle) -> Int32
    let cuStreamDestroy: @convention(c) (Handle) -> Int32
    let cuEventCreate: @convention(c) (UnsafeMutablePointer<Handle>, UInt32) -> Int32
    let cuEventRecord: @convention(c) (Handle, Handle) -> Int32
    let cuEventSynchronize: @convention(c) (Handle) -> Int32
    let cuEventElapsedTime: @convention(c) (UnsafeMutablePointer<Float>, Handle, Handle) -> Int32
    let cuEventDestroy: @convention(c) (Handle) -> Int32
    let cuModuleLoadData: @convention(c) (UnsafeMutablePointer<Handle>, UnsafeRawPointer) -> Int32
    let cuModuleGetFunction: @convention(c) (UnsafeMutablePointer<Handle>, Handle, UnsafePointer<CChar>) -> Int32
    let cuFuncSetAttribute: @convention(c) (Handle, Int32, Int32) -> Int32
    let cuLaunchKernel: @convention(c) (Handle, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, Handle,
                                        UnsafeMutablePointer<UnsafeMutableRawPointer?>?,
                                        UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> Int32
    /// cuLaunchKernelEx(config, function, params, extra), absent from drivers before CUDA 12.
    let cuLaunchKernelEx: (@convention(c) (UnsafeRawPointer, Handle, UnsafeMutablePointer<UnsafeMutableRawPointer?>?,
                                           UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> Int32)?
    let cuStreamBeginCapture: @convention(c) (Handle, Int32) -> Int32
    let cuStreamEndCapture: @convention(c) (Handle, UnsafeMutablePointer<Handle>) -> Int32
    let cuGraphInstantiate: @convention(c) (UnsafeMutablePointer<Handle>, Handle, UInt64) -> Int32
    let cuGraphLaunch: @convention(c) (Handle, Handle) -> Int32
    let cuGraphExecDestroy: @convention(c) (Handle) -> Int32
    let cuGraphDestroy: @convention(c) (Handle) -> Int32
    private let cuGetErrorString: @convention(c) (Int32, UnsafeMutablePointer<UnsafePointer<CChar>?>) -> Int32
    private let cuGetErrorName: @convention(c) (Int32, UnsafeMutablePointer<UnsafePointer<CChar>?>) -> Int32

    /// Opens libcuda.so.1 (system path first) and resolves every symbol the backend uses.
    public init(locations: [LibrarySearch.Location] = LibrarySearch.locations()) throws {
        library = try LibrarySearch.open(
            ["libcuda.so.1", "libcuda.so"], what: "the CUDA driver (libcuda.so.1)",
            fix: "install the NVIDIA driver, or run on a machine with an NVIDIA GPU", systemFirst: true,
            locations: locations)
        let l = library
        cuInit = try l.function("cuInit")
        cuDriverGetVersion = try l.function("cuDriverGetVersion")
        cuDeviceGetCount = try l.function("cuDeviceGetCount")
        cuDeviceGet = try l.function("cuDeviceGet")
        cuDeviceGetName = try l.function("cuDeviceGetName")
        cuDeviceTotalMem = try l.function("cuDeviceTotalMem_v2")
        cuDeviceGetAttribute = try l.function("cuDeviceGetAttribute")
        cuDevicePrimaryCtxRetain = try l.function("cuDevicePrimaryCtxRetain")
        cuCtxSetCurrent = try l.function("cuCtxSetCurrent")
        cuMemGetInfo = try l.function("cuMemGetInfo_v2")
        cuMemAlloc = try l.function("cuMemAlloc_v2")
        cuMemFree = try l.function("cuMemFree_v2")
        cuMemAllocHost = try l.function("cuMemAllocHost_v2")
        cuMemFreeHost = try l.function("cuMemFreeHost")
        cuMemcpyHtoD = try l.function("cuMemcpyHtoD_v2")
        cuMemcpyDtoH = try l.function("cuMemcpyDtoH_v2")
        cuMemcpyHtoDAsync = try l.function("cuMemcpyHtoDAsync_v2")
        cuMemcpyDtoDAsync = try l.function("cuMemcpyDtoDAsync_v2")
        cuMemsetD8Async = try l.function("cuMemsetD8Async")
        cuStreamCreate = try l.function("cuStreamCreate")
        cuStreamSynchronize = try l.function("cuStreamSynchronize")
        cuStreamDestroy = try l.function("cuStreamDestroy_v2")
        cuEventCreate = try l.function("cuEventCreate")
        cuEventRecord = try l.function("cuEventRecord")
        cuEventSynchronize = try l.function("cuEventSynchronize")
        cuEventElapsedTime = try l.optionalFunction("cuEventElapsedTime_v2") ?? l.function("cuEventElapsedTime")
        cuEventDestroy = try l.function("cuEventDestroy_v2")
        cuModuleLoadData = try l.function("cuModuleLoadData")
        cuModuleGetFunction = try l.function("cuModuleGetFunction")
        cuFuncSetAttribute = try l.function("cuFuncSetAttribute")
        cuLaunchKernel = try l.function("cuLaunchKernel")
        cuLaunchKernelEx = l.optionalFunction("cuLaunchKernelEx")
        cuStreamBeginCapture = try l.function("cuStreamBeginCapture_v2")
        cuStreamEndCapture = try l.function("cuStreamEndCapture")
        cuGraphInstantiate = try l.function("cuGraphInstantiateWithFlags")
        cuGraphLaunch = try l.function("cuGraphLaunch")
        cuGraphExecDestroy = try l.function("cuGraphExecDestroy")
        cuGraphDestroy = try l.function("cuGraphDestroy")
        cuGetErrorString = try l.function("cuGetErrorString")
        cuGetErrorName = try l.function("cuGetErrorName")
    }

    /// Throws a one-line error naming `call` when `status` is not CUDA_SUCCESS.
    public func check(_ status: Int32, _ call: @autoclosure () -> String) throws {
        guard status != 0 else { return }
        throw ScopeError("\(call()) failed: \(errorName(status)) (\(errorString(status)))")
    }

    /// The driver's name of a status code ("CUDA_ERROR_OUT_OF_MEMORY").
    public func errorName(_ status: Int32) -> String {
        var text: UnsafePointer<CChar>?
        guard cuGetErrorName(status, &text) == 0, let text else { return "CUresult \(status)" }
        return String(cString: text)
    }

    /// The driver's description of a status code.
    public func errorString(_ status: Int32) -> String {
        var text: UnsafePointer<CChar>?
        guard cuGetErrorString(status, &text) == 0, let text else { return "unknown error" }
        return String(cString: text)
    }

    /// The driver's CUDA version as "13.0".
    public func version() throws -> String {
        var v: Int32 = 0
        try check(cuDriverGetVersion(&v), "cuDriverGetVersion")
        return "\(v / 1000).\(v % 1000 / 10)"
    }

    /// Initialises the driver and counts the GPUs.
    public func deviceCount() throws -> Int {
        try check(cuInit(0), "cuInit")
        var count: Int32 = 0
        try check(cuDeviceGetCount(&count), "cuDeviceGetCount")
        return Int(count)
    }

    /// An integer attribute of a device (CU_DEVICE_ATTRIBUTE_*).
    func attribute(_ attribute: Int32, of device: Int32) throws -> Int {
        var value: Int32 = 0
        try check(cuDeviceGetAttribute(&value, attribute, device), "cuDeviceGetAttribute(\(attribute))")
        return Int(value)
    }
}

/// The CU_DEVICE_ATTRIBUTE_* values used here.
enum DeviceAttribute {
    static let multiprocessorCount: Int32 = 16
    static let computeCapabilityMajor: Int32 = 75
    static let computeCapabilityMinor: Int32 = 76
    static let maxSharedMemoryPerBlockOptin: Int32 = 97
    static let maxSharedMemoryPerMultiprocessor: Int32 = 81
    static let l2CacheSize: Int32 = 38
}
