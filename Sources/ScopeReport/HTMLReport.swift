import ScopeBench
import ScopeCost
import ScopeSupport

/// One self-contained HTML page (inline CSS and SVG; no scripts, fonts or network references) from `ReportData`.
public enum HTMLReport {
    /// The section headings, in order (each appears as an `<h2>`).
    public static let sectionTitles = [
        "Summary", "Runs", "Time to first token vs context", "Time per output token vs context",
        "Peak memory vs context", "Max context per model", "Operator breakdown", "Measured vs predicted",
        "Points", "Failures",
    ]

    public static func render(_ data: ReportData) -> String {
        let findings = Findings(data)
        let charts = ReportCharts(data: data, findings: findings)
        var h = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            + "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            + "<title>\(esc(data.title))</title>\n<style>\n\(css)</style>\n</head>\n<body>\n<main>\n"
        h += "<h1>\(esc(data.title))</h1>\n"
        let models = Findings.unique(findings.keys.map(\.model))
        h += "<p class=\"subtitle\">\(data.runs.count) run\(plural(data.runs.count)) \u{00b7} "
            + "\(models.count) model\(plural(models.count)) \u{00b7} \(data.points.count) measured "
            + "point\(plural(data.points.count)) \u{00b7} \(data.failures.count) failure\(plural(data.failures.count))"
            + "</p>\n"

        // Summary.
        h += "<section class=\"summary\">\n<h2>\(sectionTitles[0])</h2>\n"
        let sentences = findings.sentences()
        if sentences.isEmpty {
            h += note("Nothing to summarise: no measured points, max-context results or predictions.")
        } else {
            h += "<ul>\n" + sentences.map { "<li>\(esc($0))</li>\n" }.joined() + "</ul>\n"
        }
        h += "</section>\n"

        // Runs.
        h += "<h2>\(sectionTitles[1])</h2>\n"
        if data.runs.isEmpty {
            h += note("No runs recorded.")
        } else {
            h += table(
                header: ["run", "device", "driver", "OS", "CPU", "backend", "dtype", "git revision", "command line",
                         "started (UTC)", "status"],
                numeric: [0], classes: [7: "nowrap", 8: "wide", 9: "nowrap"],
                rows: data.runs.sorted { $0.id < $1.id }.map { r in
                    let e = r.environment
                    let status = r.status == "complete" ? "<span class=\"ok\">complete</span>"
                        : "<span class=\"warn\">\(esc(r.status))</span>"
                    return [esc(String(r.id)), esc(e.device), esc(e.driver.isEmpty ? "\u{2013}" : e.driver),
                            esc(e.os), esc(e.cpu), esc(e.backend), esc(e.dtype), "<code>\(esc(e.gitRevision))</code>",
                            "<code>\(esc(e.commandLine))</code>", esc(e.startedAt), status]
                })
        }

        // Latency charts.
        h += "<h2>\(sectionTitles[2])</h2>\n"
        h += charts.latency(.ttft).map {
            figure($0, "Median time to first token (one prefill of the whole context) on log-log axes; whiskers "
                + "span \u{00b1}1 standard deviation; \u{00d7} marks points that failed, drawn on the top edge; "
                + "dashed vertical lines mark measured crossovers.")
        } ?? note("No measured points.")
        h += "<h2>\(sectionTitles[3])</h2>\n"
        h += charts.latency(.tpot).map {
            figure($0, "Median time per output token of decode steps at each context, log-log; \u{00d7} marks "
                + "failed points; dashed vertical lines mark measured crossovers.")
        } ?? note("No measured points.")

        // Memory.
        h += "<h2>\(sectionTitles[4])</h2>\n"
        h += charts.memory().map {
            figure($0, "Engine high-water mark over prefill and decode (from the backend's allocator)"
                + (data.memoryCapacityBytes != nil ? "; the dotted red line is the device memory (or the run's "
                    + "memory limit)" : "") + "; \u{00d7} marks points that ran out of memory.")
        } ?? note("No measured points.")

        // Max context.
        h += "<h2>\(sectionTitles[5])</h2>\n"
        h += charts.maxContext().map { chart in
            let limits = Findings.unique(data.maxContexts.map(\.memoryLimitBytes)).sorted()
            let searched = limits.isEmpty ? "No max-context search was run: bars show the largest measured context "
                + "(a lower bound)." : "Longest prompt whose prefill and one decode step fit under "
                + limits.map { SVGChart.compactBytes(Double($0)) }.joined(separator: ", ")
                + "; models without a search show their largest measured context."
            return figure(chart, searched + " Hatched bars are lower bounds (search limit reached, or only measured).")
        } ?? note("No max-context results and no measured points.")

        // Operator breakdown.
        h += "<h2>\(sectionTitles[6])</h2>\n"
        let prefill = charts.breakdown(decode: false), decode = charts.breakdown(decode: true)
        if prefill == nil && decode == nil {
            h += note("No operator breakdown (points were measured without the profiling pass).")
        } else {
            h += "<h3>Prefill</h3>\n" + (prefill.map {
                figure($0, "Share of one prefill's time by operator category, per model and context; the total "
                    + "profiled prefill time is at the right.")
            } ?? note("No prefill breakdown."))
            h += "<h3>Decode</h3>\n" + (decode.map {
                figure($0, "Share of one decode step's time by operator category, per model and context; the "
                    + "profiled time per step is at the right.")
            } ?? note("No decode breakdown."))
        }

        // Measured vs predicted.
        h += "<h2>\(sectionTitles[7])</h2>\n"
        let predictedTTFT = charts.predicted(.ttft), predictedTPOT = charts.predicted(.tpot)
        if predictedTTFT == nil && predictedTPOT == nil {
            h += note("No cost-model predictions for the measured models.")
        } else {
            let caption = "Measured medians (solid) against the cost model's predictions for the run's device "
                + "with \(data.predictionEfficiencies) (dashed, hollow markers); \u{00d7} on a dashed series: "
                + "predicted not to fit."
            h += "<h3>TTFT</h3>\n" + (predictedTTFT.map { figure($0, caption) } ?? note("No TTFT predictions."))
            h += "<h3>TPOT</h3>\n" + (predictedTPOT.map { figure($0, caption) } ?? note("No TPOT predictions."))
        }

        // Points.
        h += "<h2>\(sectionTitles[8])</h2>\n"
        let showConfig = findings.showsBackend || findings.showsDtype
        if data.points.isEmpty {
            h += note("No measured points.")
        } else {
            var header = ["model", "context", "batch", "G"]
            if showConfig { header.append("backend/dtype") }
            let showFloor = data.points.contains { $0.decodeFloorFraction != nil }
            header += ["TTFT (median \u{00b1} sd)", "TPOT (median)"] + (showFloor ? ["decode floor / TPOT"] : [])
                + ["end-to-end", "prefill tok/s", "decode tok/s", "peak engine memory", "peak RSS"]
            let showEnergy = data.points.contains { $0.energy != nil }
            if showEnergy { header += ["J / prefill", "J / token", "avg / peak W"] }
            header.append("notes")
            let offset = (showConfig ? 1 : 0) + (showEnergy ? 3 : 0) + (showFloor ? 1 : 0)
            let numeric = Set([1, 2, 3] + Array(4 + (showConfig ? 1 : 0)...10 + offset))
            h += table(header: header, numeric: numeric, classes: [0: "nowrap", header.count - 1: "wide"],
                       rows: sortedPoints(data, findings).map { p in
                var row = [esc(p.config.model), esc(Format.tokens(p.config.context)), String(p.config.batch),
                           String(p.config.generate)]
                if showConfig { row.append(esc("\(p.config.backend)/\(p.config.dtype)")) }
                row += [esc(ttftText(p)), esc(Format.duration(p.tpot.median))]
                    + (showFloor ? [esc(p.decodeFloorFraction.map(ResultTables.percent) ?? "")] : [])
                row += [esc(Format.duration(p.endToEnd.median)),
                        esc(Format.count(p.prefillTokensPerSecond)), esc(Format.count(p.decodeTokensPerSecond)),
                        esc(Format.bytes(Double(p.peakEngineBytes))), esc(Format.bytes(Double(p.peakProcessBytes)))]
                if showEnergy {
                    row += p.energy.map { e in
                        [Format.significant(e.joulesPerPrefill), Format.significant(e.joulesPerToken),
                         Format.fixed(e.averageWatts, 0) + " / " + Format.fixed(e.peakWatts, 0)]
                    } ?? ["", "", ""]
                }
                row.append(notesCell(p.notes))
                return row
            })
        }
        // Backends side by side (only when points of several backends exist).
        h += BackendComparison.html(data)

        // Failures.
        h += "<h2>\(sectionTitles[9])</h2>\n"
        if data.failures.isEmpty {
            h += note("No failed points.")
        } else {
            var header = ["model", "context", "batch", "G"]
            if showConfig { header.append("backend/dtype") }
            header += ["kind", "reason"]
            h += table(header: header, numeric: [1, 2, 3], classes: [0: "nowrap", header.count - 1: "wide"],
                       rows: sortedFailures(data, findings).map { f in
                var row = [esc(f.config.model), esc(Format.tokens(f.config.context)), String(f.config.batch),
                           String(f.config.generate)]
                if showConfig { row.append(esc("\(f.config.backend)/\(f.config.dtype)")) }
                row += [f.outOfMemory ? "<span class=\"tag oom\">OOM</span>" : "<span class=\"tag err\">error</span>",
                        esc(f.reason)]
                return row
            })
        }
        h += "<p class=\"footer\">Generated by ssm-scope. Self-contained: no scripts and no external resources.</p>\n"
        h += "</main>\n</body>\n</html>\n"
        return h
    }

    // MARK: - Pieces

    static func esc(_ s: String) -> String { SVGChart.escape(s) }

    static func plural(_ n: Int) -> String { n == 1 ? "" : "s" }

    static func note(_ text: String) -> String { "<p class=\"note\">\(esc(text))</p>\n" }

    static func figure(_ svg: String, _ caption: String) -> String {
        "<figure>\n\(svg)\n<figcaption>\(esc(caption))</figcaption>\n</figure>\n"
    }

    /// Cells are HTML already (escaped by the caller).
    /// `classes` adds a CSS class to a column (numeric columns get "num").
    static func table(header: [String], numeric: Set<Int>, classes: [Int: String] = [:], rows: [[String]]) -> String {
        func attribute(_ i: Int) -> String {
            let names = (numeric.contains(i) ? ["num"] : []) + (classes[i].map { [$0] } ?? [])
            return names.isEmpty ? "" : " class=\"\(names.joined(separator: " "))\""
        }
        var t = "<div class=\"table-wrap\"><table>\n<thead><tr>"
        for (i, h) in header.enumerated() { t += "<th\(attribute(i))>\(esc(h))</th>" }
        t += "</tr></thead>\n<tbody>\n"
        for row in rows {
            t += "<tr>"
            for (i, cell) in row.enumerated() { t += "<td\(attribute(i))>\(cell)</td>" }
            t += "</tr>\n"
        }
        return t + "</tbody>\n</table></div>\n"
    }

    static func ttftText(_ p: PointResult) -> String {
        Format.duration(p.ttft.median) + (p.ttft.count > 1 ? " \u{00b1} " + Format.duration(p.ttft.stddev) : "")
    }

    /// Short notes as they are; long ones (the torch worker's versions and code paths) folded behind their start.
    static func notesCell(_ notes: String) -> String {
        guard notes.count > 60 else { return esc(notes) }
        return "<details><summary>\(esc(String(notes.prefix(48))))…</summary>\(esc(notes))</details>"
    }

    static func sortedPoints(_ data: ReportData, _ findings: Findings) -> [PointResult] {
        let order = Dictionary(findings.keys.enumerated().map { ($1, $0) }, uniquingKeysWith: { a, _ in a })
        return data.points.enumerated().sorted { a, b in
            let ka = order[Findings.SeriesKey(a.element.config)] ?? 0
            let kb = order[Findings.SeriesKey(b.element.config)] ?? 0
            return (ka, a.element.config.context, a.element.config.generate, a.offset)
                < (kb, b.element.config.context, b.element.config.generate, b.offset)
        }.map(\.element)
    }

    static func sortedFailures(_ data: ReportData, _ findings: Findings) -> [PointFailure] {
        let order = Dictionary(findings.keys.enumerated().map { ($1, $0) }, uniquingKeysWith: { a, _ in a })
        return data.failures.enumerated().sorted { a, b in
            let ka = order[Findings.SeriesKey(a.element.config)] ?? 0
            let kb = order[Findings.SeriesKey(b.element.config)] ?? 0
            return (ka, a.element.config.context, a.offset) < (kb, b.element.config.context, b.offset)
        }.map(\.element)
    }

    static let css = """
        body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0;
               background: #f3f4f6; color: #1d2329; line-height: 1.4; }
        main { max-width: 1180px; margin: 0 auto; padding: 24px 36px 40px; background: #ffffff; }
        h1 { font-size: 26px; margin: 0 0 4px; }
        .subtitle { color: #5a6570; margin: 0 0 18px; }
        h2 { font-size: 19px; margin: 32px 0 10px; padding-bottom: 4px; border-bottom: 1px solid #dde2e7; }
        h3 { font-size: 15px; margin: 16px 0 6px; color: #39424b; }
        .summary { background: #eef5fb; border-left: 4px solid #1f77b4; padding: 2px 18px 8px; border-radius: 4px; }
        .summary h2 { border-bottom: none; margin-top: 12px; }
        .summary ul { margin: 4px 0; padding-left: 20px; }
        .summary li { margin: 3px 0; }
        .note { color: #6a737d; font-style: italic; }
        figure { margin: 6px 0 14px; }
        figure svg { width: 100%; max-width: 940px; height: auto; display: block; }
        figcaption { font-size: 13px; color: #5a6570; margin-top: 4px; max-width: 940px; }
        .table-wrap { overflow-x: auto; }
        table { border-collapse: collapse; font-size: 13px; width: 100%; }
        th, td { padding: 4px 7px; border-bottom: 1px solid #e6e9ec; text-align: left; vertical-align: top; }
        th { background: #eef0f2; font-weight: 600; vertical-align: bottom; }
        th.num { text-align: right; }
        td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
        tbody tr:nth-child(even) td { background: #fafbfc; }
        code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12px;
               word-break: break-all; }
        .tag { display: inline-block; padding: 0 6px; border-radius: 3px; font-size: 12px; font-weight: 600; }
        .oom { background: #fde8e8; color: #a31515; }
        .err { background: #fff1d6; color: #8a5300; }
        .ok { color: #2a7a2a; }
        .warn { color: #a15c00; }
        td.nowrap { white-space: nowrap; }
        td.wide { min-width: 12em; }
        td.wide code { word-break: normal; overflow-wrap: anywhere; }
        .footer { margin-top: 32px; font-size: 12px; color: #8a939c; }

        """
}

/// The charts of the HTML report, with one colour per series across all of them.
struct ReportCharts {
    let data: ReportData
    let findings: Findings
    let colors: [Findings.SeriesKey: String]
    let shapes: [Findings.SeriesKey: SVGChart.MarkerShape]

    init(data: ReportData, findings: Findings) {
        self.data = data
        self.findings = findings
        var colors: [Findings.SeriesKey: String] = [:]
        var shapes: [Findings.SeriesKey: SVGChart.MarkerShape] = [:]
        for (i, k) in findings.keys.enumerated() {
            colors[k] = SVGChart.seriesColor(i)
            shapes[k] = SVGChart.seriesShape(i)
        }
        self.colors = colors
        self.shapes = shapes
    }

    private func color(_ key: Findings.SeriesKey) -> String { colors[key] ?? "#333333" }

    /// Measured series of `value` per key: the median, with a ±stddev whisker when the context has one point.
    private func measured(_ stats: (PointResult) -> Statistics)
        -> [(key: Findings.SeriesKey, points: [SVGChart.LineChart.Point])] {
        var grouped: [Findings.SeriesKey: [Int: [Statistics]]] = [:]
        for p in data.points {
            grouped[Findings.SeriesKey(p.config), default: [:]][p.config.context, default: []].append(stats(p))
        }
        return findings.keys.compactMap { key in
            guard let byContext = grouped[key] else { return nil }
            let points = byContext.sorted { $0.key < $1.key }.map { context, list -> SVGChart.LineChart.Point in
                let x = Double(context)
                if list.count == 1, let s = list.first {
                    return s.stddev > 0 && s.median - s.stddev > 0
                        ? .init(x: x, y: s.median, low: s.median - s.stddev, high: s.median + s.stddev)
                        : .init(x: x, y: s.median)
                }
                return .init(x: x, y: Findings.median(list.map(\.median)))
            }
            return (key, points)
        }
    }

    private func failedContexts(_ key: Findings.SeriesKey, oomOnly: Bool) -> [Double] {
        data.failures.filter { Findings.SeriesKey($0.config) == key && (!oomOnly || $0.outOfMemory) }
            .map { Double($0.config.context) }
    }

    private let contextAxis = SVGChart.Axis("context (tokens)", scale: .log, format: .tokens)

    func latency(_ metric: Metric) -> String? {
        let series = measured { metric == .ttft ? $0.ttft : $0.tpot }
        guard !series.isEmpty else { return nil }
        var lines = series.map {
            SVGChart.LineChart.Series(name: findings.label($0.key), points: $0.points, color: color($0.key),
                                      failedX: failedContexts($0.key, oomOnly: false), shape: shapes[$0.key])
        }
        // Series that only failed still get their "x" marks.
        for key in findings.keys where !series.contains(where: { $0.key == key }) {
            let failed = failedContexts(key, oomOnly: false)
            if !failed.isEmpty {
                lines.append(.init(name: findings.label(key), points: [], color: color(key), failedX: failed,
                                   shape: shapes[key]))
            }
        }
        let markers = findings.crossovers.filter { $0.metric == metric }.map { c in
            let key = Findings.SeriesKey(model: c.fasterBeyond, configuration: c.configuration)
            let config = findings.configurationLabel(c.configuration)
            return SVGChart.LineChart.Marker(
                x: c.tokens,
                label: "\(c.fasterBeyond) faster than \(c.fasterBefore) beyond ~\(Findings.tokenText(c.tokens))"
                    + (config.isEmpty ? "" : " (\(config))"),
                color: color(key))
        }
        let title = metric == .ttft ? "time to first token" : "time per output token"
        return SVGChart.LineChart(x: contextAxis, y: SVGChart.Axis(title, scale: .log, format: .seconds),
                                  series: lines, markers: markers, caption: "\(title) vs context").render()
    }

    func memory() -> String? {
        let series = measured { Statistics([Double($0.peakEngineBytes)]) }
        guard !series.isEmpty else { return nil }
        var lines = series.map {
            SVGChart.LineChart.Series(name: findings.label($0.key), points: $0.points, color: color($0.key),
                                      failedX: failedContexts($0.key, oomOnly: true), shape: shapes[$0.key])
        }
        for key in findings.keys where !series.contains(where: { $0.key == key }) {
            let failed = failedContexts(key, oomOnly: true)
            if !failed.isEmpty {
                lines.append(.init(name: findings.label(key), points: [], color: color(key), failedX: failed,
                                   shape: shapes[key]))
            }
        }
        let reference = data.memoryCapacityBytes.flatMap { bytes in
            bytes > 0 ? SVGChart.LineChart.ReferenceLine(y: bytes, label: "device memory "
                + SVGChart.TickFormat.bytes.label(bytes)) : nil
        }
        return SVGChart.LineChart(x: contextAxis, y: SVGChart.Axis("peak engine memory", scale: .log, format: .bytes),
                                  series: lines, reference: reference, caption: "peak memory vs context").render()
    }

    func maxContext() -> String? {
        guard !findings.longestContexts.isEmpty else { return nil }
        let bars = findings.longestContexts.map { l -> SVGChart.BarChart.Bar in
            let text = SVGChart.TickFormat.tokens.label(Double(l.tokens))
            let valueLabel: String
            switch l.source {
            case .search(let reached, _, _):
                valueLabel = l.tokens == 0 ? "does not fit" : (reached ? "\u{2265} \(text) (search limit)" : text)
            case .measured:
                valueLabel = "\u{2265} \(text) (largest measured)"
            }
            return .init(label: findings.label(l.key), value: Double(l.tokens), valueLabel: valueLabel,
                         color: color(l.key), hatched: l.isLowerBound && l.tokens > 0)
        }
        return SVGChart.BarChart(axis: SVGChart.Axis("longest context (tokens)", scale: .log, format: .tokens),
                                 bars: bars, id: "maxctx",
                                 hatchNote: "lower bound: search limit reached or largest measured context",
                                 caption: "max context per model").render()
    }

    func breakdown(decode: Bool) -> String? {
        var rows: [SVGChart.StackedBarChart.Row] = []
        for key in findings.keys {
            var byContext: [Int: (sum: [OpCategory: Double], count: Int)] = [:]
            for p in data.points where Findings.SeriesKey(p.config) == key {
                let categories = PointResult.byCategory(decode ? p.decodeBreakdown : p.prefillBreakdown)
                guard categories.values.contains(where: { $0 > 0 }) else { continue }
                var entry = byContext[p.config.context] ?? ([:], 0)
                for (c, t) in categories { entry.sum[c, default: 0] += t }
                entry.count += 1
                byContext[p.config.context] = entry
            }
            for (context, entry) in byContext.sorted(by: { $0.key < $1.key }) {
                var values: [String: Double] = [:]
                for (c, t) in entry.sum { values[c.rawValue] = t / Double(entry.count) }
                let total = values.values.reduce(0, +)
                rows.append(.init(group: findings.label(key), label: Format.tokens(context), values: values,
                                  note: SVGChart.TickFormat.seconds.label(total)))
            }
        }
        guard !rows.isEmpty else { return nil }
        let categories = OpCategory.allCases.map {
            SVGChart.StackedBarChart.Category(name: $0.rawValue, color: SVGChart.color($0))
        }
        return SVGChart.StackedBarChart(categories: categories, rows: rows,
                                        axisTitle: decode ? "share of decode-step time" : "share of prefill time",
                                        caption: decode ? "decode operator breakdown" : "prefill operator breakdown")
            .render()
    }

    func predicted(_ metric: Metric) -> String? {
        guard !data.predictions.isEmpty else { return nil }
        let value: (ReportData.Prediction) -> Double? = { metric == .ttft ? $0.ttftSeconds : $0.tpotSeconds }
        let series = measured { metric == .ttft ? $0.ttft : $0.tpot }
        var lines: [SVGChart.LineChart.Series] = []
        var used: Set<String> = []
        var extraColor = findings.keys.count
        func predictedSeries(model: String, batch: Int, name: String, color: String,
                             shape: SVGChart.MarkerShape?) -> SVGChart.LineChart.Series? {
            let predictions = data.predictions.filter { $0.model == model && $0.batch == batch }
            guard !predictions.isEmpty else { return nil }
            used.insert("\(model)|\(batch)")
            var points: [SVGChart.LineChart.Point] = [], failed: [Double] = []
            for p in predictions.sorted(by: { $0.context < $1.context }) {
                if let v = value(p), v > 0 {
                    points.append(.init(x: Double(p.context), y: v))
                } else {
                    failed.append(Double(p.context))
                }
            }
            guard !points.isEmpty || !failed.isEmpty else { return nil }
            return .init(name: name, points: points, color: color, dashed: true, failedX: failed, shape: shape)
        }
        for (key, points) in series {
            let configKey = "\(key.model)|\(key.configuration.batch)"
            guard data.predictions.contains(where: { $0.model == key.model && $0.batch == key.configuration.batch })
            else { continue }
            lines.append(.init(name: findings.label(key) + " measured", points: points, color: color(key),
                               shape: shapes[key]))
            if !used.contains(configKey),
               let p = predictedSeries(model: key.model, batch: key.configuration.batch,
                                       name: key.model + (findings.showsBatch ? " B=\(key.configuration.batch)" : "")
                                           + " predicted", color: color(key), shape: shapes[key]) {
                lines.append(p)
            }
        }
        // Predictions for models that were not measured.
        for p in data.predictions where !used.contains("\(p.model)|\(p.batch)") {
            let name = p.model + (findings.showsBatch ? " B=\(p.batch)" : "") + " predicted"
            if let s = predictedSeries(model: p.model, batch: p.batch, name: name,
                                       color: SVGChart.seriesColor(extraColor),
                                       shape: SVGChart.seriesShape(extraColor)) {
                lines.append(s)
                extraColor += 1
            }
        }
        guard lines.contains(where: { !$0.points.isEmpty }) else { return nil }
        let title = metric == .ttft ? "time to first token" : "time per output token"
        return SVGChart.LineChart(x: contextAxis, y: SVGChart.Axis(title, scale: .log, format: .seconds),
                                  series: lines, caption: "measured vs predicted \(title)",
                                  failedLabel: "failed, or predicted not to fit").render()
    }
}

/// A markdown summary: the findings, a points table and the failures.
public enum MarkdownSummary {
    public static func render(_ data: ReportData) -> String {
        let findings = Findings(data)
        var lines = ["# \(inline(data.title))", "", "## Findings", ""]
        let sentences = findings.sentences()
        lines += sentences.isEmpty ? ["No findings: no measured points, max-context results or predictions."]
            : sentences.map { "- \(inline($0))" }

        lines += ["", "## Points", ""]
        let showConfig = findings.showsBackend || findings.showsDtype
        if data.points.isEmpty {
            lines.append("No measured points.")
        } else {
            var header = ["model", "context", "batch", "G"]
            if showConfig { header.append("backend/dtype") }
            let showFloor = data.points.contains { $0.decodeFloorFraction != nil }
            header += ["TTFT (median ± sd)", "TPOT"] + (showFloor ? ["floor / TPOT"] : [])
                + ["e2e", "prefill tok/s", "decode tok/s", "peak engine", "peak RSS", "notes"]
            var align = ["---", "---:", "---:", "---:"] + (showConfig ? ["---"] : [])
            align += Array(repeating: "---:", count: 7 + (showFloor ? 1 : 0)) + ["---"]
            lines.append(row(header))
            lines.append("|" + align.joined(separator: "|") + "|")
            for p in HTMLReport.sortedPoints(data, findings) {
                var cells = [p.config.model, Format.tokens(p.config.context), String(p.config.batch),
                             String(p.config.generate)]
                if showConfig { cells.append("\(p.config.backend)/\(p.config.dtype)") }
                cells += [HTMLReport.ttftText(p), Format.duration(p.tpot.median)]
                    + (showFloor ? [p.decodeFloorFraction.map(ResultTables.percent) ?? ""] : [])
                cells += [Format.duration(p.endToEnd.median),
                          Format.count(p.prefillTokensPerSecond), Format.count(p.decodeTokensPerSecond),
                          Format.bytes(Double(p.peakEngineBytes)), Format.bytes(Double(p.peakProcessBytes)), p.notes]
                lines.append(row(cells))
            }
        }

        lines += ["", "## Failures", ""]
        if data.failures.isEmpty {
            lines.append("No failed points.")
        } else {
            var header = ["model", "context", "batch", "G"]
            if showConfig { header.append("backend/dtype") }
            header += ["kind", "reason"]
            lines.append(row(header))
            lines.append("|" + (["---", "---:", "---:", "---:"] + (showConfig ? ["---"] : []) + ["---", "---"])
                .joined(separator: "|") + "|")
            for f in HTMLReport.sortedFailures(data, findings) {
                var cells = [f.config.model, Format.tokens(f.config.context), String(f.config.batch),
                             String(f.config.generate)]
                if showConfig { cells.append("\(f.config.backend)/\(f.config.dtype)") }
                cells += [f.outOfMemory ? "OOM" : "error", f.reason]
                lines.append(row(cells))
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// One table row; pipes escaped and line breaks flattened.
    static func row(_ cells: [String]) -> String {
        "| " + cells.map { inline($0).replacing("|", with: "\\|") }.joined(separator: " | ") + " |"
    }

    /// Text on one line, with "<" and ">" backslash-escaped so renderers do not take them for HTML.
    static func inline(_ text: String) -> String {
        text.replacing("\r\n", with: " ").replacing("\n", with: " ").replacing("<", with: "\\<")
            .replacing(">", with: "\\>")
    }
}
