#if canImport(Glibc)
import Glibc
#endif
import ScopeEngine
import Testing
@testable import ScopeCUDA

@Suite struct EnergyMeterTests {
    @Test func integratesSamplesIntoJoulesAverageAndPeak() throws {
        // 100 W for the first second, rising linearly to 300 W over the next, held there for the last second.
        let readings = [PowerReading(time: 10.5, watts: 100), PowerReading(time: 11.0, watts: 100),
                        PowerReading(time: 12.0, watts: 300), PowerReading(time: 12.5, watts: 300)]
        let sample = try #require(EnergyMeter.summarize(readings.reversed(), start: 10, end: 13))
        // 100 J + (100 + 300) / 2 J + 300 J.
        #expect(abs(sample.joules - 600) < 1e-9)
        #expect(abs(sample.seconds - 3) < 1e-9)
        #expect(abs(sample.averageWatts - 200) < 1e-9)
        #expect(sample.peakWatts == 300)
    }

    @Test func clampsReadingsToTheRegionAndPrefersTheCounter() throws {
        // A reading after the region's end counts towards the peak but adds no time.
        let readings = [PowerReading(time: 0.004, watts: 250), PowerReading(time: 0.030, watts: 400)]
        let integral = try #require(EnergyMeter.summarize(readings, start: 0, end: 0.02))
        #expect(abs(integral.joules - (250 * 0.004 + (250 + 400) / 2 * 0.016)) < 1e-9)
        #expect(integral.peakWatts == 400)
        let counted = try #require(EnergyMeter.summarize(readings, start: 0, end: 0.02, counterJoules: 9))
        #expect(counted.joules == 9)
        #expect(abs(counted.averageWatts - 450) < 1e-9)
        #expect(counted.peakWatts == counted.averageWatts)  // the peak is at least the average
    }

    @Test func noReadingsOrAnEmptyRegionGiveNil() {
        #expect(EnergyMeter.summarize([], start: 0, end: 1) == nil)
        #expect(EnergyMeter.summarize([PowerReading(time: 0, watts: 1)], start: 1, end: 1) == nil)
    }

    @Test func aLibraryWithoutNVMLSymbolsGivesNoMeter() throws {
        // libc opens everywhere and has none of NVML's functions: no meter, no crash, no error.
        let handle = try #require(dlopen("libc.so.6", RTLD_NOW))
        let library = LoadedLibrary(what: "libc", path: "libc.so.6", origin: "test", handle: handle)
        #expect(NVMLPowerFunctions(library: library) == nil)
        #expect(try EnergyMeter(library: library, pciBusId: nil, index: 0, interval: 0.01) == nil)
    }

    @Test func noNVMLOnTheMachineGivesNoMeter() throws {
        // With NVML on the machine (a GPU box) this opens a real meter or reports no readings; without it, nil.
        guard (try? NVML()) == nil else { return }
        #expect(try EnergyMeter.open(pciBusId: nil, index: 0, locations: []) == nil)
    }
}
