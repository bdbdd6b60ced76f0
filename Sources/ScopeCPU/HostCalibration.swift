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

    /// The best of three single-threaded copies of `megabytes` MiB, as bytes read plus bytes written per second.
    public static func copyBandwidth(megabytes: Int) -> Double {
        let bytes = megabytes << 20
        guard let source = malloc(bytes), let destination = malloc(bytes) else { return 1e10 }
        defer {
            free(source)
            free(destination)
        }
        memset(source, 1, bytes)
        memset(destination, 0, bytes)
        var best = Double.infinity
        var check = 0
        for round in 0..<3 {
            memset(source, Int32(round + 1), 1)
            let start = now()
            memcpy(destination, source, bytes)
            best = min(best, now() - start)
            // Read the copy so the compiler cannot drop it as a dead store.
            check += Int(destination.load(as: UInt8.self))
        }
        return check > 0 ? 2 * Double(bytes) / best : 0  // bytes read plus bytes written
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

    /// Sums v*v over the buffer `repeats` times with 8-wide fused multiply-adds into four independent
    /// accumulators (enough to hide the multiply-add latency).
    static func fmaLoop(_ raw: UnsafeRawPointer, count: Int, repeats: Int) -> Float {
        var a = SIMD8<Float>(repeating: 0), b = a, c = a, d = a
        for _ in 0..<repeats {
            for i in stride(from: 0, to: count, by: 32) {
                let v0 = raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
                let v1 = raw.loadUnaligned(fromByteOffset: (i + 8) * 4, as: SIMD8<Float>.self)
                let v2 = raw.loadUnaligned(fromByteOffset: (i + 16) * 4, as: SIMD8<Float>.self)
                let v3 = raw.loadUnaligned(fromByteOffset: (i + 24) * 4, as: SIMD8<Float>.self)
                a.addProduct(v0, v0)
                b.addProduct(v1, v1)
                c.addProduct(v2, v2)
                d.addProduct(v3, v3)
            }
        }
        return (a + b + c + d).sum()
    }
}
