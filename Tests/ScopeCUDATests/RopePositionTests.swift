@testable import ScopeCUDA
import Testing

/// RoPE positions of the form base + t % period are computed on the device instead of uploaded.
@Suite struct RopePositionTests {
    @Test func recognisesContiguousAndBatchedRuns() {
        #expect(CUDABackend.periodicPattern([7]).map { [$0.base, Int32($0.period)] } == [7, 1])
        #expect(CUDABackend.periodicPattern([5, 6, 7, 8]).map { [$0.base, Int32($0.period)] } == [5, 4])
        #expect(CUDABackend.periodicPattern([5, 6, 7, 5, 6, 7]).map { [$0.base, Int32($0.period)] } == [5, 3])
        #expect(CUDABackend.periodicPattern([3, 3]).map { [$0.base, Int32($0.period)] } == [3, 1])
    }

    @Test func othersAreUploaded() {
        #expect(CUDABackend.periodicPattern([5, 6, 9]) == nil)
        #expect(CUDABackend.periodicPattern([5, 6, 7, 5, 7]) == nil)
        #expect(CUDABackend.periodicPattern([0, 37, 74]) == nil)
    }
}
