import Foundation
import ScopeCPU
import ScopeEngine
import ScopeModels
import ScopeSupport
import Testing

/// An executor of `spec` on a fresh CPU backend with seeded random fp32 weights.
func randomExecutor(_ spec: ModelSpec, seed: UInt64 = 7, type: ElementType = .fp32,
                    memoryLimit: Int? = nil) throws -> ModelExecutor {
    let backend = CPUBackend(memoryLimit: memoryLimit)
    let weights = try ModelWeights(spec: spec, source: RandomWeights(seed: seed), type: type, backend: backend)
    return ModelExecutor(spec: spec, weights: weights, backend: backend)
}

/// Imports an inline config.
func inlineSpec(_ json: String, name: String = "inline") throws -> ModelSpec {
    try HFConfigImporter.importConfig(try JSONValue.parse(json), name: name, source: "test.json")
}

/// Token ids from a seeded generator.
func tokens(_ count: Int, vocab: Int, seed: UInt64 = 1) -> [Int32] {
    var rng = SplitMix64(seed: seed)
    return (0..<count).map { _ in Int32(rng.next() % UInt64(vocab)) }
}

/// max |a - b| / max(max |b|, 1e-6): relative error of a logits vector.
func relativeError(_ a: [Float], _ b: [Float]) -> Double {
    precondition(a.count == b.count)
    var diff = 0.0, scale = 1e-6
    for (x, y) in zip(a, b) {
        diff = max(diff, Double(abs(x - y)))
        scale = max(scale, Double(abs(y)))
    }
    return diff / scale
}

/// The message of a thrown error, or nil.
func thrownMessage(_ body: () throws -> Void) -> String? {
    do {
        try body()
        return nil
    } catch {
        return "\(error)"
    }
}

/// Writes a safetensors file with fp32 tensors (name, shape, values), optionally with another dtype label.
func writeSafetensors(_ path: String, _ tensors: [(String, [Int], [Float])], dtype: String = "F32") throws {
    var header: [String: Any] = [:]
    var data = Data()
    for (name, shape, values) in tensors {
        let start = data.count
        for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { data.append(contentsOf: $0) } }
        header[name] = ["dtype": dtype, "shape": shape, "data_offsets": [start, data.count]]
    }
    let json = try JSONSerialization.data(withJSONObject: header)
    var file = Data()
    withUnsafeBytes(of: UInt64(json.count).littleEndian) { file.append(contentsOf: $0) }
    file.append(json)
    file.append(data)
    try file.write(to: URL(fileURLWithPath: path))
}

/// A unique path under the temporary directory.
func temporaryPath(_ name: String) -> String {
    FileManager.default.temporaryDirectory.appendingPathComponent("ssm-scope-\(UUID().uuidString)-\(name)").path
}
