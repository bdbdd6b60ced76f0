import ScopeBench
import ScopeCost
import ScopeSupport

/// What a report's data says, computed from `ReportData` alone: crossovers between models, the longest context per
/// model, the dominant operator category, and how far measurements are from the cost model's predictions.
public struct Findings: Sendable, Hashable {
    /// The settings under which models are compared with each other.
    public struct Configuration: Sendable, Hashable, Comparable {
        public var batch: Int
        public var backend: String
        public var dtype: String

        public init(batch: Int, backend: String, dtype: String) {
            self.batch = batch
            self.backend = backend
            self.dtype = dtype
        }

        public static func < (a: Configuration, b: Configuration) -> Bool {
            (a.batch, a.backend, a.dtype) < (b.batch, b.backend, b.dtype)
        }
    }

    /// One line of measurements: a model under one configuration.
    public struct SeriesKey: Sendable, Hashable {
        public var model: String
        public var configuration: Configuration

        public init(model: String, configuration: Configuration) {
            self.model = model
            self.configuration = configuration
        }

        public init(_ config: PointConfig) {
            self.init(model: config.model,
                      configuration: Configuration(batch: config.batch, backend: config.backend, dtype: config.dtype))
        }
    }

    /// A context length at which the faster of two models changes.
    public struct Crossover: Sendable, Hashable {
        public var metric: Metric
        public var configuration: Configuration
        /// Interpolated crossover: ln(time ratio) linear in ln(context) between the two measured contexts around the
        /// sign change (exact for two power laws).
        public var tokens: Double
        public var fasterBeyond: String
        public var fasterBefore: String
        /// The measured contexts around the sign change.
        public var lowerContext: Int
        public var upperContext: Int

        public init(metric: Metric, configuration: Configuration, tokens: Double, fasterBeyond: String,
                    fasterBefore: String, lowerContext: Int, upperContext: Int) {
            self.metric = metric
            self.configuration = configuration
            self.tokens = tokens
            self.fasterBeyond = fasterBeyond
            self.fasterBefore = fasterBefore
            self.lowerContext = lowerContext
            self.upperContext = upperContext
        }
    }

    /// Two models compared on one metric at the contexts both were measured at.
    public struct Comparison: Sendable, Hashable {
        public var metric: Metric
        public var configuration: Configuration
        public var first: String
        public var second: String
        /// Contexts measured for both, ascending.
        public var contexts: [Int]
        /// Empty when the faster model never changes.
        public var crossovers: [Crossover]
        /// The model faster at every common context, when there is no crossover (nil on exact ties).
        public var fasterThroughout: String?
    }

    /// The longest context a model handles under one configuration.
    public struct LongestContext: Sendable, Hashable {
        public enum Source: Sendable, Hashable {
            /// A max-context search under `memoryLimitBytes`; `reachedLimit` when it stopped at its upper limit.
            case search(reachedLimit: Bool, memoryLimitBytes: Int, method: String)
            /// No search: the largest context that was measured (a lower bound).
            case measured
        }

        public var key: SeriesKey
        public var tokens: Int
        public var source: Source

        /// True when the real limit may be higher (search limit reached, or only measured).
        public var isLowerBound: Bool {
            switch source {
            case .search(let reached, _, _): reached
            case .measured: true
            }
        }
    }

    /// How much more context the best model of a configuration fits than the worst.
    public struct ContextRatio: Sendable, Hashable {
        public enum Bound: Sendable, Hashable {
            /// Both figures are exact.
            case exact
            /// The larger figure is a lower bound: the ratio is at least this.
            case atLeast
            /// The smaller figure is a lower bound: the ratio is at most this.
            case atMost
        }

        public var larger: LongestContext
        public var smaller: LongestContext
        public var ratio: Double
        public var bound: Bound
    }

    /// The operator category with the largest share of a model's prefill at its largest profiled context.
    public struct DominantCategory: Sendable, Hashable {
        public var key: SeriesKey
        public var context: Int
        public var category: OpCategory
        /// Fraction of the prefill breakdown's total, 0...1.
        public var share: Double
        public var seconds: Double
        public var totalSeconds: Double
    }

    /// Median |measured / predicted - 1| for one model, over the points that have a prediction.
    public struct PredictionError: Sendable, Hashable {
        public var key: SeriesKey
        public var ttft: Double?
        public var tpot: Double?
        public var ttftPoints: Int
        public var tpotPoints: Int
    }

    public var comparisons: [Comparison]
    public var longestContexts: [LongestContext]
    public var contextRatios: [ContextRatio]
    public var dominantCategories: [DominantCategory]
    public var predictionErrors: [PredictionError]
    /// Where the predictions' efficiencies came from (`ReportData.predictionEfficiencies`).
    public var predictionEfficiencies: String
    /// Series in the order they first appear in the data (points, then failures, then max-context results).
    public var keys: [SeriesKey]
    /// Whether labels name the batch, backend or dtype (only when the data holds several).
    public var showsBatch: Bool
    public var showsBackend: Bool
    public var showsDtype: Bool

    /// Every crossover of every comparison.
    public var crossovers: [Crossover] { comparisons.flatMap(\.crossovers) }

    public init(_ data: ReportData) {
        predictionEfficiencies = data.predictionEfficiencies
        var keys: [SeriesKey] = []
        var seen: Set<SeriesKey> = []
        let all = data.points.map { SeriesKey($0.config) } + data.failures.map { SeriesKey($0.config) }
            + data.maxContexts.map {
                SeriesKey(model: $0.model, configuration: Configuration(batch: $0.batch, backend: $0.backend,
                                                                        dtype: $0.dtype))
            }
        for k in all where seen.insert(k).inserted { keys.append(k) }
        self.keys = keys
        showsBatch = Set(keys.map(\.configuration.batch)).count > 1
        showsBackend = Set(keys.map(\.configuration.backend)).count > 1
        showsDtype = Set(keys.map(\.configuration.dtype)).count > 1

        let configurations = Findings.unique(keys.map(\.configuration))

        // Crossovers.
        var comparisons: [Comparison] = []
        for metric in Metric.allCases {
            let series = Findings.series(data.points) { metric == .ttft ? $0.ttft.median : $0.tpot.median }
            for configuration in configurations {
                let models = keys.filter { $0.configuration == configuration && series[$0] != nil }
                for i in models.indices {
                    for j in models.indices where j > i {
                        comparisons.append(Findings.compare(models[i], series[models[i]]!, models[j],
                                                            series[models[j]]!, metric: metric))
                    }
                }
            }
        }
        self.comparisons = comparisons.filter { !$0.contexts.isEmpty }

        // Longest context.
        var longest: [LongestContext] = []
        var searched: [SeriesKey: MaxContextResult] = [:]
        for m in data.maxContexts {
            searched[SeriesKey(model: m.model, configuration: Configuration(batch: m.batch, backend: m.backend,
                                                                              dtype: m.dtype))] = m
        }
        for key in keys {
            if let m = searched[key] {
                longest.append(LongestContext(key: key, tokens: m.tokens,
                                              source: .search(reachedLimit: m.reachedSearchLimit,
                                                              memoryLimitBytes: m.memoryLimitBytes, method: m.method)))
            } else if let largest = data.points.filter({ SeriesKey($0.config) == key }).map(\.config.context).max() {
                longest.append(LongestContext(key: key, tokens: largest, source: .measured))
            }
        }
        longestContexts = longest

        var ratios: [ContextRatio] = []
        for configuration in configurations {
            let group = longest.filter { $0.key.configuration == configuration }
            guard group.count > 1, let best = group.max(by: { $0.tokens < $1.tokens }),
                  let worst = group.min(by: { $0.tokens < $1.tokens }), worst.tokens > 0, best.key != worst.key
            else { continue }
            let bound: ContextRatio.Bound
            switch (best.isLowerBound, worst.isLowerBound) {
            case (false, false): bound = .exact
            case (true, false): bound = .atLeast
            case (false, true): bound = .atMost
            case (true, true): continue  // two lower bounds say nothing about the ratio
            }
            ratios.append(ContextRatio(larger: best, smaller: worst, ratio: Double(best.tokens) / Double(worst.tokens),
                                       bound: bound))
        }
        contextRatios = ratios

        // Dominant operator category at the largest profiled context.
        var dominant: [DominantCategory] = []
        for key in keys {
            let profiled = data.points.filter {
                SeriesKey($0.config) == key && PointResult.byCategory($0.prefillBreakdown).values.contains { $0 > 0 }
            }
            guard let context = profiled.map(\.config.context).max() else { continue }
            let atContext = profiled.filter { $0.config.context == context }
            var sum: [OpCategory: Double] = [:]
            for p in atContext {
                for (c, t) in PointResult.byCategory(p.prefillBreakdown) { sum[c, default: 0] += t }
            }
            let total = sum.values.reduce(0, +)
            guard total > 0, let top = sum.max(by: { ($0.value, $1.key) < ($1.value, $0.key) }) else { continue }
            let count = Double(atContext.count)
            dominant.append(DominantCategory(key: key, context: context, category: top.key, share: top.value / total,
                                             seconds: top.value / count, totalSeconds: total / count))
        }
        dominantCategories = dominant

        // Measured against predicted.
        var predictions: [String: ReportData.Prediction] = [:]
        for p in data.predictions where predictions["\(p.model)|\(p.context)|\(p.batch)"] == nil {
            predictions["\(p.model)|\(p.context)|\(p.batch)"] = p
        }
        var errors: [PredictionError] = []
        if !predictions.isEmpty {
            for key in keys {
                var ttft: [Double] = [], tpot: [Double] = []
                for point in data.points where SeriesKey(point.config) == key {
                    guard let p = predictions["\(point.config.model)|\(point.config.context)|\(point.config.batch)"]
                    else { continue }
                    if let t = p.ttftSeconds, t > 0 { ttft.append(abs(point.ttft.median / t - 1)) }
                    if let t = p.tpotSeconds, t > 0 { tpot.append(abs(point.tpot.median / t - 1)) }
                }
                guard !ttft.isEmpty || !tpot.isEmpty else { continue }
                errors.append(PredictionError(key: key, ttft: ttft.isEmpty ? nil : Findings.median(ttft),
                                              tpot: tpot.isEmpty ? nil : Findings.median(tpot),
                                              ttftPoints: ttft.count, tpotPoints: tpot.count))
            }
        }
        predictionErrors = errors
    }

    // MARK: - Labels and sentences

    /// The series' name in charts and sentences: the model, plus the batch, backend or dtype when those vary.
    public func label(_ key: SeriesKey) -> String {
        let suffix = configurationLabel(key.configuration)
        return suffix.isEmpty ? key.model : key.model + " " + suffix
    }

    /// The parts of a configuration that vary in the data ("B=4 cpu/fp32"), or "".
    public func configurationLabel(_ c: Configuration) -> String {
        var parts: [String] = []
        if showsBatch { parts.append("B=\(c.batch)") }
        if showsBackend && showsDtype {
            parts.append("\(c.backend)/\(c.dtype)")
        } else if showsBackend {
            parts.append(c.backend)
        } else if showsDtype {
            parts.append(c.dtype)
        }
        return parts.joined(separator: " ")
    }

    /// The findings in words, one sentence each: crossovers, context reach, dominant operators, prediction error.
    public func sentences() -> [String] {
        var out: [String] = []
        // Crossovers; one sentence for TTFT and TPOT when both cross at the same (rounded) context.
        var crossings: [(beyond: String, before: String, tokens: String, configuration: Configuration,
                         metrics: [Metric])] = []
        for c in comparisons {
            for x in c.crossovers {
                let tokens = Findings.tokenText(x.tokens)
                if let i = crossings.firstIndex(where: {
                    $0.beyond == x.fasterBeyond && $0.before == x.fasterBefore && $0.tokens == tokens
                        && $0.configuration == x.configuration && !$0.metrics.contains(x.metric)
                }) {
                    crossings[i].metrics.append(x.metric)
                } else {
                    crossings.append((x.fasterBeyond, x.fasterBefore, tokens, x.configuration, [x.metric]))
                }
            }
        }
        for c in crossings {
            out.append("\(c.beyond) becomes faster than \(c.before) beyond ~\(c.tokens) tokens "
                + "(\(tag(c.metrics, c.configuration)))")
        }
        // Pairs whose faster model never changes, one sentence for both metrics when they agree.
        var steady: [(faster: String, slower: String, contexts: [Int], configuration: Configuration,
                      metrics: [Metric])] = []
        for c in comparisons where c.crossovers.isEmpty {
            guard let faster = c.fasterThroughout else { continue }
            let slower = faster == c.first ? c.second : c.first
            if let i = steady.firstIndex(where: {
                $0.faster == faster && $0.slower == slower && $0.contexts == c.contexts
                    && $0.configuration == c.configuration
            }) {
                steady[i].metrics.append(c.metric)
            } else {
                steady.append((faster, slower, c.contexts, c.configuration, [c.metric]))
            }
        }
        if steady.count <= Findings.maxSteadySentences {
            for s in steady {
                let range = s.contexts.count > 1
                    ? "at every measured context (\(Findings.tokenText(s.contexts.first!))"
                        + "\u{2013}\(Findings.tokenText(s.contexts.last!)))"
                    : "at \(Findings.tokenText(s.contexts[0]))"
                out.append("\(s.faster) is faster than \(s.slower) \(range), no crossover "
                    + "(\(tag(s.metrics, s.configuration)))")
            }
        } else {
            // Many models: one sentence instead of one per pair.
            let metrics = Metric.allCases.filter { m in steady.contains { $0.metrics.contains(m) } }
            out.append("\(steady.count) other pairs of models keep the same faster model at every context both were "
                + "measured at (\(metrics.map { $0.rawValue.uppercased() }.joined(separator: ", ")))")
        }
        for r in contextRatios {
            let ratio = Format.significant(r.ratio, 2)
            let larger = Findings.tokenText(r.larger.tokens), smaller = Findings.tokenText(r.smaller.tokens)
            let where_ = configurationLabel(r.larger.key.configuration)
            let suffix = where_.isEmpty ? "" : ", \(where_)"
            switch r.bound {
            case .exact:
                out.append("\(r.larger.key.model) fits \(ratio)x the context of \(r.smaller.key.model) "
                    + "(\(larger) vs \(smaller) tokens\(suffix))")
            case .atLeast:
                out.append("\(r.larger.key.model) fits at least \(ratio)x the context of \(r.smaller.key.model) "
                    + "(at least \(larger) vs \(smaller) tokens\(suffix))")
            case .atMost:
                out.append("\(r.larger.key.model) fits at most \(ratio)x the context of \(r.smaller.key.model) "
                    + "(\(larger) vs at least \(smaller) tokens\(suffix))")
            }
        }
        // The searched longest contexts, when no ratio sentence already gives them.
        let inRatios = Set(contextRatios.flatMap { [$0.larger.key, $0.smaller.key] })
        for l in longestContexts where !inRatios.contains(l.key) {
            switch l.source {
            case .search(let reached, let limit, _):
                if l.tokens == 0 {
                    out.append("\(label(l.key)) does not fit at all in \(SVGChart.compactBytes(Double(limit)))")
                } else if reached {
                    out.append("\(label(l.key)) fits at least \(Findings.tokenText(l.tokens)) tokens "
                        + "(search limit reached)")
                } else {
                    out.append("\(label(l.key)) fits up to \(Findings.tokenText(l.tokens)) tokens in "
                        + "\(SVGChart.compactBytes(Double(limit)))")
                }
            case .measured:
                continue  // the largest measured context alone is not a finding
            }
        }
        for d in dominantCategories {
            out.append("\(d.category.rawValue) takes \(Format.fixed(d.share * 100, 0))% of \(label(d.key))'s "
                + "prefill at \(Findings.tokenText(d.context))")
        }
        for e in predictionErrors {
            var parts: [String] = []
            if let t = e.ttft {
                parts.append("\(Findings.percent(t)) for TTFT (\(e.ttftPoints) point\(e.ttftPoints == 1 ? "" : "s"))")
            }
            if let t = e.tpot {
                parts.append("\(Findings.percent(t)) for TPOT (\(e.tpotPoints) point\(e.tpotPoints == 1 ? "" : "s"))")
            }
            out.append("\(label(e.key)) is off the cost-model prediction (\(predictionEfficiencies)) by a median "
                + parts.joined(separator: " and "))
        }
        return out
    }

    private func tag(_ metrics: [Metric], _ c: Configuration) -> String {
        let configuration = configurationLabel(c)
        return metrics.map { $0.rawValue.uppercased() }.joined(separator: " and ")
            + (configuration.isEmpty ? "" : ", " + configuration)
    }

    // MARK: - Helpers shared with the report

    /// Above this many pairs without a crossover, `sentences()` sums them up in one sentence.
    static let maxSteadySentences = 4

    /// A context length for sentences: exact powers-of-two multiples as "4K"/"1M", else two significant digits.
    static func tokenText(_ n: Int) -> String {
        let exact = Format.tokens(n)
        return exact != String(n) || n < 1000 ? exact : Format.count(Double(n), significant: 2)
    }

    static func tokenText(_ x: Double) -> String {
        x < 1000 ? String(Int(x.rounded())) : Format.count(x, significant: 2)
    }

    static func percent(_ fraction: Double) -> String {
        let p = fraction * 100
        return (p < 10 ? Format.fixed(p, 1) : Format.fixed(p, 0)) + "%"
    }

    static func median(_ values: [Double]) -> Double {
        let s = values.sorted()
        guard !s.isEmpty else { return .nan }
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    static func unique<T: Hashable>(_ values: [T]) -> [T] {
        var seen: Set<T> = []
        return values.filter { seen.insert($0).inserted }
    }

    /// Per series, (context, value) ascending by context; repeated points at a context are merged by their median.
    static func series(_ points: [PointResult], _ value: (PointResult) -> Double)
        -> [SeriesKey: [(context: Int, value: Double)]] {
        var raw: [SeriesKey: [Int: [Double]]] = [:]
        for p in points {
            let v = value(p)
            guard v.isFinite else { continue }
            raw[SeriesKey(p.config), default: [:]][p.config.context, default: []].append(v)
        }
        return raw.mapValues { byContext in
            byContext.map { (context: $0.key, value: median($0.value)) }.sorted { $0.context < $1.context }
        }
    }

    /// Where the faster of `a` and `b` changes, over the contexts both were measured at.
    static func compare(_ a: SeriesKey, _ av: [(context: Int, value: Double)], _ b: SeriesKey,
                        _ bv: [(context: Int, value: Double)], metric: Metric) -> Comparison {
        let bByContext = Dictionary(bv.map { ($0.context, $0.value) }, uniquingKeysWith: { x, _ in x })
        // ln(a / b): positive where b is faster.
        var ratios: [(context: Int, r: Double)] = []
        for (context, value) in av {
            guard let other = bByContext[context], value > 0, other > 0 else { continue }
            ratios.append((context, MathLite.ln(value / other)))
        }
        var crossovers: [Crossover] = []
        var previous: (context: Int, r: Double)?
        var zeroAt: Int?
        for current in ratios {
            if current.r == 0 {
                if previous != nil, zeroAt == nil { zeroAt = current.context }
                continue
            }
            if let p = previous, (p.r > 0) != (current.r > 0) {
                let tokens: Double
                let lower: Int
                if let z = zeroAt {
                    tokens = Double(z)
                    lower = p.context
                } else {
                    let t = p.r / (p.r - current.r)
                    let l0 = MathLite.ln(Double(p.context)), l1 = MathLite.ln(Double(current.context))
                    tokens = MathLite.exp(l0 + t * (l1 - l0))
                    lower = p.context
                }
                let aFasterBeyond = current.r < 0
                crossovers.append(Crossover(metric: metric, configuration: a.configuration, tokens: tokens,
                                            fasterBeyond: aFasterBeyond ? a.model : b.model,
                                            fasterBefore: aFasterBeyond ? b.model : a.model, lowerContext: lower,
                                            upperContext: current.context))
            }
            previous = current
            zeroAt = nil
        }
        var throughout: String?
        if crossovers.isEmpty {
            if ratios.allSatisfy({ $0.r < 0 }) && !ratios.isEmpty { throughout = a.model }
            if ratios.allSatisfy({ $0.r > 0 }) && !ratios.isEmpty { throughout = b.model }
        }
        return Comparison(metric: metric, configuration: a.configuration, first: a.model, second: b.model,
                          contexts: ratios.map(\.context), crossovers: crossovers, fasterThroughout: throughout)
    }
}
