/// Row-wise normalisations over the last dimension of a row-major [rows, cols] fp32 matrix.
public enum Norms {
    /// Per row: out = x / sqrt(mean(x^2) + eps) * weight (weight nil = no scaling). out may alias x.
    public static func rms(x: UnsafePointer<Float>, rows: Int, cols: Int, weight: UnsafePointer<Float>?, eps: Float,
                           out: UnsafeMutablePointer<Float>) {
        guard cols > 0 else { return }
        Parallel.forRanges(rows, minimumPerTask: max(1, minimumElementsPerTask / cols)) { range in
            for r in range {
                let src = x + r &* cols
                let dst = out + r &* cols
                let inverse = 1 / (sumOfSquares(src, cols, around: 0) / Float(cols) + eps).squareRoot()
                scaleShift(src, cols, shift: 0, scale: inverse, weight: weight, bias: nil, dst)
            }
        }
    }

    /// Per row: out = (x - mean) / sqrt(var + eps) * weight + bias. out may alias x.
    public static func layer(x: UnsafePointer<Float>, rows: Int, cols: Int, weight: UnsafePointer<Float>?,
                             bias: UnsafePointer<Float>?, eps: Float, out: UnsafeMutablePointer<Float>) {
        guard cols > 0 else { return }
        Parallel.forRanges(rows, minimumPerTask: max(1, minimumElementsPerTask / cols)) { range in
            for r in range {
                let src = x + r &* cols
                let dst = out + r &* cols
                let mean = sum(src, cols) / Float(cols)
                // Two passes (mean, then centred squares) keep the variance accurate when |mean| >> std.
                let variance = sumOfSquares(src, cols, around: mean) / Float(cols)
                let inverse = 1 / (variance + eps).squareRoot()
                scaleShift(src, cols, shift: mean, scale: inverse, weight: weight, bias: bias, dst)
            }
        }
    }

    /// Rows are only spread over threads when each task gets at least this many elements.
    private static let minimumElementsPerTask = 1 << 15

    private static func sum(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
        let raw = UnsafeRawPointer(x)
        var a = SIMD8<Float>(), b = SIMD8<Float>()
        var i = 0
        while i &+ 16 <= n {
            a += raw.loadUnaligned(fromByteOffset: i &* 4, as: SIMD8<Float>.self)
            b += raw.loadUnaligned(fromByteOffset: (i &+ 8) &* 4, as: SIMD8<Float>.self)
            i &+= 16
        }
        var total = (a + b).sum()
        while i < n {
            total += x[i]
            i &+= 1
        }
        return total
    }

    private static func sumOfSquares(_ x: UnsafePointer<Float>, _ n: Int, around center: Float) -> Float {
        let raw = UnsafeRawPointer(x)
        let c = SIMD8<Float>(repeating: center)
        var a = SIMD8<Float>(), b = SIMD8<Float>()
        var i = 0
        while i &+ 16 <= n {
            let u = raw.loadUnaligned(fromByteOffset: i &* 4, as: SIMD8<Float>.self) - c
            let v = raw.loadUnaligned(fromByteOffset: (i &+ 8) &* 4, as: SIMD8<Float>.self) - c
            a.addProduct(u, u)
            b.addProduct(v, v)
            i &+= 16
        }
        var total = (a + b).sum()
        while i < n {
            let d = x[i] - center
            total += d * d
            i &+= 1
        }
        return total
    }

    /// dst = (src - shift) * scale * weight + bias, with nil weight / bias meaning 1 / 0. dst may alias src.
    private static func scaleShift(_ src: UnsafePointer<Float>, _ n: Int, shift: Float, scale: Float,
                                   weight: UnsafePointer<Float>?, bias: UnsafePointer<Float>?, _ dst: UnsafeMutablePointer<Float>) {
        let s = UnsafeRawPointer(src)
        let d = UnsafeMutableRawPointer(dst)
        let shiftV = SIMD8<Float>(repeating: shift)
        let scaleV = SIMD8<Float>(repeating: scale)
        var i = 0
        while i &+ 8 <= n {
            let offset = i &* 4
            var v = (s.loadUnaligned(fromByteOffset: offset, as: SIMD8<Float>.self) - shiftV) * scaleV
            if let weight { v *= UnsafeRawPointer(weight).loadUnaligned(fromByteOffset: offset, as: SIMD8<Float>.self) }
            if let bias { v += UnsafeRawPointer(bias).loadUnaligned(fromByteOffset: offset, as: SIMD8<Float>.self) }
            d.storeBytes(of: v, toByteOffset: offset, as: SIMD8<Float>.self)
            i &+= 8
        }
        while i < n {
            var v = (src[i] - shift) * scale
            if let weight { v *= weight[i] }
            if let bias { v += bias[i] }
            dst[i] = v
            i &+= 1
        }
    }
}
