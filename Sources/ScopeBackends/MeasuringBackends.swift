import ScopeBench
import ScopeSupport
import ScopeTorch

/// The backends both executables measure on: the in-process engines of `BackendRegistry` and the PyTorch peer
/// ("torch"), plus the alias "native" for the best in-process engine of this machine.
public enum MeasuringBackends {
    public static let native = "native"

    /// Backend names a plan may use.
    public static var names: [String] { BackendRegistry.names + [TorchMeasurer.backendName] }

    /// For --backend help texts.
    public static var help: String {
        "Backend: \((names + [native]).joined(separator: ", ")) (native: the GPU engine where there is one, else cpu)."
    }

    /// The plan with "native" replaced by this machine's in-process engine: the GPU engine where the registry
    /// lists one (it lists only those this machine can run), else the CPU.
    public static func resolve(_ plan: SweepPlan) -> SweepPlan {
        guard plan.backends.contains(native) else { return plan }
        let engine = BackendRegistry.names.first { $0 != "cpu" } ?? "cpu"
        var resolved = plan, seen = Set<String>()
        resolved.backends = plan.backends.map { $0 == native ? engine : $0 }.filter { seen.insert($0).inserted }
        return resolved
    }

    /// Checks a plan (after `resolve`).
    public static func validate(_ plan: SweepPlan) throws {
        if let error = plan.backends.lazy.compactMap(BackendRegistry.unavailable).first { throw error }
        try plan.validate(knownBackends: names)
        if plan.maxContext && plan.backends.contains(TorchMeasurer.backendName) {
            throw ScopeError("--max-context searches the memory schedule of ssm-scope's own engines and cannot run "
                + "on the torch backend; drop --max-context or leave torch out of that sweep")
        }
    }

    /// A measurer for every backend name: the native runner for in-process engines, a torch worker for "torch".
    public static func measurers(native runner: NativeRunner, plan: SweepPlan) -> [String: PointMeasurer] {
        var measurers: [String: PointMeasurer] = Dictionary(uniqueKeysWithValues: BackendRegistry.names.map { ($0, runner) })
        measurers[TorchMeasurer.backendName] = TorchMeasurer(settings: plan.settings, memoryLimit: plan.memoryLimit)
        return measurers
    }

    /// A sweep of `plan` into `sink`: the native runner for in-process engines, a torch worker for "torch", and
    /// max-context searches by allocation probe under the plan's memory limit (or the backend's memory).
    public static func sweep(plan: SweepPlan, sink: ResultSink, run: Int64, skip: Set<String>,
                             progress: ProgressLine) -> SweepRunner {
        let runner = NativeRunner(settings: plan.settings, memoryLimit: plan.memoryLimit,
                                  copyBandwidth: BackendRegistry.copyBandwidth(of:)) { name, limit, dtype in
            try BackendRegistry.make(name, memoryLimit: limit, dtype: dtype)
        }
        return SweepRunner(plan: plan, measurers: measurers(native: runner, plan: plan), sink: sink, run: run,
                           skip: skip, progress: progress) { point in
            try MaxContextProbe.search(model: point.model, batch: point.batch, dtype: point.dtype,
                                       backend: point.backend,
                                       memoryLimit: plan.memoryLimit ?? BackendRegistry.memoryCapacity(of: point.backend),
                                       measure: false, prefillChunking: plan.settings.prefillChunking, progress: nil)
        }
    }

    /// The sweep to run when no model is given, for the backends named: the GPU default for the first GPU engine
    /// named (or, where none is named, or only the torch peer, for this machine's GPU engine if it has one), the CPU
    /// default otherwise. A default that includes the torch peer searches no longest context (the peer cannot).
    public static func defaultPlan(for backends: [String]) -> SweepPlan {
        let machineEngine = BackendRegistry.names.first { $0 != "cpu" }
        let engines = backends.map { $0 == native ? machineEngine ?? "cpu" : $0 }
            .filter { $0 != TorchMeasurer.backendName }
        let engine = engines.isEmpty ? machineEngine : engines.first { $0 != "cpu" }
        var plan = engine.map(SweepPlan.gpuDefault) ?? .cpuDefault
        if backends.contains(TorchMeasurer.backendName) { plan.maxContext = false }
        return plan
    }
}
