import ScopeSupport

/// A caching pool over cuMemAlloc: freed blocks are kept by size class and handed out again, so the steady state
/// of a forward pass allocates nothing from the driver. Sizes round up to 512 bytes (up to 1 MiB) or 2 MiB. When
/// the driver runs out, cached blocks are returned to it and the allocation is tried once more. Blocks are reused
/// in stream order (one stream), so a block freed while kernels still read it is only overwritten after them.
final class DeviceAllocator {
    private let driver: Driver
    private var cached: [Int: [CUdeviceptr]] = [:]
    /// Bytes held from the driver (in use or cached).
    private(set) var reservedBytes = 0
    private(set) var cachedBytes = 0

    init(driver: Driver) {
        self.driver = driver
    }

    static func sizeClass(_ bytes: Int) -> Int {
        let unit = bytes <= 1 << 20 ? 512 : 2 << 20
        return (max(bytes, 1) + unit - 1) / unit * unit
    }

    /// A block of at least `bytes`; nil when the device is out of memory even after releasing the cache.
    func allocate(_ bytes: Int) throws -> CUdeviceptr? {
        let size = Self.sizeClass(bytes)
        if let pointer = cached[size]?.popLast() {
            cachedBytes -= size
            return pointer
        }
        var pointer: CUdeviceptr = 0
        var status = driver.cuMemAlloc(&pointer, size)
        if status == 2 {  // CUDA_ERROR_OUT_OF_MEMORY
            try releaseCache()
            status = driver.cuMemAlloc(&pointer, size)
            if status == 2 { return nil }
        }
        try driver.check(status, "cuMemAlloc_v2(\(size))")
        reservedBytes += size
        return pointer
    }

    /// Returns a block to the pool.
    func free(_ pointer: CUdeviceptr, bytes: Int) {
        let size = Self.sizeClass(bytes)
        cached[size, default: []].append(pointer)
        cachedBytes += size
    }

    /// Gives every cached block back to the driver.
    func releaseCache() throws {
        for (size, pointers) in cached {
            for pointer in pointers {
                try driver.check(driver.cuMemFree(pointer), "cuMemFree_v2")
                reservedBytes -= size
            }
        }
        cached = [:]
        cachedBytes = 0
    }
}

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

    init(driver: Driver, stream: OpaquePointer?) {
        self.driver = driver
        self.stream = stream
    }

    /// Copies `bytes` to the device and returns the device address (valid for work queued after this call).
    func upload(_ bytes: UnsafeRawBufferPointer) throws -> CUdeviceptr {
        let size = (bytes.count + 255) / 256 * 256
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
