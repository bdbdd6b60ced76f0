/// What the driver says about one GPU.
public struct DeviceInfo: Sendable {
    public let index: Int
    public let name: String
    public let totalMemory: Int
    public let multiprocessors: Int
    public let computeCapability: (major: Int, minor: Int)
    /// Shared memory a block may use after opting in (bytes).
    public let sharedMemoryPerBlock: Int
    /// Shared memory of one multiprocessor, shared by its resident blocks (bytes; each block also takes 1 KiB).
    public let sharedMemoryPerMultiprocessor: Int
    public let l2CacheBytes: Int

    /// The NVRTC architecture flag value ("sm_90").
    public var architecture: String { "sm_\(computeCapability.major)\(computeCapability.minor)" }

    /// Reads device `index` through `driver` (cuInit must have been called).
    public init(driver: Driver, index: Int) throws {
        var device: Int32 = 0
        try driver.check(driver.cuDeviceGet(&device, Int32(index)), "cuDeviceGet(\(index))")
        var name = [CChar](repeating: 0, count: 256)
        try driver.check(driver.cuDeviceGetName(&name, Int32(name.count), device), "cuDeviceGetName")
        var bytes = 0
        try driver.check(driver.cuDeviceTotalMem(&bytes, device), "cuDeviceTotalMem_v2")
        self.index = index
        self.name = String(cString: name)
        totalMemory = bytes
        multiprocessors = try driver.attribute(DeviceAttribute.multiprocessorCount, of: device)
        computeCapability = (try driver.attribute(DeviceAttribute.computeCapabilityMajor, of: device),
                             try driver.attribute(DeviceAttribute.computeCapabilityMinor, of: device))
        sharedMemoryPerBlock = try driver.attribute(DeviceAttribute.maxSharedMemoryPerBlockOptin, of: device)
        sharedMemoryPerMultiprocessor = try driver.attribute(DeviceAttribute.maxSharedMemoryPerMultiprocessor,
                                                             of: device)
        l2CacheBytes = try driver.attribute(DeviceAttribute.l2CacheSize, of: device)
    }
}
