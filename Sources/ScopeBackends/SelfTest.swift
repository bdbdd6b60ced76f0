import ScopeCPU
import ScopeCUDA
import ScopeEngine
import ScopeModels
import ScopeSupport

/// One comparison of the CUDA backend with a reference.
public struct SelfTestResult: Sendable {
    public let group: String
    public let name: String
    /// max |gpu - reference| / max |reference|.
    public let error: Double
    public let tolerance: Double
    /// Set when the check could not run (the error's message).
    public let failure: String?

    public var passed: Bool { failure == nil && error.isFinite && error < tolerance }
}

/// `selftest`: every CUDA kernel against the CPU backend on random inputs, every golden fixture through the
/// executor on the CUDA backend, and prefill/step parity, with bf16 and again with fp16 weights and activations; a
/// table and the number of failures.
public enum CUDASelfTest {
    /// Runs every check. `fixtures` is the folder of golden fixtures (Tests/ScopeEngineTests/Fixtures).
    public static func run(fixtures: String, progress: @escaping (String) -> Void = { _ in }) throws
        -> [SelfTestResult] {
        let gpu = try CUDABackend()
        progress("GPU: \(gpu.device.name); kernels compiled or loaded from \(KernelCache.defaultDirectory())")
        let report = { (r: SelfTestResult) in progress("  \(r.passed ? "ok  " : "FAIL") \(r.group): \(r.name)") }
        var results = try KernelChecks(gpu: gpu, report: report).run()
        results += ModelChecks(gpu: gpu).run(fixtures: fixtures) { progress("  checking \($0)") }
        // The same models with fp16 weights and activations (every kernel module compiled for fp16).
        let half = try CUDABackend(activations: .fp16)
        results += ModelChecks(gpu: half).run(fixtures: fixtures) { progress("  checking \($0) in fp16") }
        return results
    }

    /// One line with the energy of a prefill (catalog `model` with random bf16 weights, `tokens` tokens in one pass,
    /// after one unmeasured warm-up prefill), or a line saying why there is none (no power readings, an NVML error).
    public static func energyLine(model: String = "mamba2-130m", tokens: Int = 16384) -> String {
        do {
            let gpu = try CUDABackend()
            let spec = try ModelCatalog.resolve(model)
            let weights = try ModelWeights(spec: spec, source: RandomWeights(seed: 11), type: .bf16, backend: gpu)
            let executor = ModelExecutor(spec: spec, weights: weights, backend: gpu)
            var rng = SplitMix64(seed: 7)
            let ids = [(0..<tokens).map { _ in Int32(rng.next() % UInt64(spec.vocabSize)) }]
            _ = try executor.prefill(ids, capacity: tokens + 1, chunking: .onePass)
            guard let sample = try gpu.measureEnergy({ _ = try executor.prefill(ids, capacity: tokens + 1, chunking: .onePass) })
            else { return "energy: \(gpu.device.name) reports no power readings" }
            return "energy: \(model) prefill of \(tokens) tokens: \(Format.significant(sample.joules, 3)) J in "
                + "\(Format.significant(sample.seconds * 1000, 3)) ms, average \(Format.significant(sample.averageWatts, 3)) W, "
                + "peak \(Format.significant(sample.peakWatts, 3)) W"
        } catch {
            return "energy: not measured: \(error)"
        }
    }

    /// The results as a table, one row per check.
    public static func table(_ results: [SelfTestResult]) -> String {
        var table = TextTable(header: ["group", "check", "rel. error", "tolerance", "result"], rightAligned: [2, 3])
        for r in results {
            table.rows.append([r.group, r.name, r.failure == nil ? Format.significant(r.error, 2) : "-",
                               Format.significant(r.tolerance, 1), r.passed ? "ok" : "FAIL " + (r.failure ?? "")])
        }
        let failed = results.filter { !$0.passed }.count
        return table.render() + "\n\(results.count - failed) passed, \(failed) failed"
    }

    /// max |a - b| / max(max |b|, 1e-6); infinite when the counts differ or any value is not finite.
    static func relativeError(_ a: [Float], _ b: [Float]) -> Double {
        guard a.count == b.count else { return .infinity }
        var diff = 0.0, scale = 1e-6
        for (x, y) in zip(a, b) {
            guard x.isFinite, y.isFinite else { return .infinity }
            diff = max(diff, Double(abs(x - y)))
            scale = max(scale, Double(abs(y)))
        }
        return diff / scale
    }
}
