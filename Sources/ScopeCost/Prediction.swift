import ScopeModels
import ScopeSupport

/// Fractions of peak that each category reaches, plus a fixed cost per operator launch.
///
/// The defaults are round, uncalibrated guesses for an optimised GPU implementation; a calibration fits them to
/// measurements (a JSON file of this shape can be passed with `--efficiency`).
public struct EfficiencyProfile: Sendable, Hashable, Codable {
    /// Fraction of the peak FLOP rate reached, by category.
    public var compute: [OpCategory: Double]
    /// Fraction of the peak memory bandwidth reached, by category.
    public var memory: [OpCategory: Double]
    /// Seconds added per operator (kernel launch and scheduling gaps).
    public var launchOverheadSeconds: Double
    /// Seconds added per operator of these categories instead (a calibration's fit: an engine that folds norms into
    /// the next product pays nothing for them, while its small products pay a fixed cost at their ends).
    public var launchOverheadByCategory: [OpCategory: Double]

    public init(compute: [OpCategory: Double], memory: [OpCategory: Double], launchOverheadSeconds: Double,
                launchOverheadByCategory: [OpCategory: Double] = [:]) {
        self.compute = compute
        self.memory = memory
        self.launchOverheadSeconds = launchOverheadSeconds
        self.launchOverheadByCategory = launchOverheadByCategory
    }

    /// The seconds added per operator of `category`.
    public func launchOverhead(_ category: OpCategory) -> Double {
        launchOverheadByCategory[category] ?? launchOverheadSeconds
    }

    /// Round figures for a tuned GPU stack: GEMMs near peak, scans far from it, 4 us per launch.
    public static let gpuDefault = EfficiencyProfile(
        compute: [.gemm: 0.7, .attention: 0.5, .ssmScan: 0.25, .conv: 0.5, .norm: 0.5, .elementwise: 0.5,
                  .embedding: 1, .lmHead: 0.7],
        memory: [.gemm: 0.8, .attention: 0.7, .ssmScan: 0.6, .conv: 0.6, .norm: 0.7, .elementwise: 0.7,
                 .embedding: 0.5, .lmHead: 0.8],
        launchOverheadSeconds: 4e-6)

    /// Same fractions with no launch overhead, for CPUs.
    public static let cpuDefault: EfficiencyProfile = {
        var p = gpuDefault
        p.launchOverheadSeconds = 0
        return p
    }()

    public static func defaultFor(_ device: Device) -> EfficiencyProfile {
        device.kind == "cpu" ? cpuDefault : gpuDefault
    }

    /// This profile with `base`'s fractions wherever it names none.
    public func filled(from base: EfficiencyProfile) -> EfficiencyProfile {
        EfficiencyProfile(compute: compute.merging(base.compute) { mine, _ in mine },
                          memory: memory.merging(base.memory) { mine, _ in mine },
                          launchOverheadSeconds: launchOverheadSeconds,
                          launchOverheadByCategory: launchOverheadByCategory)
    }

    enum CodingKeys: String, CodingKey {
        case compute, memory, launchOverheadSeconds, launchOverheadByCategory
    }

    /// JSON objects keyed by category name: {"compute": {"gemm": 0.7, ...}, "memory": {...},
    /// "launchOverheadSeconds": 4e-6, "launchOverheadByCategory": {"norm": 0, ...}} (the last optional).
    /// Categories left out are left out of the profile (see `filled(from:)`); an unknown category, a fraction
    /// outside (0, 1.5] or a negative overhead is an error naming it.
    public init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        func fractions(_ key: CodingKeys, _ allowed: ClosedRange<Double>) throws -> [OpCategory: Double] {
            var result: [OpCategory: Double] = [:]
            for (name, value) in try container.decodeIfPresent([String: Double].self, forKey: key) ?? [:] {
                guard let category = OpCategory(rawValue: name) else {
                    throw DecodingError.dataCorruptedError(
                        forKey: key, in: container, debugDescription: "unknown category '\(name)' (categories: "
                            + OpCategory.allCases.map(\.rawValue).joined(separator: ", ") + ")")
                }
                guard allowed.contains(value), key == .launchOverheadByCategory || value > 0 else {
                    throw DecodingError.dataCorruptedError(
                        forKey: key, in: container,
                        debugDescription: "\(key.rawValue) of \(name) must lie in "
                            + (key == .launchOverheadByCategory ? "[0, 1] seconds" : "(0, 1.5]") + ", not \(value)")
                }
                result[category] = value
            }
            return result
        }
        compute = try fractions(.compute, 0...1.5)
        memory = try fractions(.memory, 0...1.5)
        launchOverheadByCategory = try fractions(.launchOverheadByCategory, 0...1)
        launchOverheadSeconds = try container.decode(Double.self, forKey: .launchOverheadSeconds)
        guard launchOverheadSeconds >= 0 else {
            throw DecodingError.dataCorruptedError(forKey: .launchOverheadSeconds, in: container,
                                                   debugDescription: "launchOverheadSeconds must not be negative")
        }
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(Dictionary(uniqueKeysWithValues: compute.map { ($0.key.rawValue, $0.value) }),
                             forKey: .compute)
        try container.encode(Dictionary(uniqueKeysWithValues: memory.map { ($0.key.rawValue, $0.value) }),
                             forKey: .memory)
        try container.encode(launchOverheadSeconds, forKey: .launchOverheadSeconds)
        if !launchOverheadByCategory.isEmpty {
            try container.encode(Dictionary(uniqueKeysWithValues: launchOverheadByCategory.map {
                ($0.key.rawValue, $0.value)
            }), forKey: .launchOverheadByCategory)
        }
    }
}

/// Predicted time of one pass.
public struct PassPrediction: Sendable, Hashable {
    public var seconds: Double
    public var secondsByCategory: [OpCategory: Double]
    public var flops: Double
    public var bytes: Double
    /// Seconds of operators limited by memory bandwidth rather than arithmetic.
    public var memoryBoundSeconds: Double
}

/// Prediction for one model at one context length.
public struct PointPrediction: Sendable, Hashable {
    public var model: String
    public var context: Int
    public var batch: Int
    /// nil when the prefill does not fit in memory.
    public var prefill: PassPrediction?
    /// nil when a decode step at this context does not fit.
    public var decode: PassPrediction?
    public var prefillMemory: MemoryFootprint
    public var decodeMemory: MemoryFootprint
    /// Memory the device offers after the reserve.
    public var usableMemory: Double

    public var fits: Bool { prefill != nil }
    /// Time to first token, seconds.
    public var ttft: Double? { prefill?.seconds }
    /// Time per output token at this context, seconds.
    public var tpot: Double? { decode?.seconds }
    public var prefillTokensPerSecond: Double? { ttft.map { Double(context * batch) / $0 } }
    public var decodeTokensPerSecond: Double? { tpot.map { Double(batch) / $0 } }
}

/// The longest context that fits, or a note that the bound lies beyond the search limit.
public struct MaxContext: Sendable, Hashable {
    /// Longest prompt whose prefill fits; 0 when not even one token fits.
    public var tokens: Int
    /// True when `tokens` is the search limit and the true limit may be higher.
    public var reachedSearchLimit: Bool
    /// The part of memory that grows the most at the limit ("kv cache", "activations", "weights").
    public var limitedBy: String
}

/// Roofline predictions on one device: each operator takes max(FLOPs / rate, bytes / bandwidth), scaled by the
/// efficiency of its category, plus a launch overhead; operators run one after another.
public struct Predictor: Sendable {
    public var device: Device
    public var precision: Precision
    public var assumptions: ExecutionAssumptions
    public var efficiency: EfficiencyProfile
    /// Bytes held back from the device's memory: max(0.5 GiB, 5%) for the runtime context, allocator slack and
    /// fragmentation.
    public var reserveBytes: Double
    /// Memory the model may use (defaults to the device's; set to stand in for a smaller device).
    public var memoryLimit: Double

    /// Longest context `maxContext` searches (2^30 tokens).
    public static let searchLimit = 1 << 30

    public init(device: Device, precision: Precision, assumptions: ExecutionAssumptions = .init(),
                efficiency: EfficiencyProfile? = nil, memoryLimit: Double? = nil, reserveBytes: Double? = nil) {
        self.device = device
        self.precision = precision
        self.assumptions = assumptions
        self.efficiency = efficiency ?? .defaultFor(device)
        let capacity = memoryLimit ?? device.memoryBytes
        self.memoryLimit = capacity
        self.reserveBytes = reserveBytes ?? max(0.5 * 1024 * 1024 * 1024, 0.05 * capacity)
    }

    public var usableMemory: Double { memoryLimit - reserveBytes }

    /// An operator's arithmetic and memory traffic at the device's full rates (efficiency 1, no launch overhead):
    /// matrix-unit rates for kinds that use them, vector rates for the rest.
    public func idealSeconds(_ op: OperatorCost) -> (compute: Double, memory: Double) {
        let rate = op.kind.usesMatrixUnits ? device.matrixRate(precision.activations) : device.vectorRate
        return (op.flops / rate, op.bytes / device.memoryBandwidthBytesPerSecond)
    }

    /// Time of one operator on this device.
    public func seconds(_ op: OperatorCost) -> (seconds: Double, memoryBound: Bool) {
        let ideal = idealSeconds(op)
        let compute = ideal.compute / (efficiency.compute[op.category] ?? 1)
        let memory = ideal.memory / (efficiency.memory[op.category] ?? 1)
        return (max(compute, memory) + efficiency.launchOverhead(op.category), memory >= compute)
    }

    /// Time of a list of operators run back to back.
    public func pass(_ operators: [OperatorCost]) -> PassPrediction {
        var result = PassPrediction(seconds: 0, secondsByCategory: [:], flops: 0, bytes: 0, memoryBoundSeconds: 0)
        for op in operators {
            let (t, memoryBound) = seconds(op)
            result.seconds += t
            result.secondsByCategory[op.category, default: 0] += t
            result.flops += op.flops
            result.bytes += op.bytes
            if memoryBound { result.memoryBoundSeconds += t }
        }
        return result
    }

    /// TTFT, TPOT and memory of `spec` at `context` tokens.
    public func predict(_ spec: ModelSpec, context: Int, batch: Int = 1) -> PointPrediction {
        let cost = CostModel(spec: spec, precision: precision, assumptions: assumptions)
        let memory = MemoryModel(spec: spec, precision: precision, assumptions: assumptions)
        let prefillMemory = memory.prefill(context: context, batch: batch)
        let decodeMemory = memory.decode(context: context, batch: batch)
        let prefill = prefillMemory.total <= usableMemory ? prefillTime(cost, tokens: context, batch: batch) : nil
        let decode = decodeMemory.total <= usableMemory
            ? pass(cost.operators(.decode(context: context), batch: batch)) : nil
        return PointPrediction(model: spec.name, context: context, batch: batch, prefill: prefill, decode: decode,
                               prefillMemory: prefillMemory, decodeMemory: decodeMemory, usableMemory: usableMemory)
    }

    /// Prefill time, summing the passes of a chunked prefill.
    public func prefillTime(_ cost: CostModel, tokens: Int, batch: Int) -> PassPrediction {
        var total = PassPrediction(seconds: 0, secondsByCategory: [:], flops: 0, bytes: 0, memoryBoundSeconds: 0)
        for phase in cost.prefillPasses(tokens: tokens, batch: batch) {
            let p = pass(cost.operators(phase, batch: batch))
            total.seconds += p.seconds
            total.flops += p.flops
            total.bytes += p.bytes
            total.memoryBoundSeconds += p.memoryBoundSeconds
            for (category, t) in p.secondsByCategory { total.secondsByCategory[category, default: 0] += t }
        }
        return total
    }

    /// The longest prompt whose prefill fits in usable memory (doubling, then bisection to the token).
    public func maxContext(_ spec: ModelSpec, batch: Int = 1) -> MaxContext {
        let memory = MemoryModel(spec: spec, precision: precision, assumptions: assumptions)
        func fits(_ n: Int) -> Bool { memory.prefill(context: n, batch: batch).total <= usableMemory }
        guard fits(1) else { return MaxContext(tokens: 0, reachedSearchLimit: false, limitedBy: "weights") }
        var low = 1
        var high = 2
        while high <= Self.searchLimit, fits(high) {
            low = high
            high *= 2
        }
        if high > Self.searchLimit {
            return MaxContext(tokens: low, reachedSearchLimit: true, limitedBy: "none")
        }
        while high - low > 1 {
            let mid = low + (high - low) / 2
            if fits(mid) { low = mid } else { high = mid }
        }
        let at = memory.prefill(context: low, batch: batch)
        let parts = [("kv cache", at.kvCache), ("activations", at.activations),
                     ("ssm state", at.convState + at.ssmState)]
        return MaxContext(tokens: low, reachedSearchLimit: false, limitedBy: parts.max { $0.1 < $1.1 }!.0)
    }

    /// Every context length in [lowest, highest] at which the faster of `a` and `b` on `metric` changes, in order.
    /// Sign changes are found on a doubling grid and then bisected to within 1%; the search stops where either
    /// model no longer fits.
    public func crossovers(_ a: ModelSpec, _ b: ModelSpec, metric: Metric, batch: Int = 1, lowest: Int = 128,
                           highest: Int) -> [Crossover] {
        func aSlower(_ n: Int) -> Bool? {
            let pa = predict(a, context: n, batch: batch), pb = predict(b, context: n, batch: batch)
            guard let ta = metric.value(pa), let tb = metric.value(pb) else { return nil }
            return ta > tb
        }
        var found: [Crossover] = []
        guard var previousSign = aSlower(lowest) else { return found }
        var previous = lowest
        var n = lowest * 2
        while n <= highest, let sign = aSlower(n) {
            if sign != previousSign {
                var low = previous, high = n
                while Double(high - low) > 0.01 * Double(low) {
                    let mid = low + (high - low) / 2
                    guard let s = aSlower(mid) else { break }
                    if s == previousSign { low = mid } else { high = mid }
                }
                found.append(Crossover(tokens: high, fasterBeyond: sign ? b.name : a.name,
                                       fasterBefore: sign ? a.name : b.name, metric: metric))
            }
            previous = n
            previousSign = sign
            n *= 2
        }
        return found
    }
}

/// Which prediction a comparison uses.
public enum Metric: String, Sendable, Codable, CaseIterable {
    case ttft, tpot
    func value(_ p: PointPrediction) -> Double? { self == .ttft ? p.ttft : p.tpot }
}

/// A context length at which the faster of two models changes.
public struct Crossover: Sendable, Hashable {
    public var tokens: Int
    /// The model that is faster beyond `tokens`.
    public var fasterBeyond: String
    public var fasterBefore: String
    public var metric: Metric
}
