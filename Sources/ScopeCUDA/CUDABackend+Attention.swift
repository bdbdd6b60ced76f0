import ScopeEngine
import ScopeSupport

private enum K {
    /// Split-KV kernels by head size rounded up to one of these (attention.cu's split_attention).
    static let splitHeadDims = [16, 32, 64, 128, 256]
    static func split(_ paddedHeadDim: Int) -> Kernel {
        Kernel(module: "attention", name: "attn_split_d\(paddedHeadDim)")
    }
    /// Its dynamic shared memory: 4 warps x 3 stages x (K, V) x 16 keys x (D + 8) activations.
    static func splitShared(_ paddedHeadDim: Int) -> Int { 4 * 3 * 2 * 16 * (paddedHeadDim + 8) * 2 }
    /// Resident split blocks per multiprocessor the grid is sized for (their register bound in attention.cu).
    static let splitBlocksPerMultiprocessor = 4
    /// Fewest keys per split: two 16-key tiles for each of a block's 4 warps.
    static let splitMinimumKeys = 128
    /// The split merge for the same padded head size.
    static func combine(_ paddedHeadDim: Int) -> Kernel {
        Kernel(module: "attention", name: "attn_combine_d\(paddedHeadDim)")
    }
    static let append = Kernel(module: "attention", name: "append_kv")
    static func prefill(_ headDim: Int) -> Kernel { Kernel(module: "attention_prefill", name: "attn_prefill_d\(headDim)") }
    /// Head sizes the tensor-core prefill kernel is instantiated for.
    static let prefillHeadDims: Set<Int> = [16, 32, 64, 128]
    /// Queries per block of the prefill kernel: 4 warps x 32 rows, or x 16 at head size 128 (attention_prefill.cu).
    static func prefillQueries(_ headDim: Int) -> Int { headDim == 128 ? 64 : 128 }
    /// Its dynamic shared memory: 3 stages of a key and a value tile, 64 rows of headDim + 8 bf16 each.
    static func prefillShared(_ headDim: Int) -> Int { 3 * 2 * 64 * (headDim + 8) * 2 }
    /// The warpgroup-MMA prefill kernel (sm_90, head size 64): 128 queries per block of two warpgroups; 1 KiB of
    /// alignment slack and four stages of 64-key K and V tiles in shared memory (attention_wgmma.cu).
    static let prefillWarpgroup = Kernel(module: "attention_wgmma", name: "attn_prefill_wgmma_d64")
    static let prefillWarpgroupQueries = 128
    static let prefillWarpgroupShared = 1024 + 4 * 2 * 64 * 64 * 2
}

/// Attention: the tensor-core prefill kernel where it applies (16+ new tokens, head size 16/32/64/128, 16-byte
/// aligned rows; at head size 64 on sm_90 its warpgroup-MMA version), otherwise split-KV (decode steps, other head
/// sizes); appending to the ring-buffer cache.
extension CUDABackend {
    /// Whether prefill attention at head size 64 runs on warpgroup MMAs (attention_wgmma.cu): on sm_90 (Hopper),
    /// unless `allowsWarpgroupAttention` is off or the environment sets `SSM_SCOPE_CUDA_WGMMA=0`.
    public var usesWarpgroupAttention: Bool {
        device.computeCapability == (9, 0) && Self.warpgroupAttentionEnabled && allowsWarpgroupAttention
    }

    static let warpgroupAttentionEnabled = EnvironmentSwitch.isOn("SSM_SCOPE_CUDA_WGMMA")

    public func attention(q: Tensor, kNew: Tensor, vNew: Tensor, cache: KVCacheLayer?, batch: Int, newTokens: Int,
                          past: Int, heads: Int, kvHeads: Int, headDim: Int, window: Int?, scale: Float,
                          out: Tensor) throws {
        try requireActivations(q, kNew, vNew, out, cache?.keys, cache?.values, in: "attention")
        guard batch > 0, newTokens > 0, heads > 0, headDim > 0 else { return }
        try check(kvHeads > 0 && heads % kvHeads == 0, "heads \(heads) must be a multiple of kvHeads \(kvHeads)")
        try check(q.count == batch * newTokens * heads * headDim && out.count == q.count
                  && kNew.count == batch * newTokens * kvHeads * headDim && vNew.count == kNew.count,
                  "attention shapes q \(q.shape), k \(kNew.shape), out \(out.shape)")
        try check(window.map { $0 > 0 } ?? true, "window must be positive")
        let capacity = cache?.capacity ?? 0
        let earliestNeeded = min(past, window.map { max(0, past - $0 + 1) } ?? 0)
        try check(earliestNeeded >= past - capacity, "the cache no longer holds keys the queries attend to")
        try check(earliestNeeded == past || cache != nil, "cached keys and values are required (past \(past))")
        let pointers: [KernelArgument] = [.tensor(q), .tensor(kNew), .tensor(vNew), .tensor(cache?.keys),
                                          .tensor(cache?.values)]
        let aligned = [q, kNew, vNew, out].allSatisfy { $0.address % 16 == 0 }
            && (cache.map { $0.keys.address % 16 == 0 && $0.values.address % 16 == 0 } ?? true)
        if newTokens >= 16, headDim == 64, aligned, usesWarpgroupAttention {
            let tiles = (newTokens + K.prefillWarpgroupQueries - 1) / K.prefillWarpgroupQueries
            try check(batch <= 65535 && tiles <= 65535, "attention grid too large")
            try launch(K.prefillWarpgroup, grid: (heads, tiles, batch), block: 256, shared: K.prefillWarpgroupShared,
                       pointers + [
                .tensor(out), .int(capacity), .int(newTokens), .int(past), .int(heads), .int(kvHeads),
                .int(window ?? 0), .float(scale)])
            return
        }
        if newTokens >= 16, K.prefillHeadDims.contains(headDim), aligned {
            let queries = K.prefillQueries(headDim), tiles = (newTokens + queries - 1) / queries
            try check(batch <= 65535 && tiles <= 65535, "attention grid too large")
            // Heads along x: the longest query tiles of every head are launched first (the kernel reverses y).
            try launch(K.prefill(headDim), grid: (heads, tiles, batch), block: 128,
                       shared: K.prefillShared(headDim), pointers + [
                .tensor(out), .int(capacity), .int(newTokens), .int(past), .int(heads), .int(kvHeads),
                .int(window ?? 0), .float(scale)])
            return
        }
        let rows = batch * newTokens
        try check(rows <= 65535 && headDim <= 256,
                  "split-KV attention takes at most 65535 query rows and head size 256 (got \(rows), \(headDim))")
        // A recorded step sizes its fixed grid for a full cache; the kernel reads the cached length at each replay.
        let pastDevice = recording?.past(past) ?? 0
        let maxKeys = min(pastDevice != 0 ? max(capacity, past + newTokens) : past + newTokens, window ?? Int.max)
        // One block per KV head serves up to 8 of the query heads that share it (a divisor of the group).
        let sharing = heads / kvHeads, group = (1...min(8, sharing)).last { sharing % $0 == 0 } ?? 1
        // Splits for one full wave of resident blocks (as many as shared memory allows, at most 4 per
        // multiprocessor), with at least splitMinimumKeys keys each.
        let padded = K.splitHeadDims.first { $0 >= headDim }!, shared = K.splitShared(padded)
        let resident = max(1, min(K.splitBlocksPerMultiprocessor,
                                  device.sharedMemoryPerMultiprocessor / (shared + 1024)))
        let blocksPerSplit = rows * heads / group
        let wanted = (resident * device.multiprocessors + blocksPerSplit - 1) / blocksPerSplit
        let splits = max(1, min(wanted, (maxKeys + K.splitMinimumKeys - 1) / K.splitMinimumKeys))
        let partial = try makeOutputTensor([rows * heads * splits * (headDim + 2)], .fp32)  // every split writes its part
        try launch(K.split(padded), grid: (splits, heads / group, rows), block: 128, shared: shared, pointers + [
            .tensor(partial), .int(capacity), .int(newTokens), .int(past), .int(heads), .int(kvHeads),
            .int(headDim), .int(window ?? 0), .float(scale), .pointer(pastDevice), .int(group)])
        try launch(K.combine(padded), grid: (heads, rows, 1), block: 256, [
            .tensor(partial), .tensor(out), .int(heads), .int(headDim), .int(splits)])
    }

    public func appendKV(kNew: Tensor, vNew: Tensor, cache: KVCacheLayer, batch: Int, newTokens: Int,
                         past: Int) throws {
        try requireActivations(kNew, vNew, cache.keys, cache.values, in: "appendKV")
        let width = kNew.columns, capacity = cache.capacity
        try check(cache.keys.columns == width && kNew.rows == batch * newTokens && capacity > 0,
                  "appendKV \(kNew.shape) into \(cache.keys.shape)")
        let first = max(0, newTokens - capacity)
        let total = batch * (newTokens - first) * width
        try launchElementwise(K.append, count: total, [
            .tensor(kNew), .tensor(vNew), .tensor(cache.keys), .tensor(cache.values), .int(capacity),
            .int(newTokens), .int(past), .int(first), .int(width), .int64(total), .pointer(recording?.past(past) ?? 0)])
    }
}
