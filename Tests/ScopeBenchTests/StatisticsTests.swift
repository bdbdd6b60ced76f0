import ScopeBench
import Testing

@Suite struct StatisticsTests {
    @Test func oddCount() {
        let s = Statistics([3, 1, 2, 5, 4])
        #expect(s.count == 5 && s.median == 3 && s.mean == 3 && s.min == 1 && s.max == 5)
        // Sample standard deviation: sqrt((4 + 1 + 0 + 1 + 4) / 4).
        #expect(abs(s.stddev - (10.0 / 4).squareRoot()) < 1e-12)
    }

    @Test func evenCountTakesTheMeanOfTheMiddlePair() {
        let s = Statistics([10, 2, 4, 8])
        #expect(s.median == 6 && s.mean == 6 && s.min == 2 && s.max == 10)
    }

    @Test func singleSampleHasNoSpread() {
        let s = Statistics([0.25])
        #expect(s.median == 0.25 && s.stddev == 0 && s.count == 1)
    }

    @Test func protocolSettingsRejectUnsoundValues() {
        #expect(throws: (any Error).self) { try ProtocolSettings(repeats: 0).validate() }
        #expect(throws: (any Error).self) { try ProtocolSettings(decodeSteps: 8).validate() }
        #expect(throws: (any Error).self) { try ProtocolSettings(warmups: -1).validate() }
        #expect(throws: Never.self) { try ProtocolSettings().validate() }
    }
}
