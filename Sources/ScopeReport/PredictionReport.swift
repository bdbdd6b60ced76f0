#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import ScopeCost
import ScopeModels
import ScopeSupport

/// Output formats of tabular commands.
public enum OutputFormat: String, CaseIterable, Sendable {
    case table, json, csv
}

/// Predictions for several models over several contexts on one device, with the max-context and crossover summary.
public struct PredictionReport: Sendable {
    /// One model at one context: the flat record behind every output format.
    public struct Row: Sendable, Codable, Hashable {
        public var model: String
        public var device: String
        public var dtype: String
        public var batch: Int
        public var context: Int
        public var fits: Bool
        public var ttftSeconds: Double?
        public var tpotSeconds: Double?
        public var prefillTokensPerSecond: Double?
        public var decodeTokensPerSecond: Double?
        public var prefillPeakBytes: Double
        public var weightsBytes: Double
        public var cacheBytes: Double
        public var activationBytes: Double
        /// Share of predicted prefill time by category (absent when it does not fit).
        public var prefillShare: [String: Double]
    }

    public struct ModelSummary: Sendable, Codable, Hashable {
        public var model: String
        public var maxContext: Int
        public var maxContextAtSearchLimit: Bool
        public var limitedBy: String
    }

    public struct CrossoverSummary: Sendable, Codable, Hashable {
        public var metric: String
        public var tokens: Int
        public var fasterBeyond: String
        public var fasterBefore: String
    }

    public var device: Device
    public var assumptions: ExecutionAssumptions
    public var usableMemory: Double
    public var rows: [Row]
    public var maxContexts: [ModelSummary]
    public var crossovers: [CrossoverSummary]

    /// Runs the predictions. Crossovers are searched between each pair of models over [128, 4 x largest context].
    public init(models: [ModelSpec], contexts: [Int], batch: Int, predictor: Predictor) {
        device = predictor.device
        assumptions = predictor.assumptions
        usableMemory = predictor.usableMemory
        rows = []
        for spec in models {
            for context in contexts {
                let p = predictor.predict(spec, context: context, batch: batch)
                let memory = p.prefillMemory
                var share: [String: Double] = [:]
                if let prefill = p.prefill, prefill.seconds > 0 {
                    for (category, t) in prefill.secondsByCategory { share[category.rawValue] = t / prefill.seconds }
                }
                rows.append(Row(model: spec.name, device: predictor.device.id,
                                dtype: predictor.precision.weights.rawValue, batch: batch, context: context,
                                fits: p.fits, ttftSeconds: p.ttft, tpotSeconds: p.tpot,
                                prefillTokensPerSecond: p.prefillTokensPerSecond,
                                decodeTokensPerSecond: p.decodeTokensPerSecond, prefillPeakBytes: memory.total,
                                weightsBytes: memory.weights, cacheBytes: memory.cache,
                                activationBytes: memory.activations, prefillShare: share))
            }
        }
        maxContexts = models.map { spec in
            let m = predictor.maxContext(spec, batch: batch)
            return ModelSummary(model: spec.name, maxContext: m.tokens, maxContextAtSearchLimit: m.reachedSearchLimit,
                                limitedBy: m.limitedBy)
        }
        crossovers = []
        let highest = 4 * (contexts.max() ?? 1024)
        for i in models.indices {
            for j in models.indices where j > i {
                for metric in Metric.allCases {
                    for c in predictor.crossovers(models[i], models[j], metric: metric, batch: batch,
                                                  highest: highest) {
                        crossovers.append(CrossoverSummary(metric: metric.rawValue, tokens: c.tokens,
                                                           fasterBeyond: c.fasterBeyond, fasterBefore: c.fasterBefore))
                    }
                }
            }
        }
    }

    /// The report in `format`.
    public func render(_ format: OutputFormat) throws -> String {
        switch format {
        case .table: return table() + "\n\n" + summary()
        case .csv: return csv()
        case .json: return try json()
        }
    }

    public func table() -> String {
        var t = TextTable(header: ["model", "context", "TTFT", "TPOT", "prefill tok/s", "decode tok/s", "peak memory",
                                   "fits", "top prefill category"], rightAligned: [1, 2, 3, 4, 5, 6])
        for r in rows {
            let top = r.prefillShare.max { $0.value < $1.value }
                .map { "\($0.key) \(Format.fixed($0.value * 100, 0))%" } ?? ""
            t.rows.append([
                r.model, Format.tokens(r.context), r.ttftSeconds.map(Format.duration) ?? "OOM",
                r.tpotSeconds.map(Format.duration) ?? "OOM",
                r.prefillTokensPerSecond.map { Format.count($0) } ?? "-",
                r.decodeTokensPerSecond.map { Format.count($0) } ?? "-",
                Format.bytes(r.prefillPeakBytes), r.fits ? "yes" : "no", top,
            ])
        }
        return "device \(device.id) (\(device.name)), usable memory \(Format.bytes(usableMemory)) after reserve; "
            + "\(assumptions.summary)\n" + t.render()
    }

    /// Max context per model and the crossovers, as sentences.
    public func summary() -> String {
        var lines = ["longest context that fits (\(Format.bytes(usableMemory)) usable on \(device.id)):"]
        for m in maxContexts {
            let value = m.maxContext == 0 ? "does not fit at all (weights)"
                : (m.maxContextAtSearchLimit ? "more than \(Format.count(Double(m.maxContext))) tokens (memory does not grow with context)"
                    : "\(m.maxContext) tokens (~\(Format.count(Double(m.maxContext)))), limited by \(m.limitedBy)")
            lines.append("  \(m.model): \(value)")
        }
        if maxContexts.count > 1, let best = maxContexts.max(by: { $0.maxContext < $1.maxContext }),
           let worst = maxContexts.min(by: { $0.maxContext < $1.maxContext }), worst.maxContext > 0 {
            let ratio = Double(best.maxContext) / Double(worst.maxContext)
            lines.append("  \(best.model) fits \(Format.significant(ratio, 2))x the context of \(worst.model)"
                + (best.maxContextAtSearchLimit ? " (at least)" : ""))
        }
        lines.append("crossovers:")
        if crossovers.isEmpty {
            lines.append("  none: the faster model does not change between 128 tokens and "
                + "\(Format.tokens(4 * (rows.map(\.context).max() ?? 1024)))")
        }
        for c in crossovers {
            lines.append("  \(c.metric.uppercased()): \(c.fasterBeyond) becomes faster than \(c.fasterBefore) beyond "
                + "~\(c.tokens) tokens")
        }
        return lines.joined(separator: "\n")
    }

    public func csv() -> String {
        let categories = OpCategory.allCases.map(\.rawValue)
        var lines = [(["model", "device", "dtype", "batch", "context", "fits", "ttft_s", "tpot_s", "prefill_tok_s",
                       "decode_tok_s", "prefill_peak_bytes", "weights_bytes", "cache_bytes", "activation_bytes"]
                      + categories.map { "prefill_share_\($0)" }).joined(separator: ",")]
        for r in rows {
            let fields: [String] = [
                r.model, r.device, r.dtype, String(r.batch), String(r.context), String(r.fits),
                optional(r.ttftSeconds), optional(r.tpotSeconds), optional(r.prefillTokensPerSecond),
                optional(r.decodeTokensPerSecond), number(r.prefillPeakBytes), number(r.weightsBytes),
                number(r.cacheBytes), number(r.activationBytes),
            ] + categories.map { optional(r.prefillShare[$0]) }
            lines.append(fields.joined(separator: ","))
        }
        return lines.joined(separator: "\n")
    }

    public func json() throws -> String {
        struct Document: Encodable {
            var device: Device
            var assumptions: ExecutionAssumptions
            var usableMemoryBytes: Double
            var points: [Row]
            var maxContext: [ModelSummary]
            var crossovers: [CrossoverSummary]
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try encoder.encode(Document(device: device, assumptions: assumptions,
                                               usableMemoryBytes: usableMemory, points: rows,
                                               maxContext: maxContexts, crossovers: crossovers))
        return String(decoding: data, as: UTF8.self)
    }

    private func optional(_ x: Double?) -> String { x.map(number) ?? "" }
    private func number(_ x: Double) -> String { x == x.rounded() && abs(x) < 1e15 ? String(Int(x)) : String(x) }
}
