#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import ScopeCost
import ScopeEngine

/// Measures this machine's CPU as the cost model needs it: matrix rate from `Matmul.gemm`, vector rate from a
/// fused multiply-add loop, and memory bandwidth from a large copy. Takes about a second.
public enum HostCalibration {
    public static func device(name: String) -> Device {
        let matrix = gemmFlops(n: 512)
        let bandwidth = copyBandwidth(megabytes: 256)
        let vector = vectorFlops()
        let memory = Double(sysconf(Int32(_SC_PHYS_PAGES))) * Double(sysconf(Int32(_SC_PAGESIZE)))
        return Device(id: "host-cpu", name: name, kind: "cpu", memoryBytes: memory,
                      memoryBandwidthBytesPerSecond: bandwidth,
                      peakMatrixFlops: ["fp32": matrix, "bf16": matrix, "fp16": matrix],
                      peakVectorFlops: ["fp32": vector], smCount: Parallel.workers, tdpWatts: 0,
                      source: "calibrated at run start: 512^3 gemm, fma loop, 256 MiB copy",
                      notes: "rates are what ssm-scope's own kernels reach on this machine, not datasheet peaks")
    }

    static func now() -> Double { CPUBackend.now() }

    static func gemmFlops(n: Int) -> Double {
        let a = [Float](repeating: 0.5, count: n * n), b = a
        var c = a
        var best = Double.infinity
        for _ in 0..<3 {
            let start = now()
            a.withUnsafeBufferPointer { pa in
                b.withUnsafeBufferPointer { pb in
                    c.withUnsafeMutableBufferPointer { pc in
                        Matmul.gemm(a: pa.baseAddress!, b: pb.baseAddress!, c: pc.baseAddress!, m: n, n: n, k: n)
                    }
                }
            }
            best = min(best, now() - start)
        }
        return 2 * Double(n * n * n) / best
    }

    static func copyBandwidth(megabytes: Int) -> Double {
        let bytes = megabytes << 20
        guard let source = malloc(bytes), let destination = malloc(bytes) else { return 1e10 }
        defer {
            free(source)
            free(destination)
        }
        memset(source, 1, bytes)
        memset(destination, 0, bytes)
        var best = Double.infinity
        for _ in 0..<3 {
            let start = now()
            memcpy(destination, source, bytes)
            best = min(best, now() - start)
        }
        return 2 * Double(bytes) / best  // bytes read plus bytes written
    }

    static func vectorFlops() -> Double {
        let count = 1 << 14, repeats = 200
        let values = [Float](repeating: 1.0001, count: count)
        var sums = [Float](repeating: 0, count: Parallel.workers)
        var best = Double.infinity
        for _ in 0..<3 {
            let start = now()
            values.withUnsafeBufferPointer { input in
                sums.withUnsafeMutableBufferPointer { output in
                    Parallel.forEach(Parallel.workers) { worker in
                        output[worker] = fmaLoop(UnsafeRawPointer(input.baseAddress!), count: count, repeats: repeats)
                    }
                }
            }
            best = min(best, now() - start)
        }
        return sums.reduce(0, +).isNaN ? 0 : 2 * Double(count * repeats * Parallel.workers) / best
    }

    /// Sums v*v over the buffer `repeats` times with 8-wide fused multiply-adds.
    static func fmaLoop(_ raw: UnsafeRawPointer, count: Int, repeats: Int) -> Float {
        var acc = SIMD8<Float>(repeating: 0)
        for _ in 0..<repeats {
            for i in stride(from: 0, to: count, by: 8) {
                let v = raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
                acc.addProduct(v, v)
            }
        }
        return acc.sum()
    }
}
