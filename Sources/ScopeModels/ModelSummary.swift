/// Broad architecture class of a model.
public enum ArchitectureFamily: String, Sendable, Codable, CaseIterable {
    case transformer, ssm, hybrid
}

extension ModelSpec {
    /// Transformer when no block is an SSM, SSM when no block attends, hybrid otherwise.
    public var family: ArchitectureFamily {
        let attention = attentionLayerCount > 0, ssm = ssmLayerCount > 0
        if attention && ssm { return .hybrid }
        return ssm ? .ssm : .transformer
    }

    /// Layers that contain attention (own, parallel or a shared-block invocation).
    public var attentionLayerCount: Int {
        layers.filter { $0.blocks.contains { $0.hasAttention } }.count
    }

    /// Layers that contain a Mamba-1 or Mamba-2 mixer.
    public var ssmLayerCount: Int {
        layers.filter { $0.blocks.contains { $0.hasSSM } }.count
    }

    /// Every attention spec that holds a KV cache, one per layer that attends, in layer order.
    public var attentionInstances: [AttentionSpec] {
        layers.flatMap { layer in
            layer.blocks.compactMap { block -> AttentionSpec? in
                switch block {
                case .attention(let a): a
                case .parallel(let p): p.attention
                case .sharedTransformer(let s): sharedBlocks[s.blockIndex].attention
                default: nil
                }
            }
        }
    }
}

extension Block {
    /// Whether the block attends over the context (and so keeps a KV cache).
    public var hasAttention: Bool {
        switch self {
        case .attention, .parallel, .sharedTransformer: true
        default: false
        }
    }
    /// Whether the block holds an SSM mixer (and so keeps conv and SSM state).
    public var hasSSM: Bool {
        switch self {
        case .mamba1, .mamba2, .parallel: true
        default: false
        }
    }
}
