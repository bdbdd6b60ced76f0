import ScopeSupport

/// A caching pool over cuMemAlloc: freed blocks are kept by size class and handed out again, so the steady state
/// of a forward pass allocates nothing from the driver. Sizes round up to 512 bytes (up to 1 MiB) or 2 MiB. When
/// the driver runs out, cached blocks are returned to it and the allocation is tried once more. Blocks are reused
/// in stream order (one stream), so a block freed while kernels still read it is only overwritten after them.
final class DeviceAllocator {
    private let driver: Driver
    private var cached: [Int: [CUdeviceptr]] = [:]
    /// While a graph is recorded: the blocks freed since recording began, by size class, with their requested
    /// bytes. They are reused only within the recording, since the graph writes them again at every replay.
    private var recorded: [Int: [(pointer: CUdeviceptr, bytes: Int)]]?

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
        if let block = recorded?[size]?.popLast() { return block.pointer }
        if let pointer = cached[size]?.popLast() { return pointer }
        var pointer: CUdeviceptr = 0
        var status = driver.cuMemAlloc(&pointer, size)
        if status == 2 {  // CUDA_ERROR_OUT_OF_MEMORY
            try releaseCache()
            status = driver.cuMemAlloc(&pointer, size)
            if status == 2 { return nil }
        }
        try driver.check(status, "cuMemAlloc_v2(\(size))")
        return pointer
    }

    /// Returns a block to the pool.
    func free(_ pointer: CUdeviceptr, bytes: Int) {
        let size = Self.sizeClass(bytes)
        if recorded != nil {
            recorded![size, default: []].append((pointer, bytes))
        } else {
            cached[size, default: []].append(pointer)
        }
    }

    /// Starts keeping the blocks freed from now on apart for a graph being recorded.
    func beginRecording() { recorded = [:] }

    /// Ends the recording and returns the blocks freed during it (the graph's workspace, with requested bytes).
    func endRecording() -> [(pointer: CUdeviceptr, bytes: Int)] {
        defer { recorded = nil }
        return recorded.map { Array($0.values.joined()) } ?? []
    }

    /// Gives every cached block back to the driver.
    func releaseCache() throws {
        for pointer in cached.values.joined() {
            try driver.check(driver.cuMemFree(pointer), "cuMemFree_v2")
        }
        cached = [:]
    }
}
