import ScopeBench
import ScopeCost

/// How the cost model prices a stored point as its engine ran it.
enum StoredPointCost {
    /// The CPU engine computes and caches in fp32, only its weights take the point's type; the CUDA engine and the
    /// PyTorch peer compute and cache in the point's type (bf16 or fp16; fp32 for fp32).
    static func precision(_ config: PointConfig) -> Precision? {
        guard let weights = DType(rawValue: config.dtype) else { return nil }
        let computes: DType = config.backend == "cpu" || !(weights == .bf16 || weights == .fp16) ? .fp32 : weights
        return Precision(weights: weights, activations: computes, cache: computes)
    }

    /// The prefill chunking the point's notes record (`PrefillChunking.recorded(in:)`), else the engines' automatic
    /// rule.
    static func assumptions(notes: String) -> ExecutionAssumptions {
        ExecutionAssumptions(prefillChunking: PrefillChunking.recorded(in: notes) ?? .automatic)
    }
}
