import Foundation
import ScopeCPU
import ScopeEngine
import ScopeModels
import ScopeSupport
import Testing

/// Logits of tiny Hugging Face models (made by tools/reference/make_fixtures.py) reproduced by the CPU engine in
/// fp32: the prefill of every prefix length, and decode steps, to a relative error under 1e-4.
@Suite struct GoldenFixtureTests {
    static let folder = Bundle.module.resourceURL!.appendingPathComponent("Fixtures")

    static var names: [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? [])
            .filter { FileManager.default.fileExists(atPath: folder.appendingPathComponent("\($0)/expected.json").path) }
            .sorted()
    }

    struct Expected: Decodable {
        let model_type: String
        let input_ids: [Int32]
        let logits: [[Float]]
    }

    @Test func fixturesArePresent() {
        for family in ["llama", "qwen2", "mamba", "mamba2", "bamba", "nemotron_h"] {
            #expect(Self.names.contains(family), "missing fixture \(family)")
        }
    }

    @Test(arguments: names)
    func logitsMatchTransformers(name: String) throws {
        let dir = Self.folder.appendingPathComponent(name)
        let spec = try HFConfigImporter.load(path: dir.appendingPathComponent("config.json").path, name: name)
        let expected = try JSONDecoder().decode(Expected.self,
                                                from: Data(contentsOf: dir.appendingPathComponent("expected.json")))
        let backend = CPUBackend()
        let weights = try ModelWeights(spec: spec, source: try SafetensorsWeights(path: dir.appendingPathComponent("model.safetensors").path),
                                       type: .fp32, backend: backend)
        let executor = ModelExecutor(spec: spec, weights: weights, backend: backend)
        let ids = expected.input_ids
        // Decode: every position's logits from single steps.
        let cache = try executor.makeCache(batch: 1, capacity: ids.count)
        for (t, token) in ids.enumerated() {
            let logits = try executor.step([token], cache: cache)[0]
            #expect(relativeError(logits, expected.logits[t]) < 1e-4, "\(name) step \(t)")
        }
        // Prefill of several prefix lengths.
        for length in [1, 5, 8, 9, 16, ids.count] where length <= ids.count {
            let logits = try executor.prefill([Array(ids[0..<length])]).logits[0]
            #expect(relativeError(logits, expected.logits[length - 1]) < 1e-4, "\(name) prefill \(length)")
        }
    }
}
