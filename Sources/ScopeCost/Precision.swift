import ScopeSupport

/// Element types for weights, activations and caches.
public enum DType: String, Sendable, Codable, CaseIterable {
    case fp32, bf16, fp16, int8, int4

    /// Bytes per element. int4 counts 0.5 byte plus one fp16 scale per group of 128 (0.0156 byte).
    public var bytes: Double {
        switch self {
        case .fp32: 4
        case .bf16, .fp16: 2
        case .int8: 1 + 2.0 / 128
        case .int4: 0.5 + 2.0 / 128
        }
    }

    public var isInteger: Bool { self == .int8 || self == .int4 }

    /// Parses a dtype name, with a one-line error listing the choices.
    public static func parse(_ text: String) throws -> DType {
        guard let d = DType(rawValue: text.lowercased()) else {
            throw ScopeError("unknown dtype '\(text)'; choose one of "
                + allCases.map(\.rawValue).joined(separator: ", "))
        }
        return d
    }
}

/// Storage types of one configuration.
///
/// Integer weight types quantise the linear layers only (with one fp16 scale per 128 weights, which `DType.bytes`
/// includes); embeddings, the LM head, norms and SSM parameters stay in the activation type, which is then bf16.
public struct Precision: Sendable, Hashable, Codable {
    public var weights: DType
    public var activations: DType
    public var cache: DType

    /// The usual configuration for a weight type: fp32 computes in fp32, everything else in bf16 (fp16 in fp16).
    public init(weights: DType) {
        self.weights = weights
        switch weights {
        case .fp32: activations = .fp32
        case .fp16: activations = .fp16
        default: activations = .bf16
        }
        cache = activations
    }

    public init(weights: DType, activations: DType, cache: DType) {
        self.weights = weights
        self.activations = activations
        self.cache = cache
    }

    /// Bytes per element of linear-layer weights.
    public var linearWeightBytes: Double { weights.bytes }
    /// Bytes per element of the other parameters (embeddings, LM head, norms, SSM parameters, conv weights).
    public var otherWeightBytes: Double { weights.isInteger ? activations.bytes : weights.bytes }
}
