import Foundation
import ScopeCPU
import ScopeEngine
import ScopeModels
import ScopeSupport

/// Prefill and decode speed of the tiny catalog models on the CPU engine over growing contexts, with the
/// exponent of prefill-time growth between consecutive contexts (1 = linear, 2 = quadratic).
enum EngineBenchmark {
    static func run(maxContext: Int) {
        print("CPU engine, fp32 weights, batch 1, \(Parallel.workers) threads; prefill = one pass over L tokens, "
            + "decode = median of 16 steps at context L")
        var table = TextTable(header: ["model", "context", "prefill", "prefill tok/s", "growth exp.", "decode step",
                                       "decode tok/s", "logits finite"], rightAligned: Set(1...6))
        for name in ModelCatalog.tinyModels {
            do {
                let spec = try ModelCatalog.spec(named: name)
                let backend = CPUBackend()
                let weights = try ModelWeights(spec: spec, source: RandomWeights(seed: 0), type: .fp32, backend: backend)
                let executor = ModelExecutor(spec: spec, weights: weights, backend: backend)
                var previous: (Int, Double)?
                var context = 1024
                while context <= maxContext {
                    var rng = SplitMix64(seed: 3)
                    let prompt = (0..<context).map { _ in Int32(rng.next() % UInt64(spec.vocabSize)) }
                    var result: (logits: [[Float]], cache: InferenceCache)?
                    let prefill = try backend.timeRegion { result = try executor.prefill([prompt], capacity: context + 17) }
                    var (logits, cache) = result!
                    var steps: [Double] = []
                    for _ in 0..<16 {
                        let next = Greedy.argmax(logits[0])
                        steps.append(try backend.timeRegion { logits = try executor.step([next], cache: cache) })
                    }
                    let step = steps.sorted()[8]
                    let growth = previous.map { log(prefill / $0.1) / log(Double(context) / Double($0.0)) }
                    table.rows.append([name, Format.tokens(context), Format.duration(prefill),
                                       Format.count(Double(context) / prefill),
                                       growth.map { Format.fixed($0, 2) } ?? "", Format.duration(step),
                                       Format.count(1 / step), String(logits[0].allSatisfy { $0.isFinite })])
                    previous = (context, prefill)
                    context *= 2
                }
            } catch {
                print("\(name): \(error)")
            }
        }
        print(table.render())
    }
}
