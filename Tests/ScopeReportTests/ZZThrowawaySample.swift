import Foundation
import Testing
@testable import ScopeBench
import ScopeCost
@testable import ScopeReport

@Test func zzWriteSample() throws {
    var data = Synthetic.data()
    // A richer sample: a hybrid with more contexts, a search-limit bar.
    for l in [1024, 2048, 4096, 8192, 16384, 32768, 65536] {
        let t = 3e-6 * Double(l) + 2e-10 * Double(l) * Double(l)
        data.points.append(Synthetic.point("zamba2-1.2b-hybrid", l, ttft: t, tpot: 1.5e-3 + 2e-8 * Double(l),
            prefill: ["ssd_chunk_scan": 0.3 * t, "linear": 0.4 * t, "attention_prefill": 0.2 * t, "rms_norm": 0.05 * t, "embedding": 0.01 * t, "lm_head": 0.04 * t],
            decode: ["linear": 1e-3, "ssd_step": 3e-4, "attention_decode": 2e-8 * Double(l), "lm_head": 2e-4],
            peak: 80_000_000 + 9_000 * l))
    }
    data.failures.append(PointFailure(config: PointConfig(model: "zamba2-1.2b-hybrid", context: 131072), reason: "out of memory", outOfMemory: true))
    data.maxContexts.append(MaxContextResult(model: "zamba2-1.2b-hybrid", backend: "cpu", dtype: "fp32", batch: 1, memoryLimitBytes: 2 << 30, tokens: 1 << 21, reachedSearchLimit: true, peakBytesAtLimit: 0, method: "probe", probes: []))
    try HTMLReport.render(data).write(toFile: "/tmp/report-sample.html", atomically: true, encoding: .utf8)
    try MarkdownSummary.render(data).write(toFile: "/tmp/report-sample.md", atomically: true, encoding: .utf8)
    try HTMLReport.render(Synthetic.data()).write(toFile: "/tmp/report-sample2.html", atomically: true, encoding: .utf8)
}

@Test func zzWriteStress() throws {
    var points: [PointResult] = []
    let models = ["llama-3.2-1b", "qwen2.5-1.5b-instruct-long-name", "mamba2-1.3b", "mamba-1.4b", "zamba2-1.2b", "falcon-h1-1.5b", "phi-3-mini"]
    for (i, m) in models.enumerated() {
        for batch in [1, 4] {
            for e in 10...(15 + i % 3) {
                let l = 1 << e
                let a = Double(i + 1) * 1e-6, b = Double(7 - i) * 2e-11
                let t = (a * Double(l) + b * Double(l) * Double(l)) * Double(batch)
                var p = Synthetic.point(m, l, ttft: t, tpot: 1e-3 * Double(i + 1) + b * 1e3 * Double(l), prefill: [:], decode: [:], peak: 1_000_000_000 + (i + 1) * 300_000 * l)
                p.config.batch = batch
                points.append(p)
            }
        }
    }
    var single = Synthetic.point("single-point-model", 4096, ttft: 0.02, tpot: 0.003, prefill: [:], decode: [:], peak: 2_000_000_000)
    single.config.batch = 1
    points.append(single)
    let data = ReportData(title: "Stress", runs: [], points: points, failures: [PointFailure(config: PointConfig(model: "phi-3-mini", context: 1 << 20, batch: 4), reason: "oom", outOfMemory: true)], maxContexts: [], memoryCapacityBytes: 80 * 1024 * 1024 * 1024, predictions: [])
    try HTMLReport.render(data).write(toFile: "/tmp/report-stress.html", atomically: true, encoding: .utf8)
}
