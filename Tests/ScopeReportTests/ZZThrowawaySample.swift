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
