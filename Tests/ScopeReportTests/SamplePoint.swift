import ScopeBench

/// A measured cuda point of a 4K context for the report tests: TTFT 0.5 s, the given TPOT (16 steps), optional
/// energy and decode floor.
func samplePoint(tpot: Double, energy: EnergyResult? = nil, decodeFloorSeconds: Double? = nil) -> PointResult {
    let s = Statistics([0.5, 0.5, 0.5])
    return PointResult(config: PointConfig(model: "m", context: 4096, backend: "cuda", dtype: "bf16"), ttft: s,
                       tpot: Statistics(Array(repeating: tpot, count: 16)), endToEnd: s,
                       prefillTokensPerSecond: 8192, decodeTokensPerSecond: 1 / tpot, peakEngineBytes: 1 << 30,
                       weightBytes: 1 << 29, cacheBytes: 1 << 20, peakProcessBytes: 1 << 31, prefillBreakdown: [:],
                       decodeBreakdown: [:], energy: energy, notes: "", decodeFloorSeconds: decodeFloorSeconds)
}
