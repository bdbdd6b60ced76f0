import ScopeCost
import ScopeSupport

/// Small, self-contained SVG charts for the HTML report: inline markup only (no scripts, fonts, style sheets or
/// network references), sized for about 720 x 400 pixels.
///
/// Three kinds: `LineChart` (linear or log axes, several series, dashed series, error whiskers, failed points, a
/// horizontal reference line and labelled vertical markers), `BarChart` (horizontal bars on a log or linear value axis,
/// hatched bars) and `StackedBarChart` (horizontal bars of shares, one colour per category).
public enum SVGChart {
    /// Series colours (d3 "category10"), dark enough for lines and markers on white.
    public static let palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                                 "#7f7f7f", "#bcbd22", "#17becf"]

    /// The colour of series `index` (the palette repeats).
    public static func seriesColor(_ index: Int) -> String {
        palette[((index % palette.count) + palette.count) % palette.count]
    }

    /// One colour per operator category (Tableau 10), stable across charts.
    public static func color(_ category: OpCategory) -> String {
        switch category {
        case .gemm: "#4e79a7"
        case .attention: "#e15759"
        case .ssmScan: "#59a14f"
        case .conv: "#f28e2b"
        case .norm: "#b07aa1"
        case .elementwise: "#9c755f"
        case .embedding: "#bab0ac"
        case .lmHead: "#edc948"
        }
    }

    /// `text` with the five XML special characters escaped (safe in element content and quoted attributes).
    public static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for c in text {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(c)
            }
        }
        return out
    }

    public enum Scale: Sendable, Hashable {
        case linear, log
    }

    /// Point markers; charts with more series than palette colours vary the shape too.
    public enum MarkerShape: Sendable, Hashable, CaseIterable {
        case circle, square, diamond, triangle
    }

    /// The shape for series `index`: circles for the first palette's worth, then squares, diamonds, triangles.
    public static func seriesShape(_ index: Int) -> MarkerShape {
        MarkerShape.allCases[(max(0, index) / palette.count) % MarkerShape.allCases.count]
    }

    /// How tick labels read.
    public enum TickFormat: Sendable, Hashable {
        /// Context lengths: "512", "1K", "32K", "1M"; log axes tick at powers of two.
        case tokens
        /// Durations: "500 us", "2 ms", "1 s"; log axes tick at 1-2-5 per decade.
        case seconds
        /// Sizes in binary units: "500 MiB", "2 GiB"; log axes tick at 1-2-5 per decade of each unit.
        case bytes
        /// Counts with SI suffixes: "200", "5K", "1M".
        case count
        /// Fractions as percentages: 0.25 -> "25%".
        case percent
        /// Plain numbers.
        case plain

        /// The label of tick value `v`.
        public func label(_ v: Double) -> String {
            switch self {
            case .tokens:
                let n = Int(v.rounded())
                if abs(v - Double(n)) < 1e-6, n > 0 {
                    let t = Format.tokens(n)
                    if t != String(n) || n < 1000 { return t }
                }
                return SVGChart.trimZeros(Format.count(v, significant: 3))
            case .seconds: return SVGChart.trimZeros(Format.duration(v))
            case .bytes: return SVGChart.compactBytes(v)
            case .count: return SVGChart.trimZeros(Format.count(v, significant: 3))
            case .percent: return Format.fixed(v * 100, 0) + "%"
            case .plain: return SVGChart.trimZeros(Format.significant(v, 3))
            }
        }
    }

    public struct Axis: Sendable, Hashable {
        public var title: String
        public var scale: Scale
        public var format: TickFormat

        public init(_ title: String, scale: Scale = .log, format: TickFormat) {
            self.title = title
            self.scale = scale
            self.format = format
        }
    }

    // MARK: - Line chart

    public struct LineChart: Sendable {
        public struct Point: Sendable, Hashable {
            public var x: Double
            public var y: Double
            /// Optional whisker (e.g. median - stddev ... median + stddev).
            public var low: Double?
            public var high: Double?

            public init(x: Double, y: Double, low: Double? = nil, high: Double? = nil) {
                self.x = x
                self.y = y
                self.low = low
                self.high = high
            }
        }

        public struct Series: Sendable, Hashable {
            public var name: String
            public var points: [Point]
            /// A CSS colour; nil takes the palette colour of the series' position.
            public var color: String?
            /// Dashed line and hollow markers (predictions).
            public var dashed: Bool
            /// x values of points that failed (out of memory or error), drawn as an "x" on the top edge.
            public var failedX: [Double]
            /// nil takes the shape of the series' position (see `seriesShape`).
            public var shape: MarkerShape?

            public init(name: String, points: [Point], color: String? = nil, dashed: Bool = false,
                        failedX: [Double] = [], shape: MarkerShape? = nil) {
                self.shape = shape
                self.name = name
                self.points = points
                self.color = color
                self.dashed = dashed
                self.failedX = failedX
            }
        }

        /// A horizontal line across the plot (device memory).
        public struct ReferenceLine: Sendable, Hashable {
            public var y: Double
            public var label: String
            public init(y: Double, label: String) {
                self.y = y
                self.label = label
            }
        }

        /// A vertical line with a label above the plot (a crossover).
        public struct Marker: Sendable, Hashable {
            public var x: Double
            public var label: String
            public var color: String
            public init(x: Double, label: String, color: String = "#555555") {
                self.x = x
                self.label = label
                self.color = color
            }
        }

        public var x: Axis
        public var y: Axis
        public var series: [Series]
        public var reference: ReferenceLine?
        public var markers: [Marker]
        public var width: Double
        /// Total height, legend included.
        public var height: Double
        /// Adds the SVG namespace for use as a standalone .svg file (not needed inline in HTML).
        public var standalone: Bool
        /// Short description for screen readers.
        public var caption: String
        /// The legend's text for the "x" of failed points.
        public var failedLabel: String

        public init(x: Axis, y: Axis, series: [Series], reference: ReferenceLine? = nil, markers: [Marker] = [],
                    width: Double = 720, height: Double = 400, standalone: Bool = false, caption: String = "",
                    failedLabel: String = "failed / out of memory") {
            self.failedLabel = failedLabel
            self.x = x
            self.y = y
            self.series = series
            self.reference = reference
            self.markers = markers
            self.width = width
            self.height = height
            self.standalone = standalone
            self.caption = caption
        }

        public func render() -> String {
            let xValues = series.flatMap { $0.points.map(\.x) + $0.failedX } + markers.map(\.x)
            var yValues = series.flatMap { s in s.points.flatMap { p in [p.y] + [p.low, p.high].compactMap { $0 } } }
            if let r = reference { yValues.append(r.y) }
            let xs = SVGChart.usable(xValues, x.scale)
            let ys = SVGChart.usable(yValues, y.scale)
            guard !xs.isEmpty, !ys.isEmpty else {
                return SVGChart.emptyChart(width: width, text: "no data", standalone: standalone)
            }
            let xAxis = SVGChart.layout(xs, scale: x.scale, format: x.format, maxTicks: 11)
            let yAxis = SVGChart.layout(ys, scale: y.scale, format: y.format, maxTicks: 8)
            let hasFailures = series.contains { !$0.failedX.isEmpty }

            // Horizontal layout: y tick labels and the rotated axis title on the left.
            let yLabelWidth = yAxis.ticks.map { SVGChart.textWidth(y.format.label($0), 11) }.max() ?? 30
            let left = max(56, yLabelWidth + 34)
            let right = 24.0
            let plotWidth = width - left - right

            // Legend rows below the plot.
            var items = series.enumerated().map { i, s in
                LegendItem(label: s.name, color: s.color ?? SVGChart.seriesColor(i),
                           style: s.dashed ? .dashedLine : .line, shape: s.shape ?? SVGChart.seriesShape(i))
            }
            if hasFailures { items.append(LegendItem(label: failedLabel, color: "#333333", style: .cross)) }
            let legend = SVGChart.flowLegend(items, width: width - left - right)
            let legendHeight = legend.isEmpty ? 0 : Double(legend.count) * 18 + 6

            // Marker labels above the plot, in up to `maxMarkerRows` rows; a marker whose label fits in none keeps
            // its line and a tooltip (row nil).
            let maxMarkerRows = 3
            var markerRows: [Int?] = []
            var rowEnds: [Double] = []
            let sortedMarkers = markers.filter { x.scale == .linear || $0.x > 0 }.sorted { $0.x < $1.x }
            var markerSpans: [(start: Double, anchor: String, px: Double)] = []
            for m in sortedMarkers {
                let px = left + xAxis.position(m.x) * plotWidth
                let w = SVGChart.textWidth(m.label, 11)
                var start = px - w / 2
                var anchor = "middle"
                if start < left - 20 { start = px - 4; anchor = "start" }
                if start + w > width - 4 { start = px - w + 4; anchor = "end" }
                var row = rowEnds.firstIndex { $0 + 8 < start }
                if row == nil, rowEnds.count < maxMarkerRows {
                    rowEnds.append(0)
                    row = rowEnds.count - 1
                }
                if let row { rowEnds[row] = start + w }
                markerRows.append(row)
                markerSpans.append((start, anchor, px))
            }
            let top = 14 + Double(rowEnds.count) * 14 + (hasFailures ? 6 : 0)
            let bottom = 46.0
            let plotHeight = max(150, height - top - bottom - legendHeight)
            let totalHeight = top + plotHeight + bottom + legendHeight
            let plotBottom = top + plotHeight

            func px(_ v: Double) -> Double { left + xAxis.position(v) * plotWidth }
            func py(_ v: Double) -> Double { plotBottom - yAxis.position(v) * plotHeight }

            var svg = SVGChart.open(width: width, height: totalHeight, standalone: standalone, caption: caption)
            // Grid and ticks.
            for t in yAxis.ticks {
                let yy = py(t)
                svg += SVGChart.line(left, yy, left + plotWidth, yy, stroke: "#e3e3e3")
                svg += SVGChart.text(y.format.label(t), x: left - 6, y: yy + 4, size: 11, anchor: "end", fill: "#444")
            }
            for t in xAxis.ticks {
                let xx = px(t)
                svg += SVGChart.line(xx, top, xx, plotBottom, stroke: "#eeeeee")
                svg += SVGChart.line(xx, plotBottom, xx, plotBottom + 4, stroke: "#888")
                svg += SVGChart.text(x.format.label(t), x: xx, y: plotBottom + 17, size: 11, anchor: "middle",
                                     fill: "#444")
            }
            svg += "<rect x=\"\(n(left))\" y=\"\(n(top))\" width=\"\(n(plotWidth))\" height=\"\(n(plotHeight))\" "
                + "fill=\"none\" stroke=\"#999\"/>\n"
            // Axis titles.
            svg += SVGChart.text(x.title, x: left + plotWidth / 2, y: plotBottom + 36, size: 12, anchor: "middle",
                                 fill: "#222")
            let midY = top + plotHeight / 2
            svg += "<text x=\"14\" y=\"\(n(midY))\" font-size=\"12\" fill=\"#222\" text-anchor=\"middle\" "
                + "transform=\"rotate(-90 14 \(n(midY)))\">\(SVGChart.escape(y.title))</text>\n"

            // Reference line.
            if let r = reference, y.scale == .linear || r.y > 0 {
                let yy = py(r.y)
                svg += "<line x1=\"\(n(left))\" y1=\"\(n(yy))\" x2=\"\(n(left + plotWidth))\" y2=\"\(n(yy))\" "
                    + "stroke=\"#b2182b\" stroke-width=\"1.5\" stroke-dasharray=\"2 3\"/>\n"
                let labelY = yy - top < 16 ? yy + 14 : yy - 5
                svg += SVGChart.text(r.label, x: left + plotWidth - 6, y: labelY, size: 11, anchor: "end",
                                     fill: "#b2182b", halo: true)
            }

            // Vertical markers.
            // Lines first, then every label over them (the labels have a white halo).
            for (i, m) in sortedMarkers.enumerated() {
                let span = markerSpans[i]
                let lineTop = markerRows[i].map { top - 6 - Double($0) * 14 - (hasFailures ? 6 : 0) } ?? top
                svg += "<line x1=\"\(n(span.px))\" y1=\"\(n(lineTop))\" x2=\"\(n(span.px))\" y2=\"\(n(plotBottom))\" "
                    + "stroke=\"\(m.color)\" stroke-width=\"1.2\" stroke-dasharray=\"5 3\">"
                    + "<title>\(SVGChart.escape(m.label))</title></line>\n"
            }
            for (i, m) in sortedMarkers.enumerated() {
                guard let row = markerRows[i] else { continue }
                let span = markerSpans[i]
                let labelY = top - 9 - Double(row) * 14 - (hasFailures ? 6 : 0)
                let textX = span.anchor == "middle" ? span.px : (span.anchor == "start" ? span.px + 3 : span.px - 3)
                svg += SVGChart.text(m.label, x: textX, y: labelY, size: 11, anchor: span.anchor, fill: m.color,
                                     halo: true)
            }

            // Series.
            for (i, s) in series.enumerated() {
                let color = s.color ?? SVGChart.seriesColor(i)
                let points = s.points.filter { SVGChart.plottable($0.x, x.scale) && SVGChart.plottable($0.y, y.scale) }
                    .sorted { $0.x < $1.x }
                svg += "<g>"
                if points.count > 1 {
                    let coords = points.map { "\(n(px($0.x))),\(n(py($0.y)))" }.joined(separator: " ")
                    svg += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\" stroke-linejoin=\"round\""
                        + (s.dashed ? " stroke-dasharray=\"7 4\"" : "") + " points=\"\(coords)\"/>\n"
                }
                for p in points {
                    if let lo = p.low, let hi = p.high, SVGChart.plottable(lo, y.scale), hi > lo {
                        let xx = px(p.x)
                        svg += SVGChart.line(xx, py(lo), xx, py(hi), stroke: color)
                        svg += SVGChart.line(xx - 3, py(lo), xx + 3, py(lo), stroke: color)
                        svg += SVGChart.line(xx - 3, py(hi), xx + 3, py(hi), stroke: color)
                    }
                    let tip = "\(s.name): \(x.format.label(p.x)) \u{2192} \(y.format.label(p.y))"
                    svg += SVGChart.marker(s.shape ?? SVGChart.seriesShape(i), x: px(p.x), y: py(p.y), color: color,
                                           hollow: s.dashed, title: tip)
                }
                for fx in s.failedX where SVGChart.plottable(fx, x.scale) {
                    svg += SVGChart.cross(px(fx), top, color: color,
                                          title: "\(s.name): \(x.format.label(fx)) failed")
                }
                svg += "</g>\n"
            }

            // Legend.
            svg += SVGChart.drawLegend(legend, x: left, y: plotBottom + bottom + 4)
            svg += "</svg>"
            return svg
        }
    }

    // MARK: - Bar chart

    /// Horizontal bars, one per label, on a log (or linear) value axis; hatched bars mean "at least".
    public struct BarChart: Sendable {
        public struct Bar: Sendable, Hashable {
            public var label: String
            public var value: Double
            /// Printed at the end of the bar.
            public var valueLabel: String
            public var color: String?
            /// Hatched: the value is a lower bound (e.g. the search limit was reached).
            public var hatched: Bool

            public init(label: String, value: Double, valueLabel: String, color: String? = nil, hatched: Bool = false) {
                self.label = label
                self.value = value
                self.valueLabel = valueLabel
                self.color = color
                self.hatched = hatched
            }
        }

        public var axis: Axis
        public var bars: [Bar]
        /// A prefix for the ids of patterns (ids are global in an HTML page).
        public var id: String
        /// What hatching means, shown as a legend when a bar is hatched.
        public var hatchNote: String
        public var width: Double
        public var standalone: Bool
        public var caption: String

        public init(axis: Axis, bars: [Bar], id: String, hatchNote: String = "lower bound",
                    width: Double = 720, standalone: Bool = false, caption: String = "") {
            self.axis = axis
            self.bars = bars
            self.id = id
            self.hatchNote = hatchNote
            self.width = width
            self.standalone = standalone
            self.caption = caption
        }

        public func render() -> String {
            let positive = SVGChart.usable(bars.map(\.value), axis.scale)
            guard !bars.isEmpty else {
                return SVGChart.emptyChart(width: width, text: "no data", standalone: standalone)
            }
            var domainValues = positive
            if axis.scale == .log, let lo = positive.min() { domainValues.append(lo / 1.6) }
            if domainValues.isEmpty { domainValues = [1, 10] }
            let scaleAxis = SVGChart.layout(domainValues, scale: axis.scale, format: axis.format, maxTicks: 9)

            let labels = bars.map { SVGChart.truncate($0.label, maxWidth: 260, size: 12) }
            let labelWidth = labels.map { SVGChart.textWidth($0, 12) }.max() ?? 40
            let left = labelWidth + 18
            let valueWidth = bars.map { SVGChart.textWidth($0.valueLabel, 11) }.max() ?? 30
            let right = valueWidth + 16
            let plotWidth = max(120, width - left - right)
            let barHeight = 20.0, pitch = 30.0, top = 10.0
            let plotHeight = Double(bars.count) * pitch
            let plotBottom = top + plotHeight
            let anyHatched = bars.contains(where: \.hatched)
            let totalHeight = plotBottom + 42 + (anyHatched ? 22 : 0)

            func px(_ v: Double) -> Double { left + scaleAxis.position(v) * plotWidth }

            var svg = SVGChart.open(width: width, height: totalHeight, standalone: standalone, caption: caption)
            let hatchID: String = SVGChart.escape(id) + "-hatch"
            var defs = "<defs><pattern id=\"" + hatchID + "\" patternUnits=\"userSpaceOnUse\" width=\"7\" "
            defs += "height=\"7\" patternTransform=\"rotate(45)\"><rect width=\"7\" height=\"7\" fill=\"none\"/>"
            defs += "<line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"7\" stroke=\"#ffffff\" stroke-width=\"2.5\" "
            defs += "stroke-opacity=\"0.75\"/></pattern></defs>\n"
            svg += defs
            for t in scaleAxis.ticks {
                let xx = px(t)
                svg += SVGChart.line(xx, top, xx, plotBottom, stroke: "#e6e6e6")
                svg += SVGChart.line(xx, plotBottom, xx, plotBottom + 4, stroke: "#888")
                svg += SVGChart.text(axis.format.label(t), x: xx, y: plotBottom + 17, size: 11, anchor: "middle",
                                     fill: "#444")
            }
            svg += SVGChart.line(left, top, left, plotBottom, stroke: "#888")
            svg += SVGChart.line(left, plotBottom, left + plotWidth, plotBottom, stroke: "#888")
            svg += SVGChart.text(axis.title, x: left + plotWidth / 2, y: plotBottom + 35, size: 12, anchor: "middle",
                                 fill: "#222")
            for (i, bar) in bars.enumerated() {
                let y0 = top + Double(i) * pitch + (pitch - barHeight) / 2
                let color = bar.color ?? SVGChart.seriesColor(i)
                svg += SVGChart.text(labels[i], x: left - 8, y: y0 + barHeight / 2 + 4, size: 12, anchor: "end",
                                     fill: "#222")
                let drawable = axis.scale == .linear ? bar.value > 0 : (bar.value > 0 && bar.value.isFinite)
                var end = left
                if drawable {
                    end = max(left + 1, min(left + plotWidth, px(bar.value)))
                    let w = end - left
                    svg += "<rect x=\"\(n(left))\" y=\"\(n(y0))\" width=\"\(n(w))\" height=\"\(n(barHeight))\" "
                        + "fill=\"\(color)\"><title>\(SVGChart.escape(bar.label + ": " + bar.valueLabel))</title>"
                        + "</rect>\n"
                    if bar.hatched {
                        svg += "<rect x=\"\(n(left))\" y=\"\(n(y0))\" width=\"\(n(w))\" height=\"\(n(barHeight))\" "
                            + "fill=\"url(#\(SVGChart.escape(id))-hatch)\"/>\n"
                    }
                }
                svg += SVGChart.text(bar.valueLabel, x: end + 5, y: y0 + barHeight / 2 + 4, size: 11, anchor: "start",
                                     fill: "#222")
            }
            if anyHatched {
                let ly = plotBottom + 50
                svg += "<rect x=\"\(n(left))\" y=\"\(n(ly))\" width=\"22\" height=\"11\" fill=\"#777777\"/>"
                svg += "<rect x=\"\(n(left))\" y=\"\(n(ly))\" width=\"22\" height=\"11\" "
                    + "fill=\"url(#\(SVGChart.escape(id))-hatch)\"/>\n"
                svg += SVGChart.text(hatchNote, x: left + 28, y: ly + 10, size: 11, anchor: "start", fill: "#333")
            }
            svg += "</svg>"
            return svg
        }
    }

    // MARK: - Stacked bar chart

    /// Horizontal bars of shares (each row sums to 100%), grouped (e.g. by model), one colour per category.
    public struct StackedBarChart: Sendable {
        public struct Category: Sendable, Hashable {
            public var name: String
            public var color: String
            public init(name: String, color: String) {
                self.name = name
                self.color = color
            }
        }

        public struct Row: Sendable, Hashable {
            /// Printed once, left of the group's first row (e.g. the model).
            public var group: String
            /// Printed left of the bar (e.g. the context).
            public var label: String
            /// Amounts by category name (any unit; shares are computed).
            public var values: [String: Double]
            /// Printed right of the bar (e.g. the total time).
            public var note: String

            public init(group: String, label: String, values: [String: Double], note: String = "") {
                self.group = group
                self.label = label
                self.values = values
                self.note = note
            }
        }

        /// Stacking order and colours; categories absent from every row are left out of the legend.
        public var categories: [Category]
        public var rows: [Row]
        /// Formats amounts in tooltips.
        public var valueFormat: TickFormat
        public var axisTitle: String
        public var width: Double
        public var standalone: Bool
        public var caption: String

        public init(categories: [Category], rows: [Row], valueFormat: TickFormat = .seconds,
                    axisTitle: String = "share of time", width: Double = 720, standalone: Bool = false,
                    caption: String = "") {
            self.categories = categories
            self.rows = rows
            self.valueFormat = valueFormat
            self.axisTitle = axisTitle
            self.width = width
            self.standalone = standalone
            self.caption = caption
        }

        public func render() -> String {
            guard !rows.isEmpty else {
                return SVGChart.emptyChart(width: width, text: "no data", standalone: standalone)
            }
            let groups = rows.map { SVGChart.truncate($0.group, maxWidth: 200, size: 12) }
            let groupWidth = groups.map { SVGChart.textWidth($0, 12) * 1.08 }.max() ?? 0
            let labelWidth = rows.map { SVGChart.textWidth($0.label, 11) }.max() ?? 0
            let left = groupWidth + labelWidth + 26
            let noteWidth = rows.map { SVGChart.textWidth($0.note, 11) }.max() ?? 0
            let right = noteWidth + 14
            let plotWidth = max(160, width - left - right)
            let pitch = 19.0, barHeight = 14.0, groupGap = 10.0, top = 8.0

            var ys: [Double] = []
            var y = top
            for i in rows.indices {
                if i > 0, rows[i].group != rows[i - 1].group { y += groupGap }
                ys.append(y)
                y += pitch
            }
            let plotBottom = y
            let used = categories.filter { c in rows.contains { ($0.values[c.name] ?? 0) > 0 } }
            let legend = SVGChart.flowLegend(used.map { LegendItem(label: $0.name, color: $0.color, style: .box) },
                                             width: width - left - 8)
            let totalHeight = plotBottom + 42 + Double(legend.count) * 18 + 8

            var svg = SVGChart.open(width: width, height: totalHeight, standalone: standalone, caption: caption)
            for t in [0.0, 0.25, 0.5, 0.75, 1.0] {
                let xx = left + t * plotWidth
                svg += SVGChart.line(xx, top, xx, plotBottom, stroke: "#e6e6e6")
                svg += SVGChart.text(TickFormat.percent.label(t), x: xx, y: plotBottom + 16, size: 11,
                                     anchor: "middle", fill: "#444")
            }
            svg += SVGChart.text(axisTitle, x: left + plotWidth / 2, y: plotBottom + 33, size: 12, anchor: "middle",
                                 fill: "#222")
            for (i, row) in rows.enumerated() {
                let y0 = ys[i] + (pitch - barHeight) / 2
                let firstOfGroup = i == 0 || rows[i - 1].group != row.group
                if firstOfGroup {
                    if i > 0 {
                        let separator = ys[i] - groupGap / 2
                        svg += SVGChart.line(4, separator, width - 4, separator, stroke: "#d0d0d0")
                    }
                    svg += "<text x=\"4\" y=\"\(n(y0 + barHeight - 3))\" font-size=\"12\" font-weight=\"bold\" "
                        + "fill=\"#222\">\(SVGChart.escape(groups[i]))</text>\n"
                }
                svg += SVGChart.text(row.label, x: left - 6, y: y0 + barHeight - 3, size: 11, anchor: "end",
                                     fill: "#444")
                let total = categories.reduce(0.0) { $0 + max(0, row.values[$1.name] ?? 0) }
                guard total > 0 else {
                    svg += SVGChart.text("no breakdown", x: left + 4, y: y0 + barHeight - 3, size: 11, anchor: "start",
                                         fill: "#888")
                    continue
                }
                var x0 = left
                for c in categories {
                    let v = max(0, row.values[c.name] ?? 0)
                    guard v > 0 else { continue }
                    let w = v / total * plotWidth
                    let share = v / total
                    let tip = "\(row.group) \(row.label): \(c.name) \(Format.fixed(share * 100, 1))% "
                        + "(\(valueFormat.label(v)))"
                    svg += "<rect x=\"\(n(x0))\" y=\"\(n(y0))\" width=\"\(n(w))\" height=\"\(n(barHeight))\" "
                        + "fill=\"\(c.color)\"><title>\(SVGChart.escape(tip))</title></rect>\n"
                    let text = Format.fixed(share * 100, 0) + "%"
                    if w >= SVGChart.textWidth(text, 10) + 6 {
                        svg += SVGChart.text(text, x: x0 + w / 2, y: y0 + barHeight - 3.5, size: 10, anchor: "middle",
                                             fill: SVGChart.isLight(c.color) ? "#222222" : "#ffffff")
                    }
                    x0 += w
                }
                if !row.note.isEmpty {
                    svg += SVGChart.text(row.note, x: left + plotWidth + 6, y: y0 + barHeight - 3, size: 11,
                                         anchor: "start", fill: "#444")
                }
            }
            svg += SVGChart.drawLegend(legend, x: left, y: plotBottom + 44)
            svg += "</svg>"
            return svg
        }
    }

    // MARK: - Axes

    struct AxisLayout {
        var lo: Double
        var hi: Double
        var ticks: [Double]
        var scale: Scale

        /// `v` as a fraction of the axis, 0 at `lo`.
        func position(_ v: Double) -> Double {
            switch scale {
            case .linear: return hi > lo ? (v - lo) / (hi - lo) : 0.5
            case .log:
                guard v > 0, hi > lo else { return 0 }
                return (MathLite.ln(v) - MathLite.ln(lo)) / (MathLite.ln(hi) - MathLite.ln(lo))
            }
        }
    }

    static func usable(_ values: [Double], _ scale: Scale) -> [Double] {
        values.filter { plottable($0, scale) }
    }

    static func plottable(_ v: Double, _ scale: Scale) -> Bool { v.isFinite && (scale == .linear || v > 0) }

    /// Axis range and ticks enclosing `values`: nice tick values at both ends, at most `maxTicks` ticks.
    static func layout(_ values: [Double], scale: Scale, format: TickFormat, maxTicks: Int) -> AxisLayout {
        let lo = values.min() ?? 1, hi = values.max() ?? 1
        switch scale {
        case .linear: return linearLayout(lo: lo, hi: hi, format: format, maxTicks: maxTicks)
        case .log: return logLayout(lo: lo, hi: hi, format: format, maxTicks: maxTicks)
        }
    }

    static func linearLayout(lo rawLo: Double, hi rawHi: Double, format: TickFormat, maxTicks: Int) -> AxisLayout {
        var lo = min(rawLo, 0 <= rawLo ? 0 : rawLo), hi = rawHi
        if hi <= lo { hi = lo + (lo == 0 ? 1 : abs(lo)) }
        let rough = (hi - lo) / Double(max(1, maxTicks - 1))
        var magnitude = 1.0
        while magnitude * 10 <= rough { magnitude *= 10 }
        while magnitude > rough { magnitude /= 10 }
        var step = magnitude
        for m in [1.0, 2, 5, 10] where m * magnitude >= rough { step = m * magnitude; break }
        lo = (lo / step).rounded(.down) * step
        hi = (hi / step).rounded(.up) * step
        var ticks: [Double] = []
        var t = lo
        while t <= hi + step * 1e-9 { ticks.append(abs(t) < step * 1e-9 ? 0 : t); t += step }
        return AxisLayout(lo: lo, hi: hi, ticks: ticks, scale: .linear)
    }

    static func logLayout(lo: Double, hi: Double, format: TickFormat, maxTicks: Int) -> AxisLayout {
        /// The closest candidates enclosing [lo, hi] (at least two).
        func enclosing(_ candidates: [Double]) -> (Double, Double) {
            var below = candidates.last { $0 <= lo * (1 + 1e-9) } ?? candidates[0]
            var above = candidates.first { $0 >= hi * (1 - 1e-9) } ?? candidates[candidates.count - 1]
            if below >= above {
                // One value sitting on a tick: widen to the neighbouring ticks.
                below = candidates.last { $0 < below * (1 - 1e-9) } ?? below / 2
                above = candidates.first { $0 > above * (1 + 1e-9) } ?? above * 2
            }
            return (min(below, lo), max(above, hi))
        }
        func inside(_ candidates: [Double], _ range: (Double, Double)) -> [Double] {
            candidates.filter { $0 >= range.0 * (1 - 1e-9) && $0 <= range.1 * (1 + 1e-9) }
        }
        // The tightest range: the finest candidates around the data.
        let fine = logCandidates(lo: lo, hi: hi, format: format, tier: 0)
        let tight = fine.count >= 2 ? enclosing(fine) : (lo / 2, hi * 2)
        for tier in 0..<8 {
            let candidates = logCandidates(lo: lo, hi: hi, format: format, tier: tier)
            guard candidates.count >= 2 else { continue }
            // Sparser ticks inside the tight range when at least three fit there; else the tier's own range.
            let within = inside(candidates, tight)
            if within.count >= 3 && within.count <= maxTicks {
                return AxisLayout(lo: tight.0, hi: tight.1, ticks: within, scale: .log)
            }
            let range = enclosing(candidates)
            let ticks = inside(candidates, range)
            if ticks.count <= maxTicks || tier == 7 {
                return AxisLayout(lo: range.0, hi: range.1, ticks: ticks, scale: .log)
            }
        }
        return AxisLayout(lo: lo / 2, hi: hi * 2, ticks: [lo, hi], scale: .log)
    }

    /// Nice log-axis values around [lo, hi]; a higher tier gives sparser ticks.
    static func logCandidates(lo: Double, hi: Double, format: TickFormat, tier: Int) -> [Double] {
        switch format {
        case .tokens:
            // Powers of two, every (tier + 1)-th exponent.
            let step = tier + 1
            let e0 = binaryExponent(lo) - step, e1 = binaryExponent(hi) + step + 1
            var out: [Double] = []
            for e in e0...e1 where ((e % step) + step) % step == 0 { out.append(pow2(e)) }
            return out
        case .bytes:
            // 1-2-5 per decade of each binary unit: ... 200 MiB, 500 MiB, 1 GiB, 2 GiB ...
            var out: [Double] = []
            let multipliers: [Double] = tier == 0 ? [1, 2, 5] : [1]
            for unit in 0...6 {
                let base = pow2(10 * unit)
                for k in 0...2 {
                    if tier >= 2, k != 0 { continue }
                    if tier >= 3, unit % (tier - 1) != 0 { continue }
                    for m in multipliers { out.append(m * pow10(k) * base) }
                }
            }
            return out.filter { $0 >= lo / 1100 && $0 <= hi * 1100 }.sorted()
        default:
            // 1-2-5 per decade, then 1 per decade, then every second, third... decade.
            let d0 = decimalExponent(lo) - 1, d1 = decimalExponent(hi) + 2
            let multipliers: [Double] = tier == 0 ? [1, 2, 5] : [1]
            let every = max(1, tier)
            var out: [Double] = []
            for d in d0...d1 where ((d % every) + every) % every == 0 {
                for m in multipliers { out.append(m * pow10(d)) }
            }
            if every > 1 {
                // Keep a decade on each side so the range always encloses the data.
                out.insert(pow10(d0 - every), at: 0)
                out.append(pow10(d1 + every))
                out.sort()
            }
            return out
        }
    }

    static func binaryExponent(_ v: Double) -> Int {
        guard v > 0, v.isFinite else { return 0 }
        return Int(v.exponent)
    }

    static func decimalExponent(_ v: Double) -> Int {
        guard v > 0, v.isFinite else { return 0 }
        var value = v, e = 0
        while value >= 10 { value /= 10; e += 1 }
        while value < 1 { value *= 10; e -= 1 }
        return e
    }

    static func pow2(_ e: Int) -> Double { Double(sign: .plus, exponent: e, significand: 1) }

    static func pow10(_ e: Int) -> Double {
        var r = 1.0
        for _ in 0..<abs(e) { r *= 10 }
        return e >= 0 ? r : 1 / r
    }

    // MARK: - Text and drawing helpers

    /// "2.00 ms" -> "2 ms", "1.50K" -> "1.5K".
    static func trimZeros(_ text: String) -> String {
        let numeric = text.prefix { "0123456789.-".contains($0) }
        guard numeric.contains(".") else { return text }
        var number = Substring(numeric)
        while number.last == "0" { number = number.dropLast() }
        if number.last == "." { number = number.dropLast() }
        return String(number) + text.dropFirst(numeric.count)
    }

    /// Bytes for tick labels: "512 B", "200 MiB", "1.5 GiB".
    static func compactBytes(_ v: Double) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
        var value = v, index = 0
        while abs(value) >= 1024, index < units.count - 1 { value /= 1024; index += 1 }
        return trimZeros(Format.significant(value, 3)) + " " + units[index]
    }

    /// Approximate rendered width of `text` in a sans-serif font of `size` pixels.
    static func textWidth(_ text: String, _ size: Double) -> Double {
        var units = 0.0
        for c in text {
            switch c {
            case "i", "l", "j", "!", "|", ".", ",", ":", ";", "'", "1", "t", "f", "I", " ", "(", ")", "[", "]":
                units += 0.36
            case "m", "w", "M", "W", "%", "@": units += 0.9
            case "A"..."Z": units += 0.7
            default: units += 0.6
            }
        }
        return units * size
    }

    /// `text` cut in the middle with an ellipsis to fit `maxWidth` (the end often tells series apart: "B=4").
    static func truncate(_ text: String, maxWidth: Double, size: Double) -> String {
        guard textWidth(text, size) > maxWidth else { return text }
        var head = Substring(text.prefix((text.count + 1) / 2)), tail = Substring(text.suffix(text.count / 2))
        while !(head.isEmpty && tail.isEmpty), textWidth(head + "\u{2026}" + tail, size) > maxWidth {
            if head.count >= tail.count { head = head.dropLast() } else { tail = tail.dropFirst() }
        }
        return head + "\u{2026}" + tail
    }

    /// Whether a "#rrggbb" colour is light enough to need dark text.
    static func isLight(_ color: String) -> Bool {
        let hex = Array(color.utf8.dropFirst())
        guard hex.count == 6 else { return false }
        func component(_ i: Int) -> Double {
            func digit(_ c: UInt8) -> Int {
                switch c {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): Int(c - UInt8(ascii: "0"))
                case UInt8(ascii: "a")...UInt8(ascii: "f"): Int(c - UInt8(ascii: "a")) + 10
                case UInt8(ascii: "A")...UInt8(ascii: "F"): Int(c - UInt8(ascii: "A")) + 10
                default: 0
                }
            }
            return Double(digit(hex[i]) * 16 + digit(hex[i + 1])) / 255
        }
        let luminance = 0.299 * component(0) + 0.587 * component(2) + 0.114 * component(4)
        return luminance > 0.62
    }

    static func open(width: Double, height: Double, standalone: Bool, caption: String) -> String {
        var s = "<svg " + (standalone ? "xmlns=\"http://www.w3.org/2000/svg\" " : "")
            + "width=\"\(n(width))\" height=\"\(n(height))\" viewBox=\"0 0 \(n(width)) \(n(height))\" "
            + "font-family=\"system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif\" role=\"img\">\n"
        if !caption.isEmpty { s += "<title>\(escape(caption))</title>\n" }
        s += "<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n"
        return s
    }

    static func emptyChart(width: Double, text: String, standalone: Bool) -> String {
        open(width: width, height: 40, standalone: standalone, caption: text)
            + SVGChart.text(text, x: width / 2, y: 24, size: 12, anchor: "middle", fill: "#666") + "</svg>"
    }

    static func line(_ x1: Double, _ y1: Double, _ x2: Double, _ y2: Double, stroke: String) -> String {
        "<line x1=\"\(n(x1))\" y1=\"\(n(y1))\" x2=\"\(n(x2))\" y2=\"\(n(y2))\" stroke=\"\(stroke)\"/>\n"
    }

    static func text(_ text: String, x: Double, y: Double, size: Double, anchor: String, fill: String,
                     halo: Bool = false) -> String {
        "<text x=\"\(n(x))\" y=\"\(n(y))\" font-size=\"\(n(size))\" text-anchor=\"\(anchor)\" fill=\"\(fill)\""
            + (halo ? " stroke=\"#ffffff\" stroke-width=\"3\" paint-order=\"stroke\"" : "")
            + ">\(escape(text))</text>\n"
    }

    static func cross(_ x: Double, _ y: Double, color: String, title: String) -> String {
        let d = 4.5
        return "<path d=\"M\(n(x - d)) \(n(y - d))L\(n(x + d)) \(n(y + d))"
            + "M\(n(x - d)) \(n(y + d))L\(n(x + d)) \(n(y - d))\" stroke=\"\(color)\" stroke-width=\"2.2\" "
            + "stroke-linecap=\"round\"><title>\(escape(title))</title></path>\n"
    }

    struct LegendItem {
        enum Style { case line, dashedLine, box, cross }
        var label: String
        var color: String
        var style: Style
        var shape: MarkerShape = .circle
    }

    /// A point marker of `shape` centred on (x, y), with a tooltip.
    static func marker(_ shape: MarkerShape, x: Double, y: Double, color: String, hollow: Bool,
                       title: String?) -> String {
        let paint = hollow ? "fill=\"#ffffff\" stroke=\"\(color)\" stroke-width=\"1.5\""
            : "fill=\"\(color)\" stroke=\"#ffffff\" stroke-width=\"0.8\""
        let tip = title.map { "<title>\(escape($0))</title>" } ?? ""
        switch shape {
        case .circle:
            return "<circle cx=\"\(n(x))\" cy=\"\(n(y))\" r=\"3.4\" \(paint)>\(tip)</circle>\n"
        case .square:
            return "<rect x=\"\(n(x - 3.2))\" y=\"\(n(y - 3.2))\" width=\"6.4\" height=\"6.4\" \(paint)>\(tip)</rect>\n"
        case .diamond:
            let d = 4.4
            return "<path d=\"M\(n(x)) \(n(y - d))L\(n(x + d)) \(n(y))L\(n(x)) \(n(y + d))L\(n(x - d)) \(n(y))Z\" "
                + "\(paint)>\(tip)</path>\n"
        case .triangle:
            let d = 4.4
            return "<path d=\"M\(n(x)) \(n(y - d))L\(n(x + d)) \(n(y + d * 0.8))L\(n(x - d)) \(n(y + d * 0.8))Z\" "
                + "\(paint)>\(tip)</path>\n"
        }
    }

    /// Legend items flowed into rows of at most `width` pixels, with their x offsets.
    static func flowLegend(_ items: [LegendItem], width: Double) -> [[(item: LegendItem, x: Double)]] {
        var rows: [[(item: LegendItem, x: Double)]] = []
        var current: [(item: LegendItem, x: Double)] = []
        var x = 0.0
        for item in items {
            let label = truncate(item.label, maxWidth: width - 40, size: 11)
            let w = 30 + textWidth(label, 11) + 18
            if x + w > width, !current.isEmpty {
                rows.append(current)
                current = []
                x = 0
            }
            current.append((LegendItem(label: label, color: item.color, style: item.style, shape: item.shape), x))
            x += w
        }
        if !current.isEmpty { rows.append(current) }
        return rows
    }

    static func drawLegend(_ rows: [[(item: LegendItem, x: Double)]], x: Double, y: Double) -> String {
        var svg = ""
        for (r, row) in rows.enumerated() {
            let cy = y + Double(r) * 18 + 5
            for (item, dx) in row {
                let x0 = x + dx
                switch item.style {
                case .line, .dashedLine:
                    svg += "<line x1=\"\(n(x0))\" y1=\"\(n(cy))\" x2=\"\(n(x0 + 24))\" y2=\"\(n(cy))\" "
                        + "stroke=\"\(item.color)\" stroke-width=\"2\""
                        + (item.style == .dashedLine ? " stroke-dasharray=\"7 4\"" : "") + "/>"
                    svg += marker(item.shape, x: x0 + 12, y: cy, color: item.color, hollow: item.style == .dashedLine,
                                  title: nil)
                case .box:
                    svg += "<rect x=\"\(n(x0 + 4))\" y=\"\(n(cy - 6))\" width=\"16\" height=\"12\" "
                        + "fill=\"\(item.color)\"/>"
                case .cross:
                    svg += cross(x0 + 12, cy, color: item.color, title: item.label)
                }
                svg += text(item.label, x: x0 + 30, y: cy + 4, size: 11, anchor: "start", fill: "#222")
            }
        }
        return svg
    }
}

/// A coordinate with one decimal.
@inline(__always) private func n(_ x: Double) -> String {
    let r = (x * 10).rounded() / 10
    return r == r.rounded() ? String(Int(r)) : Format.fixed(r, 1)
}

/// Natural logarithm and exponential without Foundation or the C library (enough precision for charts and the
/// crossover interpolation: about 1e-15 relative).
enum MathLite {
    static let ln2 = 0.693147180559945309417232121458176568

    static func ln(_ x: Double) -> Double {
        guard x > 0 else { return x == 0 ? -.infinity : .nan }
        guard x.isFinite else { return x }
        var m = x.significand  // [1, 2)
        var e = Double(x.exponent)
        if m > 1.4142135623730951 { m /= 2; e += 1 }
        let z = (m - 1) / (m + 1), z2 = z * z
        var term = z, sum = 0.0, k = 1.0
        while true {
            let add = term / k
            sum += add
            if abs(add) < 1e-18 * max(1e-300, abs(sum)) || k > 61 { break }
            term *= z2
            k += 2
        }
        return 2 * sum + e * ln2
    }

    static func exp(_ x: Double) -> Double {
        guard x.isFinite else { return x.isNaN ? x : (x > 0 ? x : 0) }
        if x > 709.7 { return .infinity }
        if x < -745 { return 0 }
        let k = (x / ln2).rounded()
        let r = x - k * ln2
        var term = 1.0, sum = 1.0, i = 1.0
        while abs(term) > 1e-18 && i < 40 {
            term *= r / i
            sum += term
            i += 1
        }
        // Scale by 2^k in two steps to stay clear of overflow in the intermediate.
        let k1 = Int(k) / 2, k2 = Int(k) - Int(k) / 2
        return sum * Double(sign: .plus, exponent: k1, significand: 1)
            * Double(sign: .plus, exponent: k2, significand: 1)
    }
}
