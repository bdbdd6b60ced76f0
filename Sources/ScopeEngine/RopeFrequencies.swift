#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import ScopeModels
import ScopeSupport

/// Inverse frequencies and the cos/sin scale of a RoPE spec, as Hugging Face computes them (in fp32).
enum RopeFrequencies {
    /// `sequenceLength` is the longest position + 1 of the pass (only dynamic scaling depends on it);
    /// `maxTrained` is `max_position_embeddings`.
    static func compute(_ rope: RopeSpec, sequenceLength: Int, maxTrained: Int?) throws -> (invFreq: [Float], scale: Float) {
        let dim = rope.rotaryDim
        var base = rope.theta
        if case .dynamic(let factor) = rope.scaling, let maxTrained, sequenceLength > maxTrained {
            let ratio = factor * Double(sequenceLength) / Double(maxTrained) - (factor - 1)
            base *= pow(ratio, Double(dim) / Double(dim - 2))
        }
        // HF: 1 / base ** (arange(0, dim, 2, dtype=int64).float() / dim), computed in fp32.
        var inv = (0..<(dim / 2)).map { i in
            Float(1) / powf(Float(base), Float(2 * i) / Float(dim))
        }
        switch rope.scaling {
        case .none, .dynamic: break
        case .linear(let factor):
            inv = inv.map { $0 / Float(factor) }
        case .llama3(let factor, let low, let high, let original):
            let lowWavelength = Float(Double(original) / low)
            let highWavelength = Float(Double(original) / high)
            inv = inv.map { f in
                let wavelength = 2 * Float.pi / f
                if wavelength > lowWavelength { return f / Float(factor) }
                if wavelength < highWavelength { return f }
                let smooth = (Float(original) / wavelength - Float(low)) / Float(high - low)
                return (1 - smooth) * f / Float(factor) + smooth * f
            }
        case .yarn, .longrope:
            throw ScopeError("the engine does not implement yarn or longrope RoPE scaling yet; "
                + "use the cost model (predict) for this model")
        }
        return (inv, 1)
    }
}
