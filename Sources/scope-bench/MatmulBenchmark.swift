import Foundation
import ScopeCPU
import ScopeEngine
import ScopeCost
import ScopeSupport

/// Swift GEMM throughput beside numpy (OpenBLAS) on the same machine in the same run.
enum MatmulBenchmark {
    static let sizes = [256, 512, 1024, 2048]

    static func run() {
        print("CPU matrix multiply, fp32, \(Parallel.workers) threads; GFLOP/s = 2 n^3 / median of 5 runs")
        var table = TextTable(header: ["n", "swift gemm", "swift linear fp32", "swift linear bf16", "numpy", "gemm / numpy"],
                              rightAligned: Set(0...5))
        let numpy = numpyGflops()
        for n in sizes {
            let gemm = swiftGflops(n, weightType: nil)
            let linear32 = swiftGflops(n, weightType: .fp32)
            let linear16 = swiftGflops(n, weightType: .bf16)
            let reference = numpy[n]
            table.rows.append([String(n), Format.fixed(gemm, 1), Format.fixed(linear32, 1), Format.fixed(linear16, 1),
                               reference.map { Format.fixed($0, 1) } ?? "n/a",
                               reference.map { Format.fixed(gemm / $0, 2) + "x" } ?? "n/a"])
        }
        print(table.render())
        if numpy.isEmpty { print("numpy: not available (python3 -m pip install numpy)") }
        let host = HostCalibration.device(name: "host")
        print("host calibration: gemm 512^3 \(Format.fixed(host.matrixRate(.fp32) / 1e9, 1)) GFLOP/s, fma loop "
            + "\(Format.fixed(host.vectorRate / 1e9, 1)) GFLOP/s, 256 MiB copy "
            + "\(Format.fixed(host.memoryBandwidthBytesPerSecond / 1e9, 1)) GB/s (read + write)")
        let gemv = gemvSeconds(2048)
        print("GEMV m=1, k=n=2048, fp32 weights: \(Format.duration(gemv)) "
            + "(\(Format.fixed(2048.0 * 2048 * 4 / gemv / 1e9, 1)) GB/s of weights)")
    }

    /// Median GFLOP/s of Matmul.gemm (weightType nil) or Matmul.linear with weights stored as `weightType`.
    static func swiftGflops(_ n: Int, weightType: ElementType?) -> Double {
        var a = [Float](repeating: 0, count: n * n), b = a, c = a
        var rng = SplitMix64(seed: 1)
        for i in 0..<(n * n) {
            a[i] = Float(rng.uniform(-1, 1))
            b[i] = Float(rng.uniform(-1, 1))
        }
        let bf16 = b.map(ElementConversion.bf16)
        var times: [Double] = []
        for _ in 0..<6 {
            let start = CPUBackend.now()
            a.withUnsafeBufferPointer { pa in
                c.withUnsafeMutableBufferPointer { pc in
                    switch weightType {
                    case nil:
                        b.withUnsafeBufferPointer { pb in
                            Matmul.gemm(a: pa.baseAddress!, b: pb.baseAddress!, c: pc.baseAddress!, m: n, n: n, k: n)
                        }
                    case .bf16?:
                        bf16.withUnsafeBytes { pb in
                            Matmul.linear(x: pa.baseAddress!, m: n, k: n, weight: pb.baseAddress!, weightType: .bf16,
                                          n: n, bias: nil, out: pc.baseAddress!)
                        }
                    default:
                        b.withUnsafeBytes { pb in
                            Matmul.linear(x: pa.baseAddress!, m: n, k: n, weight: pb.baseAddress!, weightType: .fp32,
                                          n: n, bias: nil, out: pc.baseAddress!)
                        }
                    }
                }
            }
            times.append(CPUBackend.now() - start)
        }
        times.removeFirst()
        return 2 * pow(Double(n), 3) / times.sorted()[times.count / 2] / 1e9
    }

    static func gemvSeconds(_ n: Int) -> Double {
        let x = [Float](repeating: 0.5, count: n), w = [Float](repeating: 0.25, count: n * n)
        var out = [Float](repeating: 0, count: n)
        var times: [Double] = []
        for _ in 0..<21 {
            let start = CPUBackend.now()
            x.withUnsafeBufferPointer { px in
                w.withUnsafeBytes { pw in
                    out.withUnsafeMutableBufferPointer { po in
                        Matmul.linear(x: px.baseAddress!, m: 1, k: n, weight: pw.baseAddress!, weightType: .fp32, n: n,
                                      bias: nil, out: po.baseAddress!)
                    }
                }
            }
            times.append(CPUBackend.now() - start)
        }
        return times.sorted()[times.count / 2]
    }

    /// numpy's GFLOP/s per size, from a python3 subprocess (empty when python3 or numpy is missing). The
    /// OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE overrides some machines set are removed so OpenBLAS picks its kernel.
    static func numpyGflops() -> [Int: Double] {
        let script = """
            import time, numpy as np
            for n in \(sizes):
                a = np.random.rand(n, n).astype(np.float32); b = np.random.rand(n, n).astype(np.float32)
                ts = []
                for _ in range(6):
                    t = time.perf_counter(); a @ b; ts.append(time.perf_counter() - t)
                ts = sorted(ts[1:]); print(n, 2 * n**3 / ts[len(ts)//2] / 1e9)
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script]
        var environment = ProcessInfo.processInfo.environment
        environment["OPENBLAS_CORETYPE"] = nil
        environment["OPENBLAS_L2_SIZE"] = nil
        process.environment = environment
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return [:] }
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        var result: [Int: Double] = [:]
        for line in output.split(separator: "\n") {
            let parts = line.split(separator: " ")
            if parts.count == 2, let n = Int(parts[0]), let g = Double(parts[1]) { result[n] = g }
        }
        return result
    }
}
