#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import ScopeModels

/// One measured pass to fit an efficiency profile to: a model's prefill or decode step on a device, with the
/// seconds it took by operator kind.
public struct CalibrationSample: Sendable {
    public enum Pass: String, Sendable, CaseIterable {
        case prefill, decode
    }

    /// What the sample is, for tables ("llama-3.2-1b 16K decode").
    public var label: String
    public var spec: ModelSpec
    public var device: Device
    public var precision: Precision
    public var assumptions: ExecutionAssumptions
    public var context: Int
    public var batch: Int
    public var pass: Pass
    /// Measured seconds by operator kind, summing to the pass's measured time.
    public var secondsByKind: [OperatorKind: Double]

    public init(label: String, spec: ModelSpec, device: Device, precision: Precision,
                assumptions: ExecutionAssumptions, context: Int, batch: Int, pass: Pass,
                secondsByKind: [OperatorKind: Double]) {
        self.label = label
        self.spec = spec
        self.device = device
        self.precision = precision
        self.assumptions = assumptions
        self.context = context
        self.batch = batch
        self.pass = pass
        self.secondsByKind = secondsByKind
    }

    /// The pass's measured time.
    public var measuredSeconds: Double { secondsByKind.values.reduce(0, +) }

    /// The cost model's operators of the pass (every pass of a chunked prefill).
    public func operators() -> [OperatorCost] {
        let cost = CostModel(spec: spec, precision: precision, assumptions: assumptions)
        switch pass {
        case .prefill:
            return cost.prefillPasses(tokens: context, batch: batch).flatMap { cost.operators($0, batch: batch) }
        case .decode:
            return cost.operators(.decode(context: context), batch: batch)
        }
    }

    /// A predictor for the sample's device, precision and assumptions under `profile` (nil: the device's default).
    func predictor(_ profile: EfficiencyProfile? = nil) -> Predictor {
        Predictor(device: device, precision: precision, assumptions: assumptions, efficiency: profile)
    }
}

/// An efficiency profile fitted to measurements, with how well it and the starting one predict them.
public struct CalibrationResult: Sendable {
    /// One sample's measured and predicted times, seconds.
    public struct Fit: Sendable {
        public var label: String
        public var pass: CalibrationSample.Pass
        public var measured: Double
        public var before: Double
        public var after: Double
    }

    public var profile: EfficiencyProfile
    /// The parameters the measurements determined ("gemm compute", "norm launch overhead", ...); the others kept
    /// their starting values (no operator of the samples was bound by them).
    public var fitted: [String]
    public var fits: [Fit]

    /// Median |predicted / measured - 1| over the samples of `pass`, with the starting profile (before) or the
    /// fitted one; nil without such samples.
    public func medianError(_ pass: CalibrationSample.Pass, after: Bool) -> Double? {
        let errors = fits.filter { $0.pass == pass }.map { abs((after ? $0.after : $0.before) / $0.measured - 1) }
        guard !errors.isEmpty else { return nil }
        let sorted = errors.sorted()
        return sorted.count % 2 == 1 ? sorted[sorted.count / 2]
            : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
    }
}

/// Fits an `EfficiencyProfile` to measured operator breakdowns.
///
/// Each sample's operators are grouped by category; for one category of one sample the model predicts
/// sum over its operators of max(FLOPs / (rate x compute efficiency), bytes / (bandwidth x memory efficiency)) plus
/// the launch overhead per operator, against the seconds measured for the category's operator kinds. The fit
/// minimises, per sample, the squared log ratio of the predicted to the measured total plus those of the categories,
/// each weighted by its share of the sample's time (so that what dominates a pass is fitted best), over every
/// category's two efficiencies (each in [0.001, 1]) and launch overhead per operator (0 to 100 us): coordinate
/// descent, a golden-section search per parameter, until no parameter moves. A parameter the objective does not
/// depend on (say, the compute efficiency of a category whose operators are all memory bound) keeps its starting
/// value.
public enum Calibration {
    /// One sample as the fit sees it: each category's operators (their ideal compute and memory seconds) and the
    /// seconds measured for the categories the engine timed.
    struct Observed {
        var operators: [OpCategory: (compute: [Double], memory: [Double])]
        var measured: [OpCategory: Double]
        var total: Double

        /// The predicted seconds of `category`'s operators.
        func predicted(_ category: OpCategory, compute: Double, memory: Double, overhead: Double) -> Double {
            guard let ops = operators[category] else { return 0 }
            var sum = 0.0
            for i in ops.compute.indices { sum += max(ops.compute[i] / compute, ops.memory[i] / memory) }
            return sum + Double(ops.compute.count) * overhead
        }
    }

    /// A sample with a measured time, and its operators, as the fit sees it.
    static func observed(_ sample: CalibrationSample, operators ops: [OperatorCost]) -> Observed {
        let ideal = sample.predictor()
        var operators: [OpCategory: (compute: [Double], memory: [Double])] = [:]
        for op in ops {
            let (compute, memory) = ideal.idealSeconds(op)
            operators[op.category, default: ([], [])].compute.append(compute)
            operators[op.category, default: ([], [])].memory.append(memory)
        }
        var measured: [OpCategory: Double] = [:]
        for (kind, seconds) in sample.secondsByKind where seconds > 0 {
            measured[kind.category, default: 0] += seconds
        }
        return Observed(operators: operators, measured: measured.filter { operators[$0.key] != nil },
                        total: sample.measuredSeconds)
    }

    /// The profile fitted to `samples`, starting from (and keeping what the samples do not determine of) `start`.
    public static func fit(_ samples: [CalibrationSample], from start: EfficiencyProfile) -> CalibrationResult {
        let measuredSamples = samples.filter { $0.measuredSeconds > 0 }
        let operators = measuredSamples.map { $0.operators() }
        let seen = zip(measuredSamples, operators).map { observed($0, operators: $1) }
        let categories = Array(Set(seen.flatMap(\.operators.keys))).sorted()
        var compute = start.compute, memory = start.memory, overhead: [OpCategory: Double] = [:]
        for c in categories {
            compute[c] = min(1, max(0.001, compute[c] ?? 1))
            memory[c] = min(1, max(0.001, memory[c] ?? 1))
            overhead[c] = min(maximumOverhead, start.launchOverhead(c))
        }
        // Per sample: the squared log ratio of its predicted to measured total, plus those of its measured
        // categories weighted by their shares of its time. The total's term charges operators the engine folded
        // into others (timed with them), which no category's term sees.
        func objective() -> Double {
            var sum = 0.0
            for o in seen {
                var total = 0.0
                for c in o.operators.keys {
                    let p = o.predicted(c, compute: compute[c]!, memory: memory[c]!, overhead: overhead[c]!)
                    total += p
                    if let m = o.measured[c] {
                        let r = log(p / m)
                        sum += m / o.total * r * r
                    }
                }
                let r = log(total / o.total)
                sum += r * r
            }
            return sum
        }
        // Each category's compute and memory efficiency (searched over their logarithms) and launch overhead.
        struct Parameter {
            var name: String
            var get: () -> Double
            var set: (Double) -> Void
            var low: Double, high: Double
            var logarithmic: Bool
        }
        var parameters: [Parameter] = []
        for c in categories {
            parameters.append(Parameter(name: "\(c.rawValue) compute", get: { compute[c]! }, set: { compute[c] = $0 },
                                        low: 0.001, high: 1, logarithmic: true))
            parameters.append(Parameter(name: "\(c.rawValue) memory", get: { memory[c]! }, set: { memory[c] = $0 },
                                        low: 0.001, high: 1, logarithmic: true))
            parameters.append(Parameter(name: "\(c.rawValue) launch overhead", get: { overhead[c]! },
                                        set: { overhead[c] = $0 }, low: 0, high: maximumOverhead,
                                        logarithmic: false))
        }
        for _ in 0..<40 {
            var moved = false
            for p in parameters {
                let current = p.get(), before = objective()
                let (low, high) = p.logarithmic ? (log(p.low), log(p.high)) : (p.low, p.high)
                let value = { (x: Double) in p.logarithmic ? exp(x) : x }
                func at(_ x: Double) -> Double {
                    p.set(value(x))
                    return objective()
                }
                let best = [goldenSection(low, high, at), low, high].map { ($0, at($0)) }.min { $0.1 < $1.1 }!
                if best.1 < before * (1 - 1e-9) {
                    p.set(value(best.0))
                    moved = moved || abs(value(best.0) - current) > 1e-6 * max(abs(current), 1e-9)
                } else {
                    p.set(current)
                }
            }
            if !moved { break }
        }
        // A parameter counts as fitted where the objective moves when it does (10% either way, or 1 us up from 0);
        // the others go back to the starting profile's values.
        let best = objective()
        var fitted: [String] = []
        for p in parameters {
            let current = p.get()
            let probes = current == 0 ? [1e-6] : [current * 0.9, min(p.high, current * 1.1)]
            let sensitive = probes.contains { probe in
                p.set(probe)
                defer { p.set(current) }
                return abs(objective() - best) > 1e-9 * max(best, 1e-12)
            }
            if sensitive { fitted.append(p.name) }
        }
        var profile = start
        for c in categories {
            if fitted.contains("\(c.rawValue) compute") { profile.compute[c] = compute[c] }
            if fitted.contains("\(c.rawValue) memory") { profile.memory[c] = memory[c] }
            if fitted.contains("\(c.rawValue) launch overhead") { profile.launchOverheadByCategory[c] = overhead[c] }
        }
        let fits = zip(measuredSamples, operators).map { sample, ops in
            CalibrationResult.Fit(label: sample.label, pass: sample.pass, measured: sample.measuredSeconds,
                                  before: sample.predictor(start).pass(ops).seconds,
                                  after: sample.predictor(profile).pass(ops).seconds)
        }
        return CalibrationResult(profile: profile, fitted: fitted, fits: fits)
    }

    /// The largest launch overhead per operator the fit considers, seconds.
    static let maximumOverhead = 100e-6

    /// The minimum of f on [a, b] by golden-section search (f unimodal there; 60 steps narrow the bracket 1e12-fold).
    static func goldenSection(_ a: Double, _ b: Double, _ f: (Double) -> Double) -> Double {
        let ratio = (5.0.squareRoot() - 1) / 2
        var (a, b) = (a, b)
        var c = b - ratio * (b - a), d = a + ratio * (b - a)
        var fc = f(c), fd = f(d)
        for _ in 0..<60 {
            if fc < fd {
                (b, d, fd) = (d, c, fc)
                c = b - ratio * (b - a)
                fc = f(c)
            } else {
                (a, c, fc) = (c, d, fd)
                d = a + ratio * (b - a)
                fd = f(d)
            }
        }
        return (a + b) / 2
    }
}
