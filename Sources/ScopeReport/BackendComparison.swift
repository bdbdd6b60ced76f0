import ScopeBench
import ScopeSupport

/// The report section that puts the same points measured on different backends side by side (e.g. ssm-scope's
/// own engine against PyTorch / Hugging Face), with ratios and the code path each backend ran.
public enum BackendComparison {
    public static let title = "Backend comparison"

    /// The backends of `points` in the order the table uses: the first that is not "torch" is the reference, the
    /// others follow in order of appearance.
    static func backends(_ points: [PointResult]) -> [String] {
        var seen = Set<String>()
        let all = points.map(\.config.backend).filter { seen.insert($0).inserted }
        guard let reference = all.first(where: { $0 != "torch" }) ?? all.first else { return [] }
        return [reference] + all.filter { $0 != reference }
    }

    /// The `<h2>` section: one table per backend against the reference, matching points by model, context, batch,
    /// generation length and dtype; empty when the points come from fewer than two backends.
    public static func html(_ data: ReportData) -> String {
        let order = backends(data.points)
        guard order.count > 1 else { return "" }
        let reference = order[0]
        func key(_ c: PointConfig) -> String { "\(c.model)|\(c.context)|\(c.batch)|\(c.generate)|\(c.dtype)" }
        let referencePoints = Dictionary(data.points.filter { $0.config.backend == reference }.map { (key($0.config), $0) },
                                         uniquingKeysWith: { first, _ in first })
        var h = "<h2>\(HTMLReport.esc(title))</h2>\n"
        for other in order.dropFirst() {
            let pairs = data.points.filter { $0.config.backend == other }
                .compactMap { p in referencePoints[key(p.config)].map { ($0, p) } }
                .sorted { ($0.0.config.model, $0.0.config.context, $0.0.config.batch)
                    < ($1.0.config.model, $1.0.config.context, $1.0.config.batch) }
            h += "<h3>\(HTMLReport.esc("\(other) against \(reference)"))</h3>\n"
            guard !pairs.isEmpty else {
                h += HTMLReport.note("No point was measured on both \(reference) and \(other) (same model, context, "
                    + "batch, generation length and dtype).")
                continue
            }
            let header = ["model", "context", "batch", "G", "dtype", "TTFT \(reference)", "TTFT \(other)", "ratio",
                          "TPOT \(reference)", "TPOT \(other)", "ratio", "peak \(reference)", "peak \(other)"]
            h += HTMLReport.table(header: header, numeric: Set(1...12).subtracting([4]), classes: [0: "nowrap"],
                                  rows: pairs.map { a, b in
                [a.config.model, Format.tokens(a.config.context), String(a.config.batch), String(a.config.generate),
                 a.config.dtype, Format.duration(a.ttft.median), Format.duration(b.ttft.median),
                 Format.fixed(b.ttft.median / a.ttft.median, 2) + "\u{00d7}", Format.duration(a.tpot.median),
                 Format.duration(b.tpot.median), Format.fixed(b.tpot.median / a.tpot.median, 2) + "\u{00d7}",
                 Format.bytes(Double(a.peakEngineBytes)), Format.bytes(Double(b.peakEngineBytes))].map(HTMLReport.esc)
            })
            h += HTMLReport.note("ratio = \(other) / \(reference); below 1 means \(other) is faster.")
        }
        h += "<h3>Code paths</h3>\n<ul>\n"
        var seen = Set<String>()
        for backend in order {
            for p in data.points where p.config.backend == backend && seen.insert("\(backend)|\(p.config.model)").inserted {
                h += "<li><b>\(HTMLReport.esc(backend))</b> \(HTMLReport.esc(p.config.model)): "
                    + "\(HTMLReport.esc(p.notes))</li>\n"
            }
        }
        return h + "</ul>\n"
    }
}
