import ScopeBench
import ScopeCost
import ScopeSupport

/// Text tables of measured points, breakdowns and run comparisons.
public enum ResultTables {
    /// One row per point, then the failures.
    public static func points(_ points: [PointResult], failures: [PointFailure]) -> String {
        let showEnergy = points.contains { $0.energy != nil }
        let showFloor = points.contains { $0.decodeFloorFraction != nil }
        var table = TextTable(header: ["model", "context", "batch", "G", "TTFT", "+/-", "TPOT"]
                                  + (showFloor ? ["floor/TPOT"] : [])
                                  + ["e2e", "prefill tok/s", "decode tok/s", "peak engine", "peak RSS"]
                                  + (showEnergy ? ["J/prefill", "J/token", "avg W"] : []),
                              rightAligned: Set(1...(11 + (showEnergy ? 3 : 0) + (showFloor ? 1 : 0))))
        for p in points {
            let c = p.config
            table.rows.append([c.model, Format.tokens(c.context), String(c.batch), String(c.generate),
                               Format.duration(p.ttft.median), Format.duration(p.ttft.stddev),
                               Format.duration(p.tpot.median)]
                + (showFloor ? [p.decodeFloorFraction.map(Self.percent) ?? ""] : [])
                + [Format.duration(p.endToEnd.median),
                               Format.count(p.prefillTokensPerSecond), Format.count(p.decodeTokensPerSecond),
                               Format.bytes(Double(p.peakEngineBytes)), Format.bytes(Double(p.peakProcessBytes))]
                + (showEnergy ? p.energy.map { e in
                    [Format.significant(e.joulesPerPrefill), Format.significant(e.joulesPerToken),
                     Format.fixed(e.averageWatts, 0)]
                } ?? ["", "", ""] : []))
        }
        var text = table.render()
        if !failures.isEmpty {
            var failed = TextTable(header: ["failed point", "reason"])
            for f in failures { failed.rows.append([f.config.label, (f.outOfMemory ? "OOM: " : "") + f.reason]) }
            text += "\n\n" + failed.render()
        }
        return text
    }

    /// A decode floor fraction as a percentage ("48%").
    public static func percent(_ fraction: Double) -> String { Format.fixed(100 * fraction, 0) + "%" }

    /// Time by operator kind and by category, for prefill and for one decode step.
    public static func breakdown(_ p: PointResult) -> String {
        var sections: [String] = ["\(p.config.label): TTFT \(Format.duration(p.ttft.median)), "
            + "TPOT \(Format.duration(p.tpot.median))"]
        for (phase, breakdown) in [("prefill", p.prefillBreakdown), ("decode step", p.decodeBreakdown)] {
            let total = breakdown.values.reduce(0, +)
            guard total > 0 else { continue }
            var byKind = TextTable(header: ["\(phase): operator", "category", "time", "share"], rightAligned: [2, 3])
            for (kind, t) in breakdown.sorted(by: { $0.value > $1.value }) {
                byKind.rows.append([kind, OperatorKind(rawValue: kind)?.category.rawValue ?? "?", Format.duration(t),
                                    Format.fixed(100 * t / total, 1) + "%"])
            }
            var byCategory = TextTable(header: ["\(phase): category", "time", "share"], rightAligned: [1, 2])
            for (category, t) in PointResult.byCategory(breakdown).sorted(by: { $0.value > $1.value }) {
                byCategory.rows.append([category.rawValue, Format.duration(t), Format.fixed(100 * t / total, 1) + "%"])
            }
            sections += [byKind.render(), byCategory.render()]
        }
        return sections.joined(separator: "\n\n")
    }

    /// Points of two runs matched by (model, context, batch, generation length, backend, dtype), with B/A ratios.
    public static func compare(_ a: [PointResult], _ b: [PointResult], labels: (String, String)) -> String {
        func key(_ c: PointConfig) -> String { "\(c.model)|\(c.context)|\(c.batch)|\(c.generate)" }
        let right = Dictionary(b.map { (key($0.config), $0) }, uniquingKeysWith: { first, _ in first })
        var table = TextTable(header: ["model", "context", "batch", "TTFT \(labels.0)", "TTFT \(labels.1)", "ratio",
                                       "TPOT \(labels.0)", "TPOT \(labels.1)", "ratio", "peak \(labels.0)",
                                       "peak \(labels.1)"], rightAligned: Set(1...10))
        var matched = 0
        for p in a {
            guard let q = right[key(p.config)] else { continue }
            matched += 1
            table.rows.append([p.config.model, Format.tokens(p.config.context), String(p.config.batch),
                               Format.duration(p.ttft.median), Format.duration(q.ttft.median),
                               Format.fixed(q.ttft.median / p.ttft.median, 2) + "x",
                               Format.duration(p.tpot.median), Format.duration(q.tpot.median),
                               Format.fixed(q.tpot.median / p.tpot.median, 2) + "x",
                               Format.bytes(Double(p.peakEngineBytes)), Format.bytes(Double(q.peakEngineBytes))])
        }
        return matched == 0 ? "no points in common (same model, context, batch and generation length)"
            : table.render() + "\nratio = \(labels.1) / \(labels.0); below 1 means \(labels.1) is faster"
    }
}
