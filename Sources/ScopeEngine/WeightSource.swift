#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import ScopeSupport

/// What a parameter is, so that random initialisation can give it a sensible scale.
public enum WeightRole: Sendable, Hashable {
    /// A projection with `fanIn` inputs; `gain` shrinks output projections of deep residual stacks.
    case linear(fanIn: Int, gain: Double)
    case embedding
    case normWeight
    case bias
    case convWeight(kernel: Int)
    /// Mamba-1 A_log [inner, state]: log(1 ... state) per row (S4D-real).
    case mamba1ALog(stateSize: Int)
    /// Mamba-2 A_log [heads]: log of uniform [1, 16].
    case mamba2ALog
    /// dt bias: inverse softplus of a log-uniform time step in [0.001, 0.1].
    case dtBias
    /// The D skip connection: ones.
    case skip
}

/// Where parameters come from: seeded random values or a checkpoint.
public protocol WeightSource: AnyObject {
    /// The parameter `name` of `shape`, stored as `type` in a new tensor of `backend`.
    func tensor(_ name: String, shape: [Int], role: WeightRole, type: ElementType, backend: Backend) throws -> Tensor
    /// The parameter `name` as fp32 host values (for small parameters that are transformed before upload).
    func values(_ name: String, shape: [Int], role: WeightRole) throws -> [Float]
    /// Checks that nothing was left over once every expected parameter was read.
    func finish() throws
}

/// Deterministic random parameters: each tensor's values depend only on the seed and its name.
///
/// Scales keep activations finite over long contexts: projections uniform with standard deviation
/// gain / sqrt(fanIn), embeddings with standard deviation 1, norms 1, biases 0, SSM parameters as their papers
/// initialise them (A from S4D-real or uniform [1, 16], dt in [0.001, 0.1], D = 1).
public final class RandomWeights: WeightSource {
    public let seed: UInt64

    public init(seed: UInt64) { self.seed = seed }

    public func tensor(_ name: String, shape: [Int], role: WeightRole, type: ElementType, backend: Backend) throws
        -> Tensor {
        let tensor = try backend.makeTensor(shape, type)
        try backend.upload(try values(name, shape: shape, role: role), into: tensor)
        return tensor
    }

    public func values(_ name: String, shape: [Int], role: WeightRole) throws -> [Float] {
        let count = shape.reduce(1, *)
        var rng = SplitMix64(seed: seed ^ fnv1a(name))
        switch role {
        case .linear(let fanIn, let gain):
            let bound = gain * (3.0 / Double(fanIn)).squareRoot()
            return (0..<count).map { _ in Float(rng.uniform(-bound, bound)) }
        case .embedding:
            let bound = 3.0.squareRoot()
            return (0..<count).map { _ in Float(rng.uniform(-bound, bound)) }
        case .normWeight, .skip:
            return Array(repeating: 1, count: count)
        case .bias:
            return Array(repeating: 0, count: count)
        case .convWeight(let kernel):
            let bound = 1 / Double(kernel).squareRoot()
            return (0..<count).map { _ in Float(rng.uniform(-bound, bound)) }
        case .mamba1ALog(let stateSize):
            return (0..<count).map { i in Float(log(Double(i % stateSize + 1))) }
        case .mamba2ALog:
            return (0..<count).map { _ in Float(log(rng.uniform(1, 16))) }
        case .dtBias:
            return (0..<count).map { _ in
                let dt = exp(rng.uniform(log(0.001), log(0.1)))
                return Float(dt + log(-expm1(-dt)))  // inverse softplus
            }
        }
    }

    public func finish() throws {}

    private func fnv1a(_ text: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        return hash
    }
}

/// A small, fast, seedable generator (SplitMix64).
public struct SplitMix64: Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [low, high).
    public mutating func uniform(_ low: Double, _ high: Double) -> Double {
        low + (high - low) * Double(next() >> 11) / Double(1 << 53)
    }
}

/// Parameters read from a Hugging Face `.safetensors` checkpoint, checked name by name and shape by shape.
public final class SafetensorsWeights: WeightSource {
    public let file: SafetensorsFile
    private var used = Set<String>()

    public init(path: String) throws { file = try SafetensorsFile(path: path) }

    private func entry(_ name: String, shape: [Int]) throws -> SafetensorsFile.Entry {
        guard let entry = file.entries[name] else {
            throw ScopeError("\(file.path): missing tensor '\(name)' (expected shape \(shape))")
        }
        // HF stores conv1d weights as [channels, 1, kernel]; accept any shape with the same non-unit dims.
        guard entry.shape.filter({ $0 != 1 }) == shape.filter({ $0 != 1 }) else {
            throw ScopeError("\(file.path): tensor '\(name)' has shape \(entry.shape) but the config implies \(shape)")
        }
        used.insert(name)
        return entry
    }

    public func tensor(_ name: String, shape: [Int], role: WeightRole, type: ElementType, backend: Backend) throws
        -> Tensor {
        let e = try entry(name, shape: shape)
        let tensor = try backend.makeTensor(shape, type)
        try backend.upload(raw: file.bytes(of: e), type: e.type, into: tensor)
        return tensor
    }

    public func values(_ name: String, shape: [Int], role: WeightRole) throws -> [Float] {
        let e = try entry(name, shape: shape)
        let bytes = file.bytes(of: e)
        guard let base = bytes.baseAddress else { return [] }
        return (0..<(e.range.count / e.type.byteSize)).map { ElementConversion.load(base, e.type, $0) }
    }

    public func finish() throws {
        let extra = Set(file.entries.keys).subtracting(used).sorted()
        if let first = extra.first {
            throw ScopeError("\(file.path): unexpected tensor '\(first)' (shape \(file.entries[first]!.shape))"
                + (extra.count > 1 ? " and \(extra.count - 1) more" : "") + "; the config does not describe it")
        }
    }
}
