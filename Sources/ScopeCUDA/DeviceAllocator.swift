import ScopeSupport

/// Where a `DeviceAllocator`'s blocks come from: the driver (cuMemAlloc / cuMemFree) on a GPU.
protocol DeviceMemory {
    /// A new block of exactly `bytes`; nil when the device is out of memory.
    func allocate(_ bytes: Int) throws -> CUdeviceptr?
    func free(_ pointer: CUdeviceptr) throws
}

extension Driver: DeviceMemory {
    func allocate(_ bytes: Int) throws -> CUdeviceptr? {
        var pointer: CUdeviceptr = 0
        let status = cuMemAlloc(&pointer, bytes)
        if status == 2 { return nil }  // CUDA_ERROR_OUT_OF_MEMORY
        try check(status, "cuMemAlloc_v2(\(bytes))")
        return pointer
    }

    func free(_ pointer: CUdeviceptr) throws {
        try check(cuMemFree(pointer), "cuMemFree_v2")
    }
}

/// A caching pool over device memory: freed blocks are kept by size class and handed out again, so the steady
/// state of a forward pass allocates nothing from the driver. Sizes round up to 512 bytes (up to 1 MiB) or 2 MiB.
/// When the device runs out, cached blocks are returned to it and the allocation is tried once more. Blocks are
/// reused in stream order (one stream), so a block freed while kernels still read it is only overwritten after them.
final class DeviceAllocator {
    private let memory: DeviceMemory
    private var cached: [Int: [CUdeviceptr]] = [:]
    /// While a graph is recorded: the blocks freed since recording began, by size class, with their requested
    /// bytes. They are reused only within the recording, since the graph writes them again at every replay.
    private var recorded: [Int: [(pointer: CUdeviceptr, bytes: Int)]]?

    init(memory: DeviceMemory) {
        self.memory = memory
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
        if let pointer = try memory.allocate(size) { return pointer }
        try releaseCache()
        return try memory.allocate(size)
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

    /// Gives every cached block back to the device.
    func releaseCache() throws {
        for pointer in cached.values.joined() { try memory.free(pointer) }
        cached = [:]
    }

    /// Blocks held in the pool (for tests and diagnostics).
    var cachedBlocks: Int { cached.values.reduce(0) { $0 + $1.count } }
}
