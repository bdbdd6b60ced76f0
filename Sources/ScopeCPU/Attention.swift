#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Scaled dot-product attention over a key/value cache.
public enum Attention {
    /// Causal multi-head attention with grouped KV heads, never materialising an L x L matrix (tiled over keys with an
    /// online softmax). For each of `batch` sequences, `newTokens` queries sit at absolute positions
    /// past ..< past + newTokens. Keys/values of the new tokens are in kNew / vNew ([batch * newTokens, kvHeads * headDim],
    /// sequence-major: row = b * newTokens + t). Keys/values of earlier positions are in a ring-buffer cache
    /// kCache / vCache laid out [batch, capacity, kvHeads * headDim]: position p lives in slot p % capacity; the cache
    /// holds positions max(0, past - capacity) ..< past (capacity may be 0 / the pointers unused when past == 0).
    /// A query at position i attends to keys at positions j <= i, and when `window` is non-nil only to j > i - window.
    /// Query head h uses KV head h / (heads / kvHeads). q: [batch * newTokens, heads * headDim]; out same shape.
    /// scores = q.k * scale. Parallelise over (batch, head, query tiles).
    ///
    /// Every key a query needs must still be cached: without a window that means past <= capacity, with one
    /// past - capacity <= past - window + 1. Scratch memory is O(query tile x headDim + key tile) per worker.
    public static func causal(q: UnsafePointer<Float>, kNew: UnsafePointer<Float>, vNew: UnsafePointer<Float>,
                              kCache: UnsafePointer<Float>?, vCache: UnsafePointer<Float>?, capacity: Int,
                              batch: Int, newTokens: Int, past: Int, heads: Int, kvHeads: Int, headDim: Int,
                              window: Int?, scale: Float, out: UnsafeMutablePointer<Float>) {
        guard batch > 0 && newTokens > 0 && heads > 0 && headDim > 0 else { return }
        precondition(kvHeads > 0 && heads % kvHeads == 0, "heads must be a multiple of kvHeads")
        precondition(window.map { $0 > 0 } ?? true, "window must be positive")
        precondition(past >= 0 && capacity >= 0)
        let earliestNeeded = min(past, window.map { max(0, past - $0 + 1) } ?? 0)
        precondition(earliestNeeded >= past - capacity, "the cache no longer holds keys the queries attend to")
        precondition(earliestNeeded == past || (kCache != nil && vCache != nil), "cached keys and values are required")

        let group = heads / kvHeads
        let qStride = heads * headDim
        let kvStride = kvHeads * headDim
        let queryTiles = (newTokens + queryTile - 1) / queryTile
        let streams = batch * heads
        let taskCount = queryTiles * streams
        // Rough multiply-adds per task, to keep small problems (short decode steps) on one thread.
        let keysPerQuery = min(past + newTokens, window ?? Int.max)
        let workPerTask = min(newTokens, queryTile) * keysPerQuery * headDim
        let minimumTasks = max(1, (1 << 15) / max(1, workPerTask))

        Parallel.forRanges(taskCount, minimumPerTask: minimumTasks) { range in
            let acc = UnsafeMutablePointer<Float>.allocate(capacity: queryTile * headDim)
            let runningMax = UnsafeMutablePointer<Float>.allocate(capacity: queryTile)
            let runningSum = UnsafeMutablePointer<Float>.allocate(capacity: queryTile)
            let scores = UnsafeMutablePointer<Float>.allocate(capacity: keyTile)
            let keys = UnsafeMutablePointer<UnsafePointer<Float>>.allocate(capacity: keyTile)
            let values = UnsafeMutablePointer<UnsafePointer<Float>>.allocate(capacity: keyTile)
            defer {
                acc.deallocate(); runningMax.deallocate(); runningSum.deallocate()
                scores.deallocate(); keys.deallocate(); values.deallocate()
            }
            for task in range {
                // Tasks run query tile by query tile; tile order alternates early (cheap) and late (expensive)
                // tiles so that contiguous task ranges carry similar work.
                let stream = task % streams
                let r = task / streams
                let tile = r % 2 == 0 ? r / 2 : queryTiles - 1 - r / 2
                let b = stream / heads
                let h = stream % heads
                let headOffset = (h / group) * headDim
                let t0 = tile * queryTile
                let count = min(newTokens, t0 + queryTile) - t0
                let first = past + t0
                let last = first + count - 1

                @inline(__always) func row(_ j: Int, _ fresh: UnsafePointer<Float>, _ cached: UnsafePointer<Float>?)
                    -> UnsafePointer<Float> {
                    if j >= past { return fresh + ((b * newTokens + j - past) * kvStride + headOffset) }
                    return cached! + ((b * capacity + j % capacity) * kvStride + headOffset)
                }

                acc.update(repeating: 0, count: count * headDim)
                runningMax.update(repeating: -.infinity, count: count)
                runningSum.update(repeating: 0, count: count)
                var j0 = window.map { max(0, first - $0 + 1) } ?? 0
                while j0 <= last {
                    let j1 = min(last + 1, j0 + keyTile)
                    for j in j0..<j1 {
                        keys[j - j0] = row(j, kNew, kCache)
                        values[j - j0] = row(j, vNew, vCache)
                    }
                    // Pad to whole groups of eight with the last key; padded lanes are always masked.
                    for jj in (j1 - j0)..<((j1 - j0 + 7) & ~7) {
                        keys[jj] = keys[j1 - j0 - 1]
                    }
                    for qi in 0..<count {
                        let i = first + qi
                        // Tile-relative range of keys this query sees.
                        let lo = max(j0, window.map { i - $0 + 1 } ?? 0) - j0
                        let hi = min(j1, i + 1) - j0
                        guard lo < hi else { continue }
                        let query = q + ((b * newTokens + t0 + qi) * qStride + h * headDim)
                        let a = acc + qi * headDim
                        updateState(query: query, keys: keys, values: values, range: lo..<hi, headDim: headDim,
                                    scale: scale, scores: scores, acc: a, max: &runningMax[qi], sum: &runningSum[qi])
                    }
                    j0 = j1
                }
                for qi in 0..<count {
                    let destination = out + ((b * newTokens + t0 + qi) * qStride + h * headDim)
                    let inverse = 1 / runningSum[qi]
                    let a = acc + qi * headDim
                    for d in 0..<headDim { destination[d] = a[d] * inverse }
                }
            }
        }
    }

    /// Queries handled together against each key tile, and keys per tile.
    private static let queryTile = 16
    private static let keyTile = 64

    /// Online-softmax step of one query against the tile keys range (tile-relative): scores = q.k * scale for those
    /// keys, then the running max / sum and the output accumulator are rescaled and extended.
    @inline(__always)
    private static func updateState(query: UnsafePointer<Float>, keys: UnsafePointer<UnsafePointer<Float>>,
                                    values: UnsafePointer<UnsafePointer<Float>>, range: Range<Int>, headDim: Int,
                                    scale: Float, scores: UnsafeMutablePointer<Float>, acc: UnsafeMutablePointer<Float>,
                                    max runningMax: inout Float, sum runningSum: inout Float) {
        let firstGroup = range.lowerBound >> 3
        let endGroup = (range.upperBound + 7) >> 3
        let scoreBase = UnsafeMutableRawPointer(scores)
        var maxima = SIMD8<Float>(repeating: -.infinity)
        for g in firstGroup..<endGroup {
            var s = dots8(query, keys + g * 8, headDim) * scale
            // Lanes outside the range (window start, causal end, padding) score -inf.
            let lane0 = g * 8
            if lane0 < range.lowerBound || lane0 + 8 > range.upperBound {
                for l in 0..<8 where !range.contains(lane0 + l) { s[l] = -.infinity }
            }
            scoreBase.storeBytes(of: s, toByteOffset: lane0 * 4, as: SIMD8<Float>.self)
            maxima = maxima.replacing(with: s, where: s .> maxima)
        }
        let newMax = Swift.max(runningMax, maxima.max())
        // exp(-inf) = 0 on the first tile, which also discards the zero accumulator.
        let correction = expf(runningMax - newMax)
        var sums = SIMD8<Float>()
        let shift = SIMD8<Float>(repeating: newMax)
        for g in firstGroup..<endGroup {
            let lane0 = g * 8
            var p = exp8(scoreBase.loadUnaligned(fromByteOffset: lane0 * 4, as: SIMD8<Float>.self) - shift)
            if lane0 < range.lowerBound || lane0 + 8 > range.upperBound {
                for l in 0..<8 where !range.contains(lane0 + l) { p[l] = 0 }
            }
            scoreBase.storeBytes(of: p, toByteOffset: lane0 * 4, as: SIMD8<Float>.self)
            sums += p
        }
        runningSum = runningSum * correction + sums.sum()
        runningMax = newMax
        accumulate(acc, correction: correction, weights: scores, values: values, range: range, headDim: headDim)
    }

    /// Eight dot products q . k[0 ..< 8] of length n, as one vector.
    @inline(__always)
    private static func dots8(_ q: UnsafePointer<Float>, _ k: UnsafePointer<UnsafePointer<Float>>, _ n: Int) -> SIMD8<Float> {
        var a0 = SIMD8<Float>(), a1 = SIMD8<Float>(), a2 = SIMD8<Float>(), a3 = SIMD8<Float>()
        var a4 = SIMD8<Float>(), a5 = SIMD8<Float>(), a6 = SIMD8<Float>(), a7 = SIMD8<Float>()
        let k0 = UnsafeRawPointer(k[0]), k1 = UnsafeRawPointer(k[1]), k2 = UnsafeRawPointer(k[2]), k3 = UnsafeRawPointer(k[3])
        let k4 = UnsafeRawPointer(k[4]), k5 = UnsafeRawPointer(k[5]), k6 = UnsafeRawPointer(k[6]), k7 = UnsafeRawPointer(k[7])
        let qr = UnsafeRawPointer(q)
        let n8 = n & ~7
        var d = 0
        while d < n8 {
            let o = d &* 4
            let x = qr.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self)
            a0.addProduct(x, k0.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self))
            a1.addProduct(x, k1.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self))
            a2.addProduct(x, k2.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self))
            a3.addProduct(x, k3.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self))
            a4.addProduct(x, k4.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self))
            a5.addProduct(x, k5.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self))
            a6.addProduct(x, k6.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self))
            a7.addProduct(x, k7.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self))
            d &+= 8
        }
        // Transposing reduction: lane l of the result is the sum of a_l's lanes.
        @inline(__always) func pairSums(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> {
            SIMD8(a[0], a[2], b[0], b[2], a[4], a[6], b[4], b[6]) + SIMD8(a[1], a[3], b[1], b[3], a[5], a[7], b[5], b[7])
        }
        let w0 = pairSums(pairSums(a0, a1), pairSums(a2, a3))
        let w1 = pairSums(pairSums(a4, a5), pairSums(a6, a7))
        var result = SIMD8(lowHalf: w0.lowHalf, highHalf: w1.lowHalf) + SIMD8(lowHalf: w0.highHalf, highHalf: w1.highHalf)
        while d < n {
            let x = q[d]
            for l in 0..<8 { result[l] += x * k[l][d] }
            d &+= 1
        }
        return result
    }

    /// acc = acc * correction + sum over j in range of weights[j] * values[j], with the accumulator held in registers
    /// 64 (then 8, then 1) features at a time.
    @inline(__always)
    private static func accumulate(_ acc: UnsafeMutablePointer<Float>, correction: Float, weights: UnsafePointer<Float>,
                                   values: UnsafePointer<UnsafePointer<Float>>, range: Range<Int>, headDim: Int) {
        let ar = UnsafeMutableRawPointer(acc)
        let c = SIMD8<Float>(repeating: correction)
        var d = 0
        while d &+ 64 <= headDim {
            let o = d &* 4
            var x0 = ar.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self) * c
            var x1 = ar.loadUnaligned(fromByteOffset: o &+ 32, as: SIMD8<Float>.self) * c
            var x2 = ar.loadUnaligned(fromByteOffset: o &+ 64, as: SIMD8<Float>.self) * c
            var x3 = ar.loadUnaligned(fromByteOffset: o &+ 96, as: SIMD8<Float>.self) * c
            var x4 = ar.loadUnaligned(fromByteOffset: o &+ 128, as: SIMD8<Float>.self) * c
            var x5 = ar.loadUnaligned(fromByteOffset: o &+ 160, as: SIMD8<Float>.self) * c
            var x6 = ar.loadUnaligned(fromByteOffset: o &+ 192, as: SIMD8<Float>.self) * c
            var x7 = ar.loadUnaligned(fromByteOffset: o &+ 224, as: SIMD8<Float>.self) * c
            for j in range {
                let p = SIMD8<Float>(repeating: weights[j])
                let v = UnsafeRawPointer(values[j]) + o
                x0.addProduct(p, v.loadUnaligned(as: SIMD8<Float>.self))
                x1.addProduct(p, v.loadUnaligned(fromByteOffset: 32, as: SIMD8<Float>.self))
                x2.addProduct(p, v.loadUnaligned(fromByteOffset: 64, as: SIMD8<Float>.self))
                x3.addProduct(p, v.loadUnaligned(fromByteOffset: 96, as: SIMD8<Float>.self))
                x4.addProduct(p, v.loadUnaligned(fromByteOffset: 128, as: SIMD8<Float>.self))
                x5.addProduct(p, v.loadUnaligned(fromByteOffset: 160, as: SIMD8<Float>.self))
                x6.addProduct(p, v.loadUnaligned(fromByteOffset: 192, as: SIMD8<Float>.self))
                x7.addProduct(p, v.loadUnaligned(fromByteOffset: 224, as: SIMD8<Float>.self))
            }
            ar.storeBytes(of: x0, toByteOffset: o, as: SIMD8<Float>.self)
            ar.storeBytes(of: x1, toByteOffset: o &+ 32, as: SIMD8<Float>.self)
            ar.storeBytes(of: x2, toByteOffset: o &+ 64, as: SIMD8<Float>.self)
            ar.storeBytes(of: x3, toByteOffset: o &+ 96, as: SIMD8<Float>.self)
            ar.storeBytes(of: x4, toByteOffset: o &+ 128, as: SIMD8<Float>.self)
            ar.storeBytes(of: x5, toByteOffset: o &+ 160, as: SIMD8<Float>.self)
            ar.storeBytes(of: x6, toByteOffset: o &+ 192, as: SIMD8<Float>.self)
            ar.storeBytes(of: x7, toByteOffset: o &+ 224, as: SIMD8<Float>.self)
            d &+= 64
        }
        while d &+ 8 <= headDim {
            let o = d &* 4
            var x = ar.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self) * c
            for j in range {
                x.addProduct(SIMD8<Float>(repeating: weights[j]), UnsafeRawPointer(values[j]).loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self))
            }
            ar.storeBytes(of: x, toByteOffset: o, as: SIMD8<Float>.self)
            d &+= 8
        }
        while d < headDim {
            var x = acc[d] * correction
            for j in range { x += weights[j] * values[j][d] }
            acc[d] = x
            d &+= 1
        }
    }

    /// exp(x) for x <= 88 (lanes below -87.3 give about 1e-38, not 0): 2^n * e^r with n = round(x / ln 2) and
    /// r = x - n ln 2, e^r by the Cephes expf polynomial; relative error about 1e-7.
    @inline(__always)
    private static func exp8(_ x: SIMD8<Float>) -> SIMD8<Float> {
        let lowest = SIMD8<Float>(repeating: -87.3)
        let clamped = x.replacing(with: lowest, where: x .< lowest)
        // Adding 1.5 * 2^23 rounds to an integer held in the low mantissa bits.
        let shifter = SIMD8<Float>(repeating: 12_582_912)
        let t = clamped * 1.44269504088896341 + shifter
        let n = t - shifter
        let r = clamped - n * 0.693359375 + n * 2.12194440e-4
        var y = SIMD8<Float>(repeating: 1.9875691500e-4)
        y = y * r + 1.3981999507e-3
        y = y * r + 8.3334519073e-3
        y = y * r + 4.1665795894e-2
        y = y * r + 1.6666665459e-1
        y = y * r + 5.0000001201e-1
        y = y * (r * r) + r + 1
        let bits = (unsafeBitCast(t, to: SIMD8<UInt32>.self) &- 0x4B40_0000 &+ 127) &<< 23
        return y * unsafeBitCast(bits, to: SIMD8<Float>.self)
    }
}
