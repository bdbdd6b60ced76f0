import ScopeBench
import ScopeReport
import Testing

/// Energy columns appear in the report and the text table only when some point was metered.
@Suite struct EnergyReportTests {
    func point(energy: EnergyResult?) -> PointResult { samplePoint(tpot: 0.005, energy: energy) }

    @Test func meteredPointsShowJoulesAndWatts() {
        let metered = point(energy: EnergyResult(joulesPerPrefill: 118.1, joulesPerToken: 2.42, averageWatts: 438,
                                                 peakWatts: 488))
        let data = ReportData(title: "t", runs: [], points: [metered], failures: [], maxContexts: [],
                              memoryCapacityBytes: nil, predictions: [])
        let html = HTMLReport.render(data)
        #expect(html.contains("J / prefill") && html.contains(">118</td>") && html.contains("438 / 488"))
        let text = ResultTables.points([metered], failures: [])
        #expect(text.contains("J/prefill") && text.contains("2.42"))
    }

    @Test func unmeteredRunsHaveNoEnergyColumns() {
        let data = ReportData(title: "t", runs: [], points: [point(energy: nil)], failures: [], maxContexts: [],
                              memoryCapacityBytes: nil, predictions: [])
        #expect(!HTMLReport.render(data).contains("J / prefill"))
        #expect(!ResultTables.points([point(energy: nil)], failures: []).contains("J/prefill"))
    }
}
