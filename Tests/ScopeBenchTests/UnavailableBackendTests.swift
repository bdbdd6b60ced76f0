import ScopeBackends
import ScopeBench
import ScopeSupport
import Testing

/// Asking for the CUDA engine on a machine without a GPU names the reason and the fix before anything runs.
@Suite struct UnavailableBackendTests {
    @Test(.enabled(if: !BackendRegistry.names.contains("cuda"), "this machine has a GPU"))
    func cudaWithoutAGPUSaysWhy() throws {
        let plan = SweepPlan(models: ["tiny-llama"], contexts: [512], backends: ["cuda"])
        let expected = ScopeError("backend 'cuda' is unavailable: no NVIDIA GPU or CUDA driver here "
            + "(run 'doctor' for details); available: cpu")
        #expect(throws: expected) { try MeasuringBackends.validate(plan) }
        #expect(throws: expected) { _ = try BackendRegistry.make("cuda", memoryLimit: nil) }
        #expect(BackendRegistry.unavailable("cpu") == nil && BackendRegistry.unavailable("torch") == nil)
    }

    /// With no model, the default sweep follows the backends asked for, so that the backend named is the one checked
    /// (and measured), not this machine's default.
    @Test func theDefaultSweepFollowsTheBackendsNamed() {
        #expect(MeasuringBackends.defaultPlan(for: ["cpu"]) == .cpuDefault)
        #expect(MeasuringBackends.defaultPlan(for: ["cuda"]) == .gpuDefault(backend: "cuda"))
        #expect(MeasuringBackends.defaultPlan(for: ["cpu", "cuda"]) == .gpuDefault(backend: "cuda"))
        let peer = MeasuringBackends.defaultPlan(for: ["native", "torch"])
        #expect(!peer.maxContext, "the torch peer cannot search a longest context")
        #expect(peer.models == (BackendRegistry.names.contains("cuda") ? SweepPlan.gpuDefault(backend: "cuda").models
                                                                       : SweepPlan.cpuDefault.models))
    }
}
