import Foundation
import ScopeBench
import ScopeReport
import Testing

/// The decode floor a point carries (weights and cache over the measured copy bandwidth) is shown as a fraction of
/// its TPOT in the text table, the HTML report and the markdown summary; points without one (the torch peer, older
/// results) leave the column out or blank.
@Suite struct DecodeFloorTests {
    func point(floor: Double?) -> PointResult { samplePoint(tpot: 0.002, decodeFloorSeconds: floor) }

    @Test func theFractionOfTheFloorIsShownWhereItIsKnown() {
        let p = point(floor: 0.00096)
        #expect(p.decodeFloorFraction == 0.00096 / 0.002)
        let text = ResultTables.points([p, point(floor: nil)], failures: [])
        #expect(text.contains("floor/TPOT") && text.contains("48%"))
        let data = ReportData(title: "t", runs: [], points: [p], failures: [], maxContexts: [],
                              memoryCapacityBytes: nil, predictions: [])
        #expect(HTMLReport.render(data).contains("decode floor / TPOT") && HTMLReport.render(data).contains(">48%<"))
        #expect(MarkdownSummary.render(data).contains("| 48% |"))
    }

    @Test func pointsWithoutAFloorHaveNoColumn() {
        let data = ReportData(title: "t", runs: [], points: [point(floor: nil)], failures: [], maxContexts: [],
                              memoryCapacityBytes: nil, predictions: [])
        #expect(!ResultTables.points([point(floor: nil)], failures: []).contains("floor"))
        #expect(!HTMLReport.render(data).contains("decode floor"))
    }

    @Test func resultsWrittenBeforeTheFloorStillDecode() throws {
        var json = try JSONEncoder().encode(point(floor: nil))
        let text = String(decoding: json, as: UTF8.self)
        #expect(!text.contains("decodeFloorSeconds"))
        json = Data(text.utf8)
        #expect(try JSONDecoder().decode(PointResult.self, from: json).decodeFloorSeconds == nil)
        let measured = try JSONEncoder().encode(point(floor: 0.001))
        #expect(try JSONDecoder().decode(PointResult.self, from: measured).decodeFloorSeconds == 0.001)
    }
}
