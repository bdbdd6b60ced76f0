#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Gated RMSNorm of the Mamba-2 family mixers (HF `MambaRMSNormGated`, `FalconH1RMSNormGated` and their grouped
/// variants in Bamba, Zamba2 and Nemotron-H).
public enum GatedNorm {
    /// Gated RMSNorm, per row, normalising each of `groups` contiguous groups of `cols / groups` features.
    ///
    /// - `normBeforeGate == false` (Mamba2/Bamba/Zamba2/Nemotron-H default): out = rmsnorm_g(x * silu(z)) * weight
    /// - `normBeforeGate == true`: out = rmsnorm_g(x) * weight * silu(z)
    ///
    /// rmsnorm_g(v) = v / sqrt(mean over the group of v^2 + eps). x, z, out: [rows, cols]; weight: [cols].
    /// out may alias x.
    public static func apply(x: UnsafePointer<Float>, z: UnsafePointer<Float>, rows: Int, cols: Int, groups: Int,
                             weight: UnsafePointer<Float>, eps: Float, normBeforeGate: Bool,
                             out: UnsafeMutablePointer<Float>) {
        precondition(groups >= 1 && cols % groups == 0, "GatedNorm.apply: cols must be a multiple of groups")
        guard rows > 0, cols > 0 else { return }
        let groupSize = cols / groups
        let minimum = max(1, 16_384 / cols)
        Parallel.forRanges(rows, minimumPerTask: minimum) { range in
            for r in range {
                for g in 0..<groups {
                    let base = r * cols + g * groupSize
                    normGroup(x: x + base, z: z + base, weight: weight + g * groupSize, count: groupSize, eps: eps,
                              normBeforeGate: normBeforeGate, out: out + base)
                }
            }
        }
    }

    @inline(__always)
    private static func normGroup(x: UnsafePointer<Float>, z: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                  count: Int, eps: Float, normBeforeGate: Bool, out: UnsafeMutablePointer<Float>) {
        let vecEnd = count & ~7
        // Pass 1: the (gated) values' sum of squares; gated values are written to out when gating first.
        var sumV = SIMD8<Float>()
        var sum: Float = 0
        var i = 0
        if normBeforeGate {
            while i < vecEnd {
                let v = SSMMath.load(x + i)
                sumV = sumV.addingProduct(v, v)
                i += 8
            }
            while i < count {
                sum += x[i] * x[i]
                i += 1
            }
        } else {
            while i < vecEnd {
                let v = SSMMath.load(x + i) * SSMMath.silu(SSMMath.load(z + i))
                SSMMath.store(v, out + i)
                sumV = sumV.addingProduct(v, v)
                i += 8
            }
            while i < count {
                let v = x[i] * SSMMath.silu(z[i])
                out[i] = v
                sum += v * v
                i += 1
            }
        }
        sum += SSMMath.sum(sumV)
        let scale = 1 / sqrtf(sum / Float(count) + eps)
        let sv = SIMD8<Float>(repeating: scale)
        // Pass 2: normalise and weight (and gate after the norm when asked).
        i = 0
        if normBeforeGate {
            while i < vecEnd {
                let v = SSMMath.load(x + i) * sv * SSMMath.load(weight + i) * SSMMath.silu(SSMMath.load(z + i))
                SSMMath.store(v, out + i)
                i += 8
            }
            while i < count {
                out[i] = x[i] * scale * weight[i] * SSMMath.silu(z[i])
                i += 1
            }
        } else {
            while i < vecEnd {
                SSMMath.store(SSMMath.load(out + i) * sv * SSMMath.load(weight + i), out + i)
                i += 8
            }
            while i < count {
                out[i] = out[i] * scale * weight[i]
                i += 1
            }
        }
    }
}
