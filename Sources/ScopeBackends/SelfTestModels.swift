#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import ScopeCUDA
import ScopeEngine
import ScopeModels
import ScopeSupport

/// Whole models on the CUDA backend with bf16 weights: the golden fixtures' Hugging Face fp32 logits (prefill of
/// all 24 tokens and every decode step) to 5e-2, and prefill/step parity (the last logits of one prefill against
/// a shorter prefill followed by decode steps) to 3e-2, on the fixtures and on catalog shapes with random weights.
/// bf16 rounds weights and activations to 8 significant bits, about 4e-3 each, and a few layers compound that.
/// Decode steps replayed from a recorded graph are also checked against the same steps issued one by one.
struct ModelChecks {
    static let fixtureTolerance = 5e-2
    static let parityTolerance = 3e-2
    /// Replayed and issued steps run the same kernels; only the split-KV partition of the keys differs.
    static let replayTolerance = 1e-2
    /// Catalog models whose real shapes run the chunked SSD, the scan and the tensor-core attention paths.
    static let catalogModels = ["mamba2-130m", "mamba-130m"]

    let gpu: CUDABackend

    /// The weights' type: the activation type of `gpu` (bf16 or fp16).
    private var weightType: ElementType { gpu.activationType }

    /// "fixtures", or "fixtures fp16" when the backend computes in fp16.
    private func group(_ name: String) -> String { gpu.activationType == .bf16 ? name : "\(name) fp16" }

    /// `starting` is told the name of each fixture or model before it runs.
    func run(fixtures: String, starting: (String) -> Void) -> [SelfTestResult] {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: fixtures)) ?? [])
            .filter { FileManager.default.fileExists(atPath: "\(fixtures)/\($0)/expected.json") }.sorted()
        var results: [SelfTestResult] = []
        if names.isEmpty {
            results.append(failure("fixtures", "golden fixtures", "none found in \(fixtures) (pass --fixtures)"))
        }
        for name in names {
            starting(name)
            do {
                results += try fixture(name, folder: "\(fixtures)/\(name)")
            } catch {
                results.append(failure(group("fixtures"), name, "\(error)"))
            }
        }
        for model in Self.catalogModels {
            starting(model)
            do {
                let spec = try ModelCatalog.resolve(model)
                let weights = try ModelWeights(spec: spec, source: RandomWeights(seed: 11), type: weightType,
                                               backend: gpu)
                var rng = SplitMix64(seed: 5)
                let ids = (0..<300).map { _ in Int32(rng.next() % UInt64(spec.vocabSize)) }
                results.append(try parity(ModelExecutor(spec: spec, weights: weights, backend: gpu), ids: ids,
                                          split: 290, label: model))
            } catch {
                results.append(failure(group("parity"), model, "\(error)"))
            }
        }
        return results
    }

    private func fixture(_ name: String, folder: String) throws -> [SelfTestResult] {
        let spec = try HFConfigImporter.load(path: folder + "/config.json", name: name)
        guard let data = FileManager.default.contents(atPath: folder + "/expected.json") else {
            throw ScopeError("cannot read \(folder)/expected.json")
        }
        let json = try JSONValue.parse(data)
        let ids = (json["input_ids"]?.arrayValue ?? []).compactMap { $0.intValue.map(Int32.init) }
        let expected = (json["logits"]?.arrayValue ?? []).map { ($0.arrayValue ?? []).map { Float($0.doubleValue ?? .nan) } }
        guard !ids.isEmpty, expected.count == ids.count else { throw ScopeError("\(folder)/expected.json is malformed") }
        let weights = try ModelWeights(spec: spec, source: try SafetensorsWeights(path: folder + "/model.safetensors"),
                                       type: weightType, backend: gpu)
        let executor = ModelExecutor(spec: spec, weights: weights, backend: gpu)
        let prefill = try executor.prefill([ids]).logits[0]
        let cache = try executor.makeCache(batch: 1, capacity: ids.count)
        var worstStep = 0.0, recordedSteps: [[Float]] = []
        for (t, token) in ids.enumerated() {
            let logits = try executor.step([token], cache: cache)[0]
            worstStep = max(worstStep, CUDASelfTest.relativeError(logits, expected[t]))
            recordedSteps.append(logits)
        }
        // The same steps issued operator by operator, against the replays of the recorded (graph) step.
        executor.recordsSteps = false
        defer { executor.recordsSteps = true }
        let issuedCache = try executor.makeCache(batch: 1, capacity: ids.count)
        var worstReplay = 0.0
        for (t, token) in ids.enumerated() {
            let logits = try executor.step([token], cache: issuedCache)[0]
            worstReplay = max(worstReplay, CUDASelfTest.relativeError(recordedSteps[t], logits))
        }
        return [
            SelfTestResult(group: group("fixtures"), name: "\(name) prefill \(ids.count) vs HF",
                           error: CUDASelfTest.relativeError(prefill, expected[ids.count - 1]),
                           tolerance: Self.fixtureTolerance, failure: nil),
            SelfTestResult(group: group("fixtures"), name: "\(name) \(ids.count) decode steps vs HF", error: worstStep,
                           tolerance: Self.fixtureTolerance, failure: nil),
            SelfTestResult(group: group("graphs"), name: "\(name) \(ids.count) replayed steps vs issued steps",
                           error: worstReplay, tolerance: Self.replayTolerance, failure: nil),
            try parity(executor, ids: ids, split: ids.count - 5, label: name),
        ]
    }

    /// Last logits of prefill(ids) against prefill(ids[..<split]) then one step per remaining token.
    private func parity(_ executor: ModelExecutor, ids: [Int32], split: Int, label: String) throws -> SelfTestResult {
        let whole = try executor.prefill([ids]).logits[0]
        var (logits, cache) = try executor.prefill([Array(ids[..<split])], capacity: ids.count)
        for token in ids[split...] { logits = try executor.step([token], cache: cache) }
        return SelfTestResult(group: group("parity"), name: "\(label): prefill \(ids.count) vs \(split) + steps",
                              error: CUDASelfTest.relativeError(logits[0], whole), tolerance: Self.parityTolerance,
                              failure: nil)
    }

    private func failure(_ group: String, _ name: String, _ message: String) -> SelfTestResult {
        SelfTestResult(group: group, name: name, error: .infinity, tolerance: 0, failure: message)
    }
}
