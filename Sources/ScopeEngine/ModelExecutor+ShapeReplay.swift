import ScopeCost
import ScopeSupport

extension ModelExecutor {
    /// The memory schedule of `prefill` over `batch` prompts of `length` tokens, in at most two passes: one pass of
    /// each distinct length that `chunking` makes (a full chunk, and the shorter last one where there is one).
    ///
    /// The tensors a pass allocates depend only on its shape (sequences, new tokens), never on the tokens before
    /// it: the cache is allocated whole up front. Passes of one length therefore reach the same high-water mark,
    /// and on `MemoryProbeBackend`, which computes nothing, replaying one of each gives the whole prefill's peak
    /// without the tokens / chunk passes (a million-token search of an SSM would otherwise replay 128 passes per
    /// probe). The cache returned holds `length` tokens, ready for a decode step. Meant for the probe: on a real
    /// backend the tokens are zeros and the states are those of the two passes only.
    public func replayPrefillShapes(batch: Int, length: Int, capacity: Int, chunking: PrefillChunking) throws
        -> InferenceCache {
        guard batch > 0, length > 0 else { throw ScopeError("a prefill needs at least one sequence and one token") }
        try chunking.validate()
        let cache = try makeCache(batch: batch, capacity: max(capacity, length))
        let chunk = chunking.chunkTokens(context: length, batch: batch) ?? length
        var passes = [chunk]
        if length % chunk != 0 && length > chunk { passes.append(length % chunk) }
        for tokens in passes {
            _ = try forward(Array(repeating: Array(repeating: 0, count: tokens), count: batch), cache: cache)
        }
        cache.length = length
        return cache
    }
}
