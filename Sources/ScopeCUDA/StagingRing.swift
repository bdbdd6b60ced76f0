import ScopeSupport

/// Small host arrays (token ids, row indices, frequencies) copied to the device asynchronously through pinned
/// memory: a host ring and a device ring of the same size, written in order; when the ring wraps, the stream is
/// synchronised first so that no copy or kernel still uses the part being overwritten.
final class StagingRing {
    private let driver: Driver
    private let stream: OpaquePointer?
    private var host: UnsafeMutableRawPointer?
    private var device: CUdeviceptr = 0
    private var capacity = 0
    private var offset = 0

    /// Whether the ring has a fixed size and must never wrap (a recorded graph copies from every part of it).
    private let fixed: Bool

    init(driver: Driver, stream: OpaquePointer?) {
        self.driver = driver
        self.stream = stream
        fixed = false
    }

    /// A ring of `capacity` bytes allocated now that never wraps or grows: uploads past its end throw. Used while
    /// a graph is recorded, since its copies read the host ring again at every replay.
    init(driver: Driver, stream: OpaquePointer?, fixedCapacity capacity: Int) throws {
        self.driver = driver
        self.stream = stream
        fixed = true
        try grow(to: capacity)
    }

    /// Copies `bytes` to the device and returns the device address (valid for work queued after this call).
    func upload(_ bytes: UnsafeRawBufferPointer) throws -> CUdeviceptr {
        let size = (bytes.count + 255) / 256 * 256
        if fixed, offset + size > capacity {
            throw ScopeError("cuda backend: a recorded step uploads more than \(capacity) bytes of host arrays")
        }
        if size > capacity { try grow(to: max(size, 4 << 20)) }
        if offset + size > capacity {
            try driver.check(driver.cuStreamSynchronize(stream), "cuStreamSynchronize")
            offset = 0
        }
        if let base = bytes.baseAddress { (host! + offset).copyMemory(from: base, byteCount: bytes.count) }
        let target = device + CUdeviceptr(offset)
        try driver.check(driver.cuMemcpyHtoDAsync(target, host! + offset, bytes.count, stream), "cuMemcpyHtoDAsync_v2")
        offset += size
        return target
    }

    /// Uploads an array.
    func upload<T>(_ values: [T]) throws -> CUdeviceptr {
        try values.withUnsafeBytes { try upload($0) }
    }

    private func grow(to size: Int) throws {
        try release()
        try driver.check(driver.cuMemAllocHost(&host, size), "cuMemAllocHost_v2(\(size))")
        try driver.check(driver.cuMemAlloc(&device, size), "cuMemAlloc_v2(\(size))")
        capacity = size
        offset = 0
    }

    /// Frees both rings (the owner calls this before destroying the stream).
    func release() throws {
        guard capacity > 0 else { return }
        try driver.check(driver.cuStreamSynchronize(stream), "cuStreamSynchronize")
        try driver.check(driver.cuMemFreeHost(host), "cuMemFreeHost")
        try driver.check(driver.cuMemFree(device), "cuMemFree_v2")
        capacity = 0
    }
}
