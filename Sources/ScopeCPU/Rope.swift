#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Rotary position embeddings.
public enum Rope {
    /// Rotates in place the first `rotaryDim` features of each head of x, laid out [tokens, heads * headDim], using the
    /// Hugging Face "rotate_half" (non-interleaved) convention: for i < rotaryDim/2, with angle = position * invFreq[i],
    /// (x[i], x[i + rotaryDim/2]) -> (x[i] cos - x[i+r/2] sin, x[i+r/2] cos + x[i] sin), both multiplied by `scale`
    /// (cos and sin are scaled, as HF's attention_scaling does). Features >= rotaryDim are untouched.
    ///
    /// Angles follow HF's fp32 arithmetic: angle = Float(position) * invFreq[i] rounded to fp32, then fp32 cos / sin
    /// (glibc's cosf / sinf reduce large arguments exactly, so positions up to millions keep full fp32 accuracy
    /// relative to that rounded angle).
    public static func apply(x: UnsafeMutablePointer<Float>, tokens: Int, heads: Int, headDim: Int, rotaryDim: Int,
                             positions: UnsafePointer<Int32>, invFreq: UnsafePointer<Float>, scale: Float) {
        precondition(rotaryDim >= 0 && rotaryDim <= headDim && rotaryDim % 2 == 0, "rotaryDim must be even and <= headDim")
        let half = rotaryDim / 2
        guard half > 0 && heads > 0 else { return }
        let perToken = heads &* rotaryDim
        Parallel.forRanges(tokens, minimumPerTask: max(1, (1 << 14) / perToken)) { range in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 &* half) { table in
                let cosines = table.baseAddress!
                let sines = cosines + half
                for t in range {
                    let position = Float(positions[t])
                    for i in 0..<half {
                        let angle = position * invFreq[i]
                        cosines[i] = cosf(angle) * scale
                        sines[i] = sinf(angle) * scale
                    }
                    let row = x + t &* heads &* headDim
                    for h in 0..<heads {
                        rotate(row + h &* headDim, half: half, cosines: cosines, sines: sines)
                    }
                }
            }
        }
    }

    /// (a, b) -> (a cos - b sin, b cos + a sin) for a = head[0 ..< half], b = head[half ..< 2 half].
    @inline(__always)
    private static func rotate(_ head: UnsafeMutablePointer<Float>, half: Int, cosines: UnsafePointer<Float>,
                               sines: UnsafePointer<Float>) {
        let lo = UnsafeMutableRawPointer(head)
        let hi = UnsafeMutableRawPointer(head + half)
        let c = UnsafeRawPointer(cosines)
        let s = UnsafeRawPointer(sines)
        var i = 0
        while i &+ 8 <= half {
            let offset = i &* 4
            let a = lo.loadUnaligned(fromByteOffset: offset, as: SIMD8<Float>.self)
            let b = hi.loadUnaligned(fromByteOffset: offset, as: SIMD8<Float>.self)
            let cv = c.loadUnaligned(fromByteOffset: offset, as: SIMD8<Float>.self)
            let sv = s.loadUnaligned(fromByteOffset: offset, as: SIMD8<Float>.self)
            lo.storeBytes(of: a * cv - b * sv, toByteOffset: offset, as: SIMD8<Float>.self)
            hi.storeBytes(of: b * cv + a * sv, toByteOffset: offset, as: SIMD8<Float>.self)
            i &+= 8
        }
        while i < half {
            let a = head[i], b = head[half &+ i]
            head[i] = a * cosines[i] - b * sines[i]
            head[half &+ i] = b * cosines[i] + a * sines[i]
            i &+= 1
        }
    }
}
