import ScopeEngine

/// Dense fp32 matrix products: a cache-blocked GEMM with packed panels and a 6 x 16 FMA register tile, and a
/// weight-streaming GEMV-style path for decode-sized inputs (up to 20 rows).
public enum Matmul {
    /// out[m, n] = sum_k x[m, k] * w[n, k] (+ bias[n]). x is fp32 row-major [m, k]; w is stored row-major [n, k]
    /// (the PyTorch nn.Linear weight layout) in `weightType` (fp32, bf16 or fp16); out is fp32 row-major [m, n].
    /// out must not alias x. Uses all Parallel.workers for large problems.
    public static func linear(x: UnsafePointer<Float>, m: Int, k: Int, weight: UnsafeRawPointer, weightType: ElementType,
                              n: Int, bias: UnsafePointer<Float>?, out: UnsafeMutablePointer<Float>) {
        switch weightType {
        case .fp32: linear(x: x, m: m, k: k, weight: weight, n: n, bias: bias, out: out, as: FP32Elements.self)
        case .bf16: linear(x: x, m: m, k: k, weight: weight, n: n, bias: bias, out: out, as: BF16Elements.self)
        case .fp16: linear(x: x, m: m, k: k, weight: weight, n: n, bias: bias, out: out, as: FP16Elements.self)
        }
    }

    /// Plain C = A * B for fp32 row-major A [m, k], B [k, n], C [m, n] (used by the benchmark and SSD chunk math).
    public static func gemm(a: UnsafePointer<Float>, b: UnsafePointer<Float>, c: UnsafeMutablePointer<Float>, m: Int, n: Int, k: Int) {
        blocked(a: a, m: m, k: k, b: .rowMajor(b), n: n, bias: nil, c: c)
    }

    private static func linear<E: WeightElements>(x: UnsafePointer<Float>, m: Int, k: Int, weight: UnsafeRawPointer, n: Int,
                                                  bias: UnsafePointer<Float>?, out: UnsafeMutablePointer<Float>, as: E.Type) {
        guard m > 0 && n > 0 else { return }
        if m <= streamedRowLimit && k > 0 {
            streamed(x: x, m: m, k: k, weight: weight, n: n, bias: bias, out: out, as: E.self)
        } else {
            blocked(a: x, m: m, k: k, b: .transposed(weight, E.kind), n: n, bias: bias, c: out)
        }
    }
}

/// Up to this many rows, linear streams the weights (no packing); above, it runs the blocked GEMM (measured crossover
/// on a 2-core Zen 4: about 24 rows).
private let streamedRowLimit = 20

// MARK: - Weight element loads

/// Reads weights of one storage type as fp32, eight or one at a time.
private protocol WeightElements {
    static var kind: ElementType { get }
    static func load8(_ base: UnsafeRawPointer, _ index: Int) -> SIMD8<Float>
    static func load1(_ base: UnsafeRawPointer, _ index: Int) -> Float
}

private enum FP32Elements: WeightElements {
    static var kind: ElementType { .fp32 }
    @inline(__always) static func load8(_ base: UnsafeRawPointer, _ index: Int) -> SIMD8<Float> {
        base.loadUnaligned(fromByteOffset: index &* 4, as: SIMD8<Float>.self)
    }
    @inline(__always) static func load1(_ base: UnsafeRawPointer, _ index: Int) -> Float {
        base.load(fromByteOffset: index &* 4, as: Float.self)
    }
}

private enum BF16Elements: WeightElements {
    static var kind: ElementType { .bf16 }
    @inline(__always) static func load8(_ base: UnsafeRawPointer, _ index: Int) -> SIMD8<Float> {
        let bits = base.loadUnaligned(fromByteOffset: index &* 2, as: SIMD8<UInt16>.self)
        return unsafeBitCast(SIMD8<UInt32>(truncatingIfNeeded: bits) &<< 16, to: SIMD8<Float>.self)
    }
    @inline(__always) static func load1(_ base: UnsafeRawPointer, _ index: Int) -> Float {
        ElementConversion.float(bf16: base.load(fromByteOffset: index &* 2, as: UInt16.self))
    }
}

private enum FP16Elements: WeightElements {
    static var kind: ElementType { .fp16 }
    @inline(__always) static func load8(_ base: UnsafeRawPointer, _ index: Int) -> SIMD8<Float> {
        SIMD8<Float>(base.loadUnaligned(fromByteOffset: index &* 2, as: SIMD8<Float16>.self))
    }
    @inline(__always) static func load1(_ base: UnsafeRawPointer, _ index: Int) -> Float {
        ElementConversion.float(fp16: base.load(fromByteOffset: index &* 2, as: UInt16.self))
    }
}

// MARK: - Weight streaming (decode-sized m)

extension Matmul {
    /// out[i, j] = dot(x[i, :], w[j, :]) (+ bias[j]) without packing: weights are read row by row, four rows at a time,
    /// against pairs of x rows (then a last single row), so each loaded weight vector feeds two multiply-adds and a
    /// four-row weight block is re-read from cache, not memory, for further x rows.
    private static func streamed<E: WeightElements>(x: UnsafePointer<Float>, m: Int, k: Int, weight: UnsafeRawPointer, n: Int,
                                                    bias: UnsafePointer<Float>?, out: UnsafeMutablePointer<Float>, as: E.Type) {
        // About 64K multiply-adds per task before a second thread is worth waking.
        Parallel.forRanges(n, minimumPerTask: max(4, (1 << 16) / (k &* m))) { rows in
            var j = rows.lowerBound
            while j < rows.upperBound {
                let count = min(4, rows.upperBound &- j)
                var i = 0
                while i &+ 2 <= m {
                    dots(x + i &* k, rows: 2, k: k, weight: weight, first: j, count: count, n: n, bias: bias,
                         out: out + i &* n, as: E.self)
                    i &+= 2
                }
                if i < m {
                    dots(x + i &* k, rows: 1, k: k, weight: weight, first: j, count: count, n: n, bias: bias,
                         out: out + i &* n, as: E.self)
                }
                j &+= count
            }
        }
    }

    /// Dot products of `rows` (1 or 2) x rows with weight rows first ..< first + count (count <= 4); rows of the
    /// block past `count` repeat the last real row, and their results are dropped.
    @inline(__always)
    private static func dots<E: WeightElements>(_ x: UnsafePointer<Float>, rows: Int, k: Int, weight: UnsafeRawPointer,
                                                first: Int, count: Int, n: Int, bias: UnsafePointer<Float>?,
                                                out: UnsafeMutablePointer<Float>, as: E.Type) {
        let x0 = UnsafeRawPointer(x)
        let x1 = UnsafeRawPointer(x + (rows == 2 ? k : 0))
        let w0 = first &* k
        let w1 = min(first &+ 1, first &+ count &- 1) &* k
        let w2 = min(first &+ 2, first &+ count &- 1) &* k
        let w3 = min(first &+ 3, first &+ count &- 1) &* k
        var a00 = SIMD8<Float>(), a01 = SIMD8<Float>(), a02 = SIMD8<Float>(), a03 = SIMD8<Float>()
        var a10 = SIMD8<Float>(), a11 = SIMD8<Float>(), a12 = SIMD8<Float>(), a13 = SIMD8<Float>()
        let k8 = k & ~7
        var p = 0
        if rows == 2 {
            while p < k8 {
                let u = x0.loadUnaligned(fromByteOffset: p &* 4, as: SIMD8<Float>.self)
                let v = x1.loadUnaligned(fromByteOffset: p &* 4, as: SIMD8<Float>.self)
                var w = E.load8(weight, w0 &+ p)
                a00.addProduct(u, w); a10.addProduct(v, w)
                w = E.load8(weight, w1 &+ p)
                a01.addProduct(u, w); a11.addProduct(v, w)
                w = E.load8(weight, w2 &+ p)
                a02.addProduct(u, w); a12.addProduct(v, w)
                w = E.load8(weight, w3 &+ p)
                a03.addProduct(u, w); a13.addProduct(v, w)
                p &+= 8
            }
        } else {
            // Two depth steps per iteration into separate accumulators: eight independent FMA chains.
            while p &+ 16 <= k8 {
                let u = x0.loadUnaligned(fromByteOffset: p &* 4, as: SIMD8<Float>.self)
                let v = x0.loadUnaligned(fromByteOffset: (p &+ 8) &* 4, as: SIMD8<Float>.self)
                a00.addProduct(u, E.load8(weight, w0 &+ p)); a10.addProduct(v, E.load8(weight, w0 &+ p &+ 8))
                a01.addProduct(u, E.load8(weight, w1 &+ p)); a11.addProduct(v, E.load8(weight, w1 &+ p &+ 8))
                a02.addProduct(u, E.load8(weight, w2 &+ p)); a12.addProduct(v, E.load8(weight, w2 &+ p &+ 8))
                a03.addProduct(u, E.load8(weight, w3 &+ p)); a13.addProduct(v, E.load8(weight, w3 &+ p &+ 8))
                p &+= 16
            }
            a00 += a10; a01 += a11; a02 += a12; a03 += a13
            while p < k8 {
                let u = x0.loadUnaligned(fromByteOffset: p &* 4, as: SIMD8<Float>.self)
                a00.addProduct(u, E.load8(weight, w0 &+ p))
                a01.addProduct(u, E.load8(weight, w1 &+ p))
                a02.addProduct(u, E.load8(weight, w2 &+ p))
                a03.addProduct(u, E.load8(weight, w3 &+ p))
                p &+= 8
            }
        }
        var s0 = SIMD4(a00.sum(), a01.sum(), a02.sum(), a03.sum())
        var s1 = SIMD4(a10.sum(), a11.sum(), a12.sum(), a13.sum())
        while p < k {
            let w = SIMD4(E.load1(weight, w0 &+ p), E.load1(weight, w1 &+ p), E.load1(weight, w2 &+ p), E.load1(weight, w3 &+ p))
            s0.addProduct(x[p], w)
            if rows == 2 { s1.addProduct(x[k &+ p], w) }
            p &+= 1
        }
        for c in 0..<count {
            let b = bias?[first &+ c] ?? 0
            out[first &+ c] = s0[c] + b
            if rows == 2 { out[n &+ first &+ c] = s1[c] + b }
        }
    }
}

// MARK: - Blocked GEMM

/// Register tile: rows of A per micro-panel and columns of B per micro-panel.
private let tileRows = 6
private let tileCols = 16
/// Cache blocks: depth of one packed slab (k), rows of A packed at once (m), columns of B packed at once (n).
private let blockDepth = 256
private let blockRows = 96
private let blockCols = 1024

/// Where the B operand of C = A * B comes from.
private enum BOperand {
    /// B [k, n] row-major fp32.
    case rowMajor(UnsafePointer<Float>)
    /// B[p, j] = w[j, p] for a weight w [n, k] row-major in the given storage type.
    case transposed(UnsafeRawPointer, ElementType)
}

extension Matmul {
    /// C[m, n] = A[m, k] * B (+ bias), A row-major with leading dimension k, C row-major with leading dimension n.
    private static func blocked(a: UnsafePointer<Float>, m: Int, k: Int, b: BOperand, n: Int, bias: UnsafePointer<Float>?,
                                c: UnsafeMutablePointer<Float>) {
        guard m > 0 && n > 0 else { return }
        guard k > 0 else {
            for i in 0..<m {
                for j in 0..<n { c[i &* n &+ j] = bias?[j] ?? 0 }
            }
            return
        }
        let panels = (n + tileCols - 1) / tileCols
        let rowPanels = (m + tileRows - 1) / tileRows
        // Below ~4 MFLOP the threads cost more than they save.
        let serial = 2 * m * n * k < (1 << 22)
        // Split the larger dimension, so each worker re-packs (duplicates) only the smaller operand.
        let splitColumns = (n >= m && panels >= Parallel.workers) || rowPanels < Parallel.workers
        let units = splitColumns ? panels : rowPanels
        Parallel.forRanges(units, minimumPerTask: serial ? units : 1) { range in
            if splitColumns {
                let cols = (range.lowerBound * tileCols)..<min(n, range.upperBound * tileCols)
                region(a: a, rows: 0..<m, k: k, b: b, n: n, cols: cols, bias: bias, c: c)
            } else {
                let rows = (range.lowerBound * tileRows)..<min(m, range.upperBound * tileRows)
                region(a: a, rows: rows, k: k, b: b, n: n, cols: 0..<n, bias: bias, c: c)
            }
        }
    }

    /// Computes the block C[rows, cols] on the calling thread, with its own packing buffers.
    private static func region(a: UnsafePointer<Float>, rows: Range<Int>, k: Int, b: BOperand, n: Int, cols: Range<Int>,
                               bias: UnsafePointer<Float>?, c: UnsafeMutablePointer<Float>) {
        let depthCap = min(k, blockDepth)
        let colCap = min(cols.count + tileCols - 1, blockCols) / tileCols * tileCols
        let rowCap = min(rows.count + tileRows - 1, blockRows) / tileRows * tileRows
        let packedB = UnsafeMutableRawPointer.allocate(byteCount: depthCap * colCap * 4, alignment: 64)
            .bindMemory(to: Float.self, capacity: depthCap * colCap)
        let packedA = UnsafeMutableRawPointer.allocate(byteCount: depthCap * rowCap * 4, alignment: 64)
            .bindMemory(to: Float.self, capacity: depthCap * rowCap)
        defer {
            packedB.deallocate()
            packedA.deallocate()
        }
        withUnsafeTemporaryAllocation(of: Float.self, capacity: tileRows * tileCols) { edge in
            let edgeTile = edge.baseAddress!
            var j0 = cols.lowerBound
            while j0 < cols.upperBound {
                let nc = min(blockCols, cols.upperBound - j0)
                var p0 = 0
                while p0 < k {
                    let kc = min(blockDepth, k - p0)
                    packB(b, k: k, n: n, cols: j0..<(j0 + nc), depth: p0..<(p0 + kc), into: packedB)
                    var i0 = rows.lowerBound
                    while i0 < rows.upperBound {
                        let mc = min(blockRows, rows.upperBound - i0)
                        packA(a, k: k, rows: i0..<(i0 + mc), depth: p0..<(p0 + kc), into: packedA)
                        macroKernel(packedA: packedA, mc: mc, packedB: packedB, nc: nc, kc: kc, c: c + i0 * n + j0, ldc: n,
                                    first: p0 == 0, edgeTile: edgeTile)
                        i0 += mc
                    }
                    p0 += kc
                }
                j0 += nc
            }
        }
        if let bias {
            for i in rows {
                let row = c + i * n
                for j in cols { row[j] += bias[j] }
            }
        }
    }

    /// Runs the micro-kernel over every tile of one packed A block times one packed B block.
    @inline(__always)
    private static func macroKernel(packedA: UnsafePointer<Float>, mc: Int, packedB: UnsafePointer<Float>, nc: Int, kc: Int,
                                    c: UnsafeMutablePointer<Float>, ldc: Int, first: Bool, edgeTile: UnsafeMutablePointer<Float>) {
        var jr = 0
        while jr < nc {
            let cols = min(tileCols, nc &- jr)
            let bPanel = packedB + jr &* kc
            var ir = 0
            while ir < mc {
                let rows = min(tileRows, mc &- ir)
                let aPanel = packedA + ir &* kc
                let cTile = c + (ir &* ldc &+ jr)
                if rows == tileRows && cols == tileCols {
                    microKernel(kc: kc, a: aPanel, b: bPanel, c: cTile, ldc: ldc, accumulate: !first)
                } else {
                    microKernel(kc: kc, a: aPanel, b: bPanel, c: edgeTile, ldc: tileCols, accumulate: false)
                    for r in 0..<rows {
                        for q in 0..<cols {
                            let value = edgeTile[r &* tileCols &+ q]
                            if first { cTile[r &* ldc &+ q] = value } else { cTile[r &* ldc &+ q] += value }
                        }
                    }
                }
                ir &+= tileRows
            }
            jr &+= tileCols
        }
    }

    /// Packs A[rows, depth] into micro-panels of `tileRows` rows, element (r, p) of a panel at p * tileRows + r,
    /// zero-padding the last panel.
    private static func packA(_ a: UnsafePointer<Float>, k: Int, rows: Range<Int>, depth: Range<Int>,
                              into dst: UnsafeMutablePointer<Float>) {
        let kc = depth.count
        var out = dst
        var i0 = rows.lowerBound
        while i0 < rows.upperBound {
            let valid = min(tileRows, rows.upperBound &- i0)
            if valid == tileRows {
                let r0 = a + (i0 &* k &+ depth.lowerBound)
                let r1 = r0 + k, r2 = r1 + k, r3 = r2 + k, r4 = r3 + k, r5 = r4 + k
                for p in 0..<kc {
                    out[0] = r0[p]; out[1] = r1[p]; out[2] = r2[p]; out[3] = r3[p]; out[4] = r4[p]; out[5] = r5[p]
                    out += tileRows
                }
            } else {
                for p in 0..<kc {
                    for r in 0..<tileRows {
                        out[r] = r < valid ? a[(i0 &+ r) &* k &+ depth.lowerBound &+ p] : 0
                    }
                    out += tileRows
                }
            }
            i0 &+= tileRows
        }
    }

    /// Packs B[depth, cols] into micro-panels of `tileCols` columns, element (p, q) of a panel at p * tileCols + q,
    /// zero-padding the last panel; 16-bit weights are widened to fp32 here.
    private static func packB(_ b: BOperand, k: Int, n: Int, cols: Range<Int>, depth: Range<Int>,
                              into dst: UnsafeMutablePointer<Float>) {
        switch b {
        case .rowMajor(let base):
            packRowMajor(base, n: n, cols: cols, depth: depth, into: dst)
        case .transposed(let weight, .fp32):
            packTransposed(weight, k: k, cols: cols, depth: depth, into: dst, as: FP32Elements.self)
        case .transposed(let weight, .bf16):
            packTransposed(weight, k: k, cols: cols, depth: depth, into: dst, as: BF16Elements.self)
        case .transposed(let weight, .fp16):
            packTransposed(weight, k: k, cols: cols, depth: depth, into: dst, as: FP16Elements.self)
        }
    }

    private static func packRowMajor(_ b: UnsafePointer<Float>, n: Int, cols: Range<Int>, depth: Range<Int>,
                                     into dst: UnsafeMutablePointer<Float>) {
        let kc = depth.count
        var out = UnsafeMutableRawPointer(dst)
        var j0 = cols.lowerBound
        while j0 < cols.upperBound {
            let valid = min(tileCols, cols.upperBound &- j0)
            if valid == tileCols {
                var src = UnsafeRawPointer(b + (depth.lowerBound &* n &+ j0))
                for _ in 0..<kc {
                    out.storeBytes(of: src.loadUnaligned(as: SIMD16<Float>.self), as: SIMD16<Float>.self)
                    src += n &* 4
                    out += tileCols &* 4
                }
            } else {
                let panel = out.assumingMemoryBound(to: Float.self)
                for p in 0..<kc {
                    let src = b + ((depth.lowerBound &+ p) &* n &+ j0)
                    for q in 0..<tileCols { panel[p &* tileCols &+ q] = q < valid ? src[q] : 0 }
                }
                out += kc &* tileCols &* 4
            }
            j0 &+= tileCols
        }
    }

    /// Transposing pack of weight rows: 8 x 8 blocks (eight weight rows by eight depths, widened to fp32) are loaded,
    /// transposed in registers and stored as eight panel rows; rows past the matrix are zero.
    private static func packTransposed<E: WeightElements>(_ w: UnsafeRawPointer, k: Int, cols: Range<Int>, depth: Range<Int>,
                                                          into dst: UnsafeMutablePointer<Float>, as: E.Type) {
        let kc = depth.count
        let kc8 = kc & ~7
        var panel = dst
        var j0 = cols.lowerBound
        while j0 < cols.upperBound {
            let valid = min(tileCols, cols.upperBound &- j0)
            for half in 0..<2 {
                let q0 = half &* 8
                let rowsHere = min(8, max(0, valid &- q0))
                let base = (j0 &+ q0) &* k &+ depth.lowerBound
                let out = UnsafeMutableRawPointer(panel + q0)
                var p = 0
                while p < kc8 {
                    @inline(__always) func row(_ r: Int) -> SIMD8<Float> {
                        r < rowsHere ? E.load8(w, base &+ r &* k &+ p) : SIMD8<Float>()
                    }
                    let block = transpose(row(0), row(1), row(2), row(3), row(4), row(5), row(6), row(7))
                    let o = out + p &* (tileCols &* 4)
                    o.storeBytes(of: block.0, as: SIMD8<Float>.self)
                    o.storeBytes(of: block.1, toByteOffset: tileCols &* 4, as: SIMD8<Float>.self)
                    o.storeBytes(of: block.2, toByteOffset: tileCols &* 8, as: SIMD8<Float>.self)
                    o.storeBytes(of: block.3, toByteOffset: tileCols &* 12, as: SIMD8<Float>.self)
                    o.storeBytes(of: block.4, toByteOffset: tileCols &* 16, as: SIMD8<Float>.self)
                    o.storeBytes(of: block.5, toByteOffset: tileCols &* 20, as: SIMD8<Float>.self)
                    o.storeBytes(of: block.6, toByteOffset: tileCols &* 24, as: SIMD8<Float>.self)
                    o.storeBytes(of: block.7, toByteOffset: tileCols &* 28, as: SIMD8<Float>.self)
                    p &+= 8
                }
                while p < kc {
                    for r in 0..<8 {
                        panel[p &* tileCols &+ q0 &+ r] = r < rowsHere ? E.load1(w, base &+ r &* k &+ p) : 0
                    }
                    p &+= 1
                }
            }
            panel += kc &* tileCols
            j0 &+= tileCols
        }
    }

    /// Transposes the 8 x 8 block whose rows are r0 ... r7 (returns its columns).
    @inline(__always)
    private static func transpose(_ r0: SIMD8<Float>, _ r1: SIMD8<Float>, _ r2: SIMD8<Float>, _ r3: SIMD8<Float>,
                                  _ r4: SIMD8<Float>, _ r5: SIMD8<Float>, _ r6: SIMD8<Float>, _ r7: SIMD8<Float>)
        -> (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>) {
        // Interleave lanes of row pairs, then lane pairs of those, then swap 128-bit halves (the AVX unpack /
        // shuffle / permute network, which LLVM recognises from these lane patterns).
        @inline(__always) func unpackLo(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> {
            SIMD8(a[0], b[0], a[1], b[1], a[4], b[4], a[5], b[5])
        }
        @inline(__always) func unpackHi(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> {
            SIMD8(a[2], b[2], a[3], b[3], a[6], b[6], a[7], b[7])
        }
        @inline(__always) func pairLo(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> {
            SIMD8(a[0], a[1], b[0], b[1], a[4], a[5], b[4], b[5])
        }
        @inline(__always) func pairHi(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> {
            SIMD8(a[2], a[3], b[2], b[3], a[6], a[7], b[6], b[7])
        }
        let t0 = unpackLo(r0, r1), t1 = unpackHi(r0, r1), t2 = unpackLo(r2, r3), t3 = unpackHi(r2, r3)
        let t4 = unpackLo(r4, r5), t5 = unpackHi(r4, r5), t6 = unpackLo(r6, r7), t7 = unpackHi(r6, r7)
        let s0 = pairLo(t0, t2), s1 = pairHi(t0, t2), s2 = pairLo(t1, t3), s3 = pairHi(t1, t3)
        let s4 = pairLo(t4, t6), s5 = pairHi(t4, t6), s6 = pairLo(t5, t7), s7 = pairHi(t5, t7)
        return (SIMD8(lowHalf: s0.lowHalf, highHalf: s4.lowHalf), SIMD8(lowHalf: s1.lowHalf, highHalf: s5.lowHalf),
                SIMD8(lowHalf: s2.lowHalf, highHalf: s6.lowHalf), SIMD8(lowHalf: s3.lowHalf, highHalf: s7.lowHalf),
                SIMD8(lowHalf: s0.highHalf, highHalf: s4.highHalf), SIMD8(lowHalf: s1.highHalf, highHalf: s5.highHalf),
                SIMD8(lowHalf: s2.highHalf, highHalf: s6.highHalf), SIMD8(lowHalf: s3.highHalf, highHalf: s7.highHalf))
    }

    /// C[6, 16] (+)= A panel * B panel over `kc` steps, twelve 8-wide accumulators held in registers.
    @inline(__always)
    private static func microKernel(kc: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>, c: UnsafeMutablePointer<Float>,
                                    ldc: Int, accumulate: Bool) {
        var c00 = SIMD8<Float>(), c01 = SIMD8<Float>(), c10 = SIMD8<Float>(), c11 = SIMD8<Float>()
        var c20 = SIMD8<Float>(), c21 = SIMD8<Float>(), c30 = SIMD8<Float>(), c31 = SIMD8<Float>()
        var c40 = SIMD8<Float>(), c41 = SIMD8<Float>(), c50 = SIMD8<Float>(), c51 = SIMD8<Float>()
        var pa = a
        var pb = UnsafeRawPointer(b)
        for _ in 0..<kc {
            let b0 = pb.load(as: SIMD8<Float>.self)
            let b1 = pb.load(fromByteOffset: 32, as: SIMD8<Float>.self)
            var s = SIMD8<Float>(repeating: pa[0])
            c00.addProduct(s, b0); c01.addProduct(s, b1)
            s = SIMD8<Float>(repeating: pa[1])
            c10.addProduct(s, b0); c11.addProduct(s, b1)
            s = SIMD8<Float>(repeating: pa[2])
            c20.addProduct(s, b0); c21.addProduct(s, b1)
            s = SIMD8<Float>(repeating: pa[3])
            c30.addProduct(s, b0); c31.addProduct(s, b1)
            s = SIMD8<Float>(repeating: pa[4])
            c40.addProduct(s, b0); c41.addProduct(s, b1)
            s = SIMD8<Float>(repeating: pa[5])
            c50.addProduct(s, b0); c51.addProduct(s, b1)
            pa += tileRows
            pb += tileCols &* 4
        }
        let row = UnsafeMutableRawPointer(c)
        let stride = ldc &* 4
        store(c00, c01, row, accumulate)
        store(c10, c11, row + stride, accumulate)
        store(c20, c21, row + 2 &* stride, accumulate)
        store(c30, c31, row + 3 &* stride, accumulate)
        store(c40, c41, row + 4 &* stride, accumulate)
        store(c50, c51, row + 5 &* stride, accumulate)
    }

    @inline(__always)
    private static func store(_ lo: SIMD8<Float>, _ hi: SIMD8<Float>, _ row: UnsafeMutableRawPointer, _ accumulate: Bool) {
        if accumulate {
            row.storeBytes(of: row.loadUnaligned(as: SIMD8<Float>.self) + lo, as: SIMD8<Float>.self)
            row.storeBytes(of: row.loadUnaligned(fromByteOffset: 32, as: SIMD8<Float>.self) + hi, toByteOffset: 32,
                           as: SIMD8<Float>.self)
        } else {
            row.storeBytes(of: lo, as: SIMD8<Float>.self)
            row.storeBytes(of: hi, toByteOffset: 32, as: SIMD8<Float>.self)
        }
    }
}
