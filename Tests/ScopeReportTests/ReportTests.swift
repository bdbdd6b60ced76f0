import Foundation
import Testing
@testable import ScopeBench
import ScopeCost
@testable import ScopeReport

/// Synthetic but consistent measurements: "transformer" TTFT grows as L^2, "ssm" as L (crossing between 4K and 8K);
/// transformer TPOT grows with L while ssm TPOT is flat (crossing between 8K and 16K).
enum Synthetic {
    static let contexts = [1024, 2048, 4096, 8192, 16384]
    static let weird = "weird<&>model"
    /// Relative prediction errors per context (measured = predicted * (1 + e)).
    static let ttftErrors = [0.10, -0.20, 0.05, 0.30, -0.15]

    static func transformerTTFT(_ l: Int) -> Double { 1e-9 * Double(l) * Double(l) }
    static func ssmTTFT(_ l: Int) -> Double { 6e-6 * Double(l) * (l == 8192 ? 1.03 : 1) }  // a kink off the power law
    static func transformerTPOT(_ l: Int) -> Double { 1e-3 + 1e-7 * Double(l) }
    static func ssmTPOT(_ l: Int) -> Double { 2e-3 }

    static func stats(_ median: Double, spread: Double = 0.02) -> Statistics {
        Statistics(count: 3, median: median, mean: median, stddev: median * spread, min: median * (1 - spread),
                   max: median * (1 + spread))
    }

    static func point(_ model: String, _ l: Int, ttft: Double, tpot: Double, prefill: [String: Double],
                      decode: [String: Double], peak: Int) -> PointResult {
        PointResult(config: PointConfig(model: model, context: l), ttft: stats(ttft), tpot: stats(tpot),
                    endToEnd: stats(ttft + 16 * tpot), prefillTokensPerSecond: Double(l) / ttft,
                    decodeTokensPerSecond: 1 / tpot, peakEngineBytes: peak, weightBytes: 50_000_000,
                    cacheBytes: peak / 4, peakProcessBytes: peak + 80_000_000, prefillBreakdown: prefill,
                    decodeBreakdown: decode, energy: nil, notes: l == 16384 ? "prefill chunked by 4096 tokens" : "")
    }

    static func data() -> ReportData {
        var points: [PointResult] = []
        for l in contexts {
            let t = transformerTTFT(l)
            // Small contexts: GEMMs dominate; at 16K attention takes half.
            let attention = l == 16384 ? 0.5 : 0.1
            let prefill = ["attention_prefill": attention * t, "linear": (0.8 - attention) * t, "rope": 0.1 * t,
                           "rms_norm": 0.1 * t]
            points.append(point("transformer", l, ttft: t, tpot: transformerTPOT(l), prefill: prefill,
                                decode: ["linear": 6e-4, "attention_decode": 1e-7 * Double(l), "lm_head": 2e-4,
                                         "rms_norm": 5e-5],
                                peak: 60_000_000 + 40_000 * l))
        }
        for l in contexts {
            let t = ssmTTFT(l)
            let prefill = ["ssd_chunk_scan": 0.57 * t, "linear": 0.33 * t, "conv1d": 0.06 * t, "rms_norm": 0.04 * t]
            points.append(point("ssm", l, ttft: t, tpot: ssmTPOT(l), prefill: prefill,
                                decode: ["linear": 1.2e-3, "ssd_step": 5e-4, "conv_step": 1e-4, "lm_head": 2e-4],
                                peak: 70_000_000 + 200 * l))
        }
        for l in [1024, 2048] {
            points.append(point(weird, l, ttft: 1.0, tpot: 0.5, prefill: [:], decode: [:], peak: 90_000_000))
        }
        let failures = [
            PointFailure(config: PointConfig(model: "transformer", context: 32768),
                         reason: "out of memory: needs 3.10 GiB, limit 2.00 GiB", outOfMemory: true),
            PointFailure(config: PointConfig(model: weird, context: 4096), reason: "kernel failed: <boom>",
                         outOfMemory: false),
        ]
        let maxContexts = [
            MaxContextResult(model: "transformer", backend: "cpu", dtype: "fp32", batch: 1, memoryLimitBytes: 2 << 30,
                             tokens: 300_000, reachedSearchLimit: false, peakBytesAtLimit: 2_000_000_000,
                             method: "probe", probes: []),
            MaxContextResult(model: "ssm", backend: "cpu", dtype: "fp32", batch: 1, memoryLimitBytes: 2 << 30,
                             tokens: 1_200_000, reachedSearchLimit: false, peakBytesAtLimit: 2_100_000_000,
                             method: "probe", probes: []),
            MaxContextResult(model: weird, backend: "cpu", dtype: "fp32", batch: 1, memoryLimitBytes: 2 << 30,
                             tokens: 600_000, reachedSearchLimit: false, peakBytesAtLimit: 2_000_000_000,
                             method: "probe", probes: []),
        ]
        var predictions: [ReportData.Prediction] = []
        for (i, l) in contexts.enumerated() {
            predictions.append(.init(model: "transformer", context: l, batch: 1,
                                     ttftSeconds: transformerTTFT(l) / (1 + ttftErrors[i]),
                                     tpotSeconds: transformerTPOT(l) / 1.1, peakBytes: 1e8))
            predictions.append(.init(model: "ssm", context: l, batch: 1, ttftSeconds: ssmTTFT(l) * 0.9,
                                     tpotSeconds: ssmTPOT(l), peakBytes: 1e8))
        }
        predictions.append(.init(model: "transformer", context: 65536, batch: 1, ttftSeconds: nil, tpotSeconds: nil,
                                 peakBytes: 5e9))
        let environment = RunEnvironment(
            device: "cpu: Test CPU (2 threads)", driver: "", os: "Linux 6.1", cpu: "Test CPU", backend: "cpu",
            dtype: "fp32", gitRevision: "abc1234-dirty", commandLine: "ssm-scope sweep --models transformer,ssm",
            startedAt: "2025-01-02T03:04:05Z", costDevice: nil)
        return ReportData(title: "Synthetic <report>",
                          runs: [.init(id: 1, environment: environment, status: "complete")], points: points,
                          failures: failures, maxContexts: maxContexts,
                          memoryCapacityBytes: Double(2 << 30), predictions: predictions)
    }

    /// ln(t_a / t_b) linear in ln(context) between the two contexts around the sign change.
    static func handCrossover(_ a: (Int) -> Double, _ b: (Int) -> Double, _ c1: Int, _ c2: Int) -> Double {
        let r1 = log(a(c1) / b(c1)), r2 = log(a(c2) / b(c2))
        let t = r1 / (r1 - r2)
        return exp(log(Double(c1)) + t * (log(Double(c2)) - log(Double(c1))))
    }
}

@Suite struct FindingsTests {
    let findings = Findings(Synthetic.data())

    @Test func ttftCrossoverIsTheLogLinearInterpolation() throws {
        let ttft = findings.crossovers.filter { $0.metric == .ttft }
        #expect(ttft.count == 1)
        let c = try #require(ttft.first)
        #expect(c.tokens > 4096 && c.tokens < 8192)
        #expect(c.lowerContext == 4096 && c.upperContext == 8192)
        let expected = Synthetic.handCrossover(Synthetic.transformerTTFT, Synthetic.ssmTTFT, 4096, 8192)
        #expect(abs(c.tokens - expected) < 1e-6 * expected)
        #expect(abs(expected - 6000) > 10)  // the kink moves it off the pure power-law answer
        #expect(c.fasterBeyond == "ssm" && c.fasterBefore == "transformer")
    }

    @Test func tpotCrossover() throws {
        let c = try #require(findings.crossovers.first { $0.metric == .tpot })
        let expected = Synthetic.handCrossover(Synthetic.transformerTPOT, Synthetic.ssmTPOT, 8192, 16384)
        #expect(abs(c.tokens - expected) < 1e-6 * expected)
        #expect(c.fasterBeyond == "ssm")
    }

    @Test func noCrossoverWhenTheFasterModelNeverChanges() throws {
        let pair = try #require(findings.comparisons.first {
            $0.metric == .ttft && Set([$0.first, $0.second]) == ["transformer", Synthetic.weird]
        })
        #expect(pair.crossovers.isEmpty)
        #expect(pair.fasterThroughout == "transformer")
        #expect(pair.contexts == [1024, 2048])
        #expect(findings.sentences().contains(
            "transformer is faster than weird<&>model at every measured context (1K\u{2013}2K), "
                + "no crossover (TTFT and TPOT)"))
    }

    @Test func maxContextRatio() throws {
        #expect(findings.contextRatios.count == 1)
        let r = try #require(findings.contextRatios.first)
        #expect(r.larger.key.model == "ssm" && r.smaller.key.model == "transformer")
        #expect(abs(r.ratio - 4.0) < 1e-12)
        #expect(r.bound == .exact)
        #expect(findings.sentences().contains("ssm fits 4.0x the context of transformer (1.2M vs 300K tokens)"))
    }

    @Test func longestContextFallsBackToLargestMeasured() throws {
        var data = Synthetic.data()
        data.maxContexts.removeAll { $0.model == "transformer" }
        let f = Findings(data)
        let l = try #require(f.longestContexts.first { $0.key.model == "transformer" })
        #expect(l.tokens == 16384 && l.source == .measured && l.isLowerBound)
        // ssm's exact 1.2M over transformer's "at least 16K" is only an upper bound on the ratio.
        let r = try #require(f.contextRatios.first)
        #expect(r.bound == .atMost)
    }

    @Test func dominantCategoryAtLargestContext() throws {
        let t = try #require(findings.dominantCategories.first { $0.key.model == "transformer" })
        #expect(t.context == 16384 && t.category == .attention)
        #expect(abs(t.share - 0.5) < 1e-9)
        let s = try #require(findings.dominantCategories.first { $0.key.model == "ssm" })
        #expect(s.category == .ssmScan && abs(s.share - 0.57) < 1e-9)
        #expect(findings.sentences().contains("ssm_scan takes 57% of ssm's prefill at 16K"))
        #expect(!findings.dominantCategories.contains { $0.key.model == Synthetic.weird })  // no breakdown
    }

    @Test func predictionError() throws {
        let e = try #require(findings.predictionErrors.first { $0.key.model == "transformer" })
        #expect(abs(try #require(e.ttft) - 0.15) < 1e-9)
        #expect(abs(try #require(e.tpot) - 0.1) < 1e-9)
        #expect(e.ttftPoints == 5)
        let s = try #require(findings.predictionErrors.first { $0.key.model == "ssm" })
        #expect(abs(try #require(s.ttft) - (1 / 0.9 - 1)) < 1e-9)
        #expect(s.tpot == 0)
    }

    @Test func crossoverSentence() throws {
        let c = try #require(findings.crossovers.first { $0.metric == .ttft })
        let text = "ssm becomes faster than transformer beyond ~\(Findings.tokenText(c.tokens)) tokens (TTFT)"
        #expect(findings.sentences().contains(text))
    }

    @Test func labelsNameTheConfigurationOnlyWhenItVaries() {
        var data = Synthetic.data()
        #expect(findings.label(Findings.SeriesKey(data.points[0].config)) == "transformer")
        var p = data.points[0]
        p.config.batch = 4
        data.points.append(p)
        let f = Findings(data)
        #expect(f.label(Findings.SeriesKey(p.config)) == "transformer B=4")
        #expect(f.sentences().contains { $0.hasSuffix("(TTFT, B=1)") })
    }
}

@Suite struct HTMLReportTests {
    let data = Synthetic.data()
    var html: String { HTMLReport.render(data) }

    @Test func selfContainedWithAllSections() {
        let html = self.html
        #expect(html.hasPrefix("<!DOCTYPE html>"))
        #expect(html.contains("<svg"))
        for title in HTMLReport.sectionTitles { #expect(html.contains(">\(title)</h2>"), "missing \(title)") }
        #expect(html.contains("<h3>Prefill</h3>") && html.contains("<h3>Decode</h3>"))
        #expect(!html.lowercased().contains("<script"))
        #expect(!html.contains("http://") && !html.contains("https://"))
        #expect(!html.contains("<link") && !html.contains("@import") && !html.contains("url(http"))
    }

    @Test func containsFindingsAndEscapes() throws {
        let html = self.html
        let c = try #require(Findings(data).crossovers.first { $0.metric == .ttft })
        let sentence = "ssm becomes faster than transformer beyond ~\(Findings.tokenText(c.tokens)) tokens (TTFT)"
        #expect(html.contains(sentence))
        #expect(html.contains("ssm fits 4.0x the context of transformer"))
        #expect(html.contains("weird&lt;&amp;&gt;model"))
        #expect(!html.contains(Synthetic.weird))
        #expect(html.contains("<title>Synthetic &lt;report&gt;</title>"))
        #expect(html.contains("kernel failed: &lt;boom&gt;"))
    }

    @Test func tablesAndFailures() {
        let html = self.html
        #expect(html.contains("abc1234-dirty") && html.contains("ssm-scope sweep --models transformer,ssm"))
        #expect(html.contains("out of memory: needs 3.10 GiB, limit 2.00 GiB"))
        #expect(html.contains(">OOM</span>") && html.contains(">error</span>"))
        #expect(html.contains("prefill chunked by 4096 tokens"))
        #expect(html.contains("device memory 2 GiB"))
    }

    @Test func emptySectionsShowNotes() {
        let empty = ReportData(title: "empty", runs: [], points: [], failures: [], maxContexts: [],
                               memoryCapacityBytes: nil, predictions: [])
        let html = HTMLReport.render(empty)
        #expect(!html.contains("<svg"))
        #expect(html.contains("No measured points."))
        #expect(html.contains("No failed points."))
        for title in HTMLReport.sectionTitles { #expect(html.contains(">\(title)</h2>")) }
    }
}

@Suite struct MarkdownTests {
    @Test func findingsTableAndFailures() {
        let data = Synthetic.data()
        let md = MarkdownSummary.render(data)
        for sentence in Findings(data).sentences() { #expect(md.contains("- " + MarkdownSummary.inline(sentence))) }
        #expect(md.contains("- ssm fits 4.0x the context of transformer (1.2M vs 300K tokens)"))
        #expect(md.hasPrefix("# Synthetic \\<report\\>\n"))
        #expect(md.contains("## Points") && md.contains("## Failures"))
        #expect(md.contains("| transformer | 4K | 1 | 16 | "))
        #expect(md.contains("| ssm | 16K | 1 | 16 | "))
        #expect(md.contains("| transformer | 32K | 1 | 16 | OOM | out of memory: needs 3.10 GiB, limit 2.00 GiB |"))
        #expect(md.contains("| weird\\<&\\>model | 4K | 1 | 16 | error | kernel failed: \\<boom\\> |"))
        #expect(MarkdownSummary.row(["a|b", "c\nd"]) == "| a\\|b | c d |")
    }
}

@Suite struct SVGChartTests {
    @Test func logAxesTickAtPowersOfTwoAndOneTwoFive() {
        let x = SVGChart.layout([1024, 16384], scale: .log, format: .tokens, maxTicks: 11)
        #expect(x.ticks.map { SVGChart.TickFormat.tokens.label($0) } == ["1K", "2K", "4K", "8K", "16K"])
        let y = SVGChart.layout([0.0013, 0.04], scale: .log, format: .seconds, maxTicks: 8)
        #expect(y.ticks.map { SVGChart.TickFormat.seconds.label($0) }
            == ["1 ms", "2 ms", "5 ms", "10 ms", "20 ms", "50 ms"])
        let wide = SVGChart.layout([1e-5, 10], scale: .log, format: .seconds, maxTicks: 8)
        #expect(wide.ticks.count <= 8 && wide.lo <= 1e-5 && wide.hi >= 10)
        let bytes = SVGChart.layout([300e6, 3e9], scale: .log, format: .bytes, maxTicks: 8)
        #expect(bytes.ticks.map { SVGChart.TickFormat.bytes.label($0) }.contains("1 GiB"))
    }

    @Test func mathWithoutFoundationMatches() {
        for x in [1e-9, 0.3, 1, 2, 4096, 6000.5, 1e12] {
            #expect(abs(MathLite.ln(x) - log(x)) < 1e-13 * max(1, abs(log(x))))
        }
        for x in [-20.0, -1, 0, 0.5, 8.7, 30] { #expect(abs(MathLite.exp(x) - exp(x)) < 1e-14 * exp(x)) }
    }

    @Test func chartEscapesAndMarksFailures() {
        let chart = SVGChart.LineChart(
            x: .init("context", format: .tokens), y: .init("seconds", format: .seconds),
            series: [.init(name: "a<b", points: [.init(x: 1024, y: 0.01), .init(x: 2048, y: 0.02)],
                           failedX: [4096]),
                     .init(name: "pred", points: [.init(x: 1024, y: 0.012)], dashed: true)],
            reference: .init(y: 0.05, label: "limit & more"), markers: [.init(x: 1500, label: "x-over")]).render()
        #expect(chart.hasPrefix("<svg") && chart.hasSuffix("</svg>"))
        #expect(chart.contains("a&lt;b") && chart.contains("limit &amp; more") && chart.contains("x-over"))
        #expect(chart.contains("stroke-dasharray=\"7 4\""))
        #expect(chart.contains("failed / out of memory"))
        #expect(!chart.contains("http"))
        let standalone = SVGChart.LineChart(x: .init("x", format: .tokens), y: .init("y", format: .seconds),
                                            series: [], standalone: true).render()
        #expect(standalone.contains("no data") && standalone.contains("xmlns="))
    }
}
