/// The categories an operator's time and cost are attributed to.
public enum OpCategory: String, Sendable, Codable, CaseIterable, Comparable {
    case gemm, attention, ssmScan = "ssm_scan", conv, norm, elementwise, embedding, lmHead = "lm_head"

    public static func < (a: OpCategory, b: OpCategory) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }
}

/// What an operator does. Engines time operators by kind, so measurements and the cost model line up.
public enum OperatorKind: String, Sendable, Codable, CaseIterable {
    case embedding
    case linear
    case rmsNorm = "rms_norm"
    case gatedRMSNorm = "gated_rms_norm"
    case rope
    case attentionPrefill = "attention_prefill"
    case attentionDecode = "attention_decode"
    case conv1d
    case convStep = "conv_step"
    case selectiveScan = "selective_scan"
    case selectiveStep = "selective_step"
    case ssdChunkScan = "ssd_chunk_scan"
    case ssdStep = "ssd_step"
    case activation
    case router
    case residualAdd = "residual_add"
    case concat
    case lmHead = "lm_head"

    /// The category the kind's time counts towards.
    public var category: OpCategory {
        switch self {
        case .embedding: .embedding
        case .linear, .router: .gemm
        case .rmsNorm, .gatedRMSNorm: .norm
        case .attentionPrefill, .attentionDecode: .attention
        case .conv1d, .convStep: .conv
        case .selectiveScan, .selectiveStep, .ssdChunkScan, .ssdStep: .ssmScan
        case .rope, .activation, .residualAdd, .concat: .elementwise
        case .lmHead: .lmHead
        }
    }

    /// Whether the kind's arithmetic runs on matrix units (tensor cores) in an optimised implementation.
    public var usesMatrixUnits: Bool {
        switch self {
        case .linear, .router, .lmHead, .attentionPrefill, .ssdChunkScan: true
        default: false
        }
    }
}

/// One operator of a forward pass with its arithmetic and memory traffic.
public struct OperatorCost: Sendable, Hashable, Codable {
    /// A dotted path such as "layers.3.attention.q_proj".
    public var name: String
    public var kind: OperatorKind
    /// Layer index, nil for embedding, final norm and LM head.
    public var layer: Int?
    public var flops: Double
    public var bytesRead: Double
    public var bytesWritten: Double

    public init(name: String, kind: OperatorKind, layer: Int?, flops: Double, bytesRead: Double, bytesWritten: Double) {
        self.name = name
        self.kind = kind
        self.layer = layer
        self.flops = flops
        self.bytesRead = bytesRead
        self.bytesWritten = bytesWritten
    }

    public var category: OpCategory { kind.category }
    public var bytes: Double { bytesRead + bytesWritten }
    /// FLOPs per byte moved.
    public var arithmeticIntensity: Double { bytes > 0 ? flops / bytes : .infinity }
}

/// The work being costed: a prefill pass over `tokens` prompt tokens that follow `past` tokens already in the cache
/// (0 unless the prefill is chunked), or one decode step against a cache of `context` tokens.
public enum Phase: Sendable, Hashable, Codable {
    case prefill(tokens: Int, past: Int = 0)
    case decode(context: Int)
}

/// Sums of a list of operators, by category.
public struct CostTotals: Sendable, Hashable {
    public var flops: Double = 0
    public var bytes: Double = 0
    public var flopsByCategory: [OpCategory: Double] = [:]
    public var bytesByCategory: [OpCategory: Double] = [:]

    public init(_ operators: [OperatorCost]) {
        for op in operators {
            flops += op.flops
            bytes += op.bytes
            flopsByCategory[op.category, default: 0] += op.flops
            bytesByCategory[op.category, default: 0] += op.bytes
        }
    }
}
