@testable import ScopeCUDA
import ScopeSupport
import Testing

/// GPUs older than Ampere get one clear error up front instead of a kernel compilation failure at every point.
@Suite struct DeviceSupportTests {
    @Test func preAmpereGPUsAreRefusedWithTheReasonAndTheFix() {
        do {
            try CUDARuntime.requireSupported((7, 5), name: "Tesla T4")
            Issue.record("a compute capability 7.5 GPU was accepted")
        } catch {
            let text = "\(error)"
            #expect(text.contains("Tesla T4 has compute capability 7.5") && text.contains("8.0 or newer")
                    && text.contains("--backend cpu"))
        }
    }

    @Test(arguments: [(8, 0), (8, 6), (8, 7), (8, 9), (9, 0), (10, 0)])
    func ampereAndLaterAreAccepted(_ capability: (Int, Int)) throws {
        try CUDARuntime.requireSupported(capability, name: "GPU")
    }
}
