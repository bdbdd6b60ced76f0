// scope-bench: prints benchmark tables for the CPU backend. Not a test: numbers depend on the machine.
//
//   swift run -c release scope-bench matmul            Swift GEMM GFLOP/s beside numpy's, same run
//   swift run -c release scope-bench engine [MAX]      prefill / decode tokens per second of the tiny models,
//                                                      1K .. MAX tokens (default 32K), with growth exponents
import Foundation
import ScopeCPU
import ScopeEngine
import ScopeModels
import ScopeSupport

let arguments = Array(CommandLine.arguments.dropFirst())
switch arguments.first {
case "matmul": MatmulBenchmark.run()
case "engine":
    let maxContext = arguments.count > 1 ? (try? SizeParsing.tokens(arguments[1])) ?? 32768 : 32768
    EngineBenchmark.run(maxContext: maxContext)
default:
    print("usage: scope-bench matmul | engine [MAX_CONTEXT]")
    exit(arguments.isEmpty ? 0 : 2)
}
