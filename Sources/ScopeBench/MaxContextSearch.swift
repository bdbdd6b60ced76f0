import ScopeCost
import ScopeEngine
import ScopeModels
import ScopeSupport

/// The longest context that fits, found by doubling and then bisecting to the token.
public struct MaxContextResult: Sendable, Codable, Hashable {
    public var model: String
    public var backend: String
    public var dtype: String
    public var batch: Int
    public var memoryLimitBytes: Int
    /// Longest prompt whose prefill (and one decode step) fits; 0 when not even the weights fit.
    public var tokens: Int
    /// True when the search stopped at its upper limit without finding a context that fails.
    public var reachedSearchLimit: Bool
    /// Engine high-water mark at `tokens`.
    public var peakBytesAtLimit: Int
    /// "probe" (allocation schedule only) or "measured" (the model was run).
    public var method: String
    /// How the prefill of `tokens` tokens ran, as a point's notes say it ("prefill chunked by 8192 tokens
    /// (automatic: workspace bound)"); nil in results stored before it was recorded.
    public var prefill: String?
    /// Each context tried and whether it fit, in order.
    public var probes: [Probe]

    public init(model: String, backend: String, dtype: String, batch: Int, memoryLimitBytes: Int, tokens: Int, reachedSearchLimit: Bool, peakBytesAtLimit: Int, method: String, prefill: String? = nil, probes: [Probe]) {
        self.model = model
        self.backend = backend
        self.dtype = dtype
        self.batch = batch
        self.memoryLimitBytes = memoryLimitBytes
        self.tokens = tokens
        self.reachedSearchLimit = reachedSearchLimit
        self.peakBytesAtLimit = peakBytesAtLimit
        self.method = method
        self.prefill = prefill
        self.probes = probes
    }

    public struct Probe: Sendable, Codable, Hashable {
        public var tokens: Int
        public var fits: Bool
        public var peakBytes: Int

        public init(tokens: Int, fits: Bool, peakBytes: Int) {
            self.tokens = tokens
            self.fits = fits
            self.peakBytes = peakBytes
        }
    }
}

public enum ContextSearch {
    /// The largest n in [1, limit] with `fits(n)`, for a monotone `fits`: doubling from `start`, then bisection.
    /// Returns 0 when `fits(1)` is false.
    public static func largest(start: Int = 1024, limit: Int, fits: (Int) throws -> Bool) rethrows
        -> (tokens: Int, reachedLimit: Bool) {
        var low = 0
        var high = min(max(1, start), limit)
        while try fits(high) {
            low = high
            if high == limit { return (limit, true) }
            high = min(limit, high * 2)
        }
        if low == 0 {
            // Even `start` failed: bisect below it.
            high = min(max(1, start), limit)
            guard try fits(1) else { return (0, false) }
            low = 1
        }
        while high - low > 1 {
            let mid = low + (high - low) / 2
            if try fits(mid) { low = mid } else { high = mid }
        }
        return (low, false)
    }

    /// Searches the longest prefill of `spec` that fits under `memoryLimit` on `backend`: each probe builds the model
    /// afresh, runs a prefill of n tokens split by `prefillChunking` (as a sweep's points are) and one decode step,
    /// and counts an out-of-memory as "does not fit". On the allocation probe the prefill's passes of one length
    /// are replayed once (`replayPrefillShapes`): they allocate alike, and the probe computes nothing.
    public static func maxContext(spec: ModelSpec, batch: Int, type: ElementType, memoryLimit: Int,
                                  limit: Int, method: String, backendName: String,
                                  makeBackend: (Int) throws -> Backend, source: () -> WeightSource,
                                  prefillChunking: PrefillChunking, progress: (MaxContextResult.Probe) -> Void) throws
        -> MaxContextResult {
        var probes: [MaxContextResult.Probe] = []
        let (tokens, reached) = try largest(limit: limit) { n in
            let backend = try makeBackend(memoryLimit)
            var fits = true
            do {
                let weights = try ModelWeights(spec: spec, source: source(), type: type, backend: backend)
                let executor = ModelExecutor(spec: spec, weights: weights, backend: backend)
                let cache: InferenceCache
                if backend is MemoryProbeBackend {
                    cache = try executor.replayPrefillShapes(batch: batch, length: n, capacity: n + 1,
                                                             chunking: prefillChunking)
                } else {
                    let prompt = [Int32](repeating: 0, count: n)
                    cache = try executor.prefill(Array(repeating: prompt, count: batch), capacity: n + 1,
                                                 chunking: prefillChunking).cache
                }
                _ = try executor.stepGreedy(Array(repeating: 0, count: batch), cache: cache)  // as a sweep steps
            } catch is OutOfMemory {
                fits = false
            }
            let probe = MaxContextResult.Probe(tokens: n, fits: fits, peakBytes: backend.memory.peak)
            probes.append(probe)
            progress(probe)
            return fits
        }
        let peak = probes.last { $0.tokens == tokens }?.peakBytes ?? 0
        return MaxContextResult(model: spec.name, backend: backendName, dtype: type.rawValue, batch: batch,
                                memoryLimitBytes: memoryLimit, tokens: tokens, reachedSearchLimit: reached,
                                peakBytesAtLimit: peak, method: method,
                                prefill: tokens > 0 ? prefillChunking.note(context: tokens, batch: batch) : nil,
                                probes: probes)
    }
}
