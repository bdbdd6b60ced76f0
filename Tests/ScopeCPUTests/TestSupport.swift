import Foundation

/// Deterministic pseudo-random numbers (SplitMix64), so every test run sees the same inputs.
struct SplitMix64 {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    mutating func nextFloat() -> Float {
        Float(next() >> 40) / Float(1 << 23) - 1
    }

    /// `count` values uniform in [-1, 1) times `scale`.
    mutating func floats(_ count: Int, scale: Float = 1) -> [Float] {
        (0..<count).map { _ in nextFloat() * scale }
    }

    /// Uniform in [lo, hi).
    mutating func uniform(_ lo: Float, _ hi: Float) -> Float {
        let unit = Float(next() >> 40) / Float(1 << 24)
        return lo + (hi - lo) * unit
    }

    /// `count` values uniform in [lo, hi).
    mutating func array(_ count: Int, _ lo: Float, _ hi: Float) -> [Float] {
        (0..<count).map { _ in uniform(lo, hi) }
    }

    /// -exp(uniform(-1, 1)): negative A with realistic decay rates.
    mutating func negativeA(_ count: Int) -> [Float] {
        (0..<count).map { _ in -Float(Foundation.exp(Double(uniform(-1, 1)))) }
    }
}

/// max |actual - expected| / max |expected| (or the absolute error when expected is all zero).
func relativeError(_ actual: [Float], _ expected: [Double]) -> Double {
    precondition(actual.count == expected.count)
    var worst = 0.0, magnitude = 0.0
    for (a, e) in zip(actual, expected) {
        worst = max(worst, abs(Double(a) - e))
        magnitude = max(magnitude, abs(e))
    }
    return magnitude > 0 ? worst / magnitude : worst
}
