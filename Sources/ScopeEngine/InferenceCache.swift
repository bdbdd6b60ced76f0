import ScopeModels

/// The recurrent state of one block: a KV cache for attention, conv and SSM state for SSM mixers (both for
/// parallel blocks), nothing for MLPs.
public final class BlockCache {
    public let kv: KVCacheLayer?
    /// [batch, kernel - 1, channels].
    public let conv: Tensor?
    /// [batch, inner, state] (Mamba-1) or [batch, heads, headDim, state] (Mamba-2).
    public let ssm: Tensor?

    init(kv: KVCacheLayer?, conv: Tensor?, ssm: Tensor?) {
        self.kv = kv
        self.conv = conv
        self.ssm = ssm
    }

    public var byteCount: Int { (kv?.byteCount ?? 0) + (conv?.byteCount ?? 0) + (ssm?.byteCount ?? 0) }
}

/// Everything a decode step needs from the tokens before it, for a batch of equal-length sequences.
public final class InferenceCache {
    public let batch: Int
    /// Longest sequence the full-attention KV caches can hold.
    public let capacity: Int
    /// Tokens consumed so far per sequence.
    public internal(set) var length = 0
    /// Per layer, per block.
    public let blocks: [[BlockCache]]
    /// The decode step recorded for this cache (its tensors' addresses are part of the recording).
    var recordedStep: RecordedStep?

    /// Whether this cache's decode steps replay a recorded step (a CUDA graph) rather than issue every operator.
    public var replaysRecordedSteps: Bool { recordedStep != nil }

    init(batch: Int, capacity: Int, blocks: [[BlockCache]]) {
        self.batch = batch
        self.capacity = capacity
        self.blocks = blocks
    }

    /// Bytes of all KV caches and SSM states.
    public var byteCount: Int { blocks.joined().reduce(0) { $0 + $1.byteCount } }
    public var kvBytes: Int { blocks.joined().reduce(0) { $0 + ($1.kv?.byteCount ?? 0) } }
    public var stateBytes: Int { byteCount - kvBytes }

    /// Allocates zeroed caches for `spec`: sliding-window layers keep their window, others `capacity` tokens;
    /// keys, values and conv states in the backend's activation type, SSM states in fp32.
    static func allocate(spec: ModelSpec, batch: Int, capacity: Int, backend: Backend) throws -> InferenceCache {
        let type = backend.activationType
        func kv(_ a: AttentionSpec) throws -> KVCacheLayer {
            let slots = min(capacity, a.slidingWindow ?? capacity)
            return KVCacheLayer(keys: try backend.makeTensor([batch, slots, a.kvWidth], type),
                                values: try backend.makeTensor([batch, slots, a.kvWidth], type), capacity: slots)
        }
        func mamba2(_ m: Mamba2Spec) throws -> (Tensor, Tensor) {
            (try backend.makeTensor([batch, m.convKernel - 1, m.convChannels], type),
             try backend.makeTensor([batch, m.heads, m.headDim, m.stateSize], .fp32))
        }
        let blocks = try spec.layers.map { layer in
            try layer.blocks.map { block -> BlockCache in
                switch block {
                case .attention(let a): return BlockCache(kv: try kv(a), conv: nil, ssm: nil)
                case .mamba1(let m):
                    return BlockCache(kv: nil, conv: try backend.makeTensor([batch, m.convKernel - 1, m.innerSize], type),
                                      ssm: try backend.makeTensor([batch, m.innerSize, m.stateSize], .fp32))
                case .mamba2(let m):
                    let (conv, ssm) = try mamba2(m)
                    return BlockCache(kv: nil, conv: conv, ssm: ssm)
                case .parallel(let p):
                    let (conv, ssm) = try mamba2(p.mamba)
                    return BlockCache(kv: try kv(p.attention), conv: conv, ssm: ssm)
                case .sharedTransformer(let s):
                    return BlockCache(kv: try kv(spec.sharedBlocks[s.blockIndex].attention), conv: nil, ssm: nil)
                case .mlp, .moe:
                    return BlockCache(kv: nil, conv: nil, ssm: nil)
                }
            }
        }
        return InferenceCache(batch: batch, capacity: capacity, blocks: blocks)
    }
}
