import Foundation
import ScopeCPU
import ScopeEngine
import ScopeModels
import Testing

@Suite struct SafetensorsTests {
    let spec = try! inlineSpec(#"{"model_type": "mamba", "hidden_size": 8, "num_hidden_layers": 1, "vocab_size": 16, "state_size": 4, "time_step_rank": 2, "tie_word_embeddings": true}"#)

    /// Every tensor the tiny Mamba spec expects, with its HF name and shape.
    var expected: [(String, [Int])] {
        [("backbone.embeddings.weight", [16, 8]), ("backbone.norm_f.weight", [8]),
         ("backbone.layers.0.norm.weight", [8]), ("backbone.layers.0.mixer.in_proj.weight", [32, 8]),
         ("backbone.layers.0.mixer.conv1d.weight", [16, 1, 4]), ("backbone.layers.0.mixer.conv1d.bias", [16]),
         ("backbone.layers.0.mixer.x_proj.weight", [10, 16]), ("backbone.layers.0.mixer.dt_proj.weight", [16, 2]),
         ("backbone.layers.0.mixer.dt_proj.bias", [16]), ("backbone.layers.0.mixer.A_log", [16, 4]),
         ("backbone.layers.0.mixer.D", [16]), ("backbone.layers.0.mixer.out_proj.weight", [8, 16])]
    }

    func file(_ tensors: [(String, [Int])], dtype: String = "F32") throws -> String {
        let path = temporaryPath("model.safetensors")
        try writeSafetensors(path, tensors.map { ($0.0, $0.1, [Float](repeating: 0.01, count: $0.1.reduce(1, *))) },
                             dtype: dtype)
        return path
    }

    func load(_ path: String) throws {
        _ = try ModelWeights(spec: spec, source: try SafetensorsWeights(path: path), type: .fp32, backend: CPUBackend())
    }

    @Test func aCompleteCheckpointLoadsAndRuns() throws {
        let path = try file(expected)
        let backend = CPUBackend()
        let weights = try ModelWeights(spec: spec, source: try SafetensorsWeights(path: path), type: .bf16,
                                       backend: backend)
        let logits = try ModelExecutor(spec: spec, weights: weights, backend: backend).prefill([[1, 2, 3]]).logits
        #expect(logits[0].count == 16 && logits[0].allSatisfy { $0.isFinite })
    }

    @Test func missingTensorIsNamedWithItsShape() throws {
        let path = try file(expected.filter { $0.0 != "backbone.layers.0.mixer.D" })
        #expect(thrownMessage { try load(path) } == "\(path): missing tensor 'backbone.layers.0.mixer.D' (expected shape [16])")
    }

    @Test func misshapenTensorIsNamed() throws {
        let path = try file(expected.map { $0.0 == "backbone.layers.0.mixer.x_proj.weight" ? ($0.0, [12, 16]) : $0 })
        #expect(thrownMessage { try load(path) }
            == "\(path): tensor 'backbone.layers.0.mixer.x_proj.weight' has shape [12, 16] but the config implies [10, 16]")
    }

    @Test func extraTensorIsNamed() throws {
        let path = try file(expected + [("lm_head.weight", [16, 8])])
        #expect(thrownMessage { try load(path) }?.contains("unexpected tensor 'lm_head.weight' (shape [16, 8])") == true)
    }

    @Test func malformedFilesAreRejected() throws {
        let int8 = try file(expected, dtype: "I8")
        #expect(thrownMessage { try load(int8) }?.contains("has dtype I8; ssm-scope reads F32, BF16 and F16") == true)
        let garbage = temporaryPath("garbage.safetensors")
        try Data("not a safetensors file at all".utf8).write(to: URL(fileURLWithPath: garbage))
        #expect(thrownMessage { try load(garbage) }?.contains("not a safetensors file") == true)
        #expect(thrownMessage { try load("/no/such.safetensors") } == "cannot open '/no/such.safetensors': no such file or not readable")
    }
}
