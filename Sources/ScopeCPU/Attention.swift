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
    /// scores = q.k * scale. Parallelise over (batch, KV head, query tiles), all query heads of a group together as
    /// they read the same keys and values, and when that gives too few tasks (decode) also over slices of the keys,
    /// merged at the end by their log-sum-exp.
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
        // A unit of work: a tile of consecutive queries times the query heads of one KV head's group (of every group
        // for dot-product units), against one slice of the keys. Many rows go through register-tiled matrix
        // products, few (decode) through dot products.
        let tiledQueries = min(newTokens, max(1, tiledRows / group))
        let tiled = tiledQueries * group >= minimumTiledRows
        let queriesPerTile = tiled ? tiledQueries : min(newTokens, max(1, dotRows / group))
        let queryTiles = (newTokens + queriesPerTile - 1) / queriesPerTile
        let keysPerQuery = min(past + newTokens, window ?? Int.max)
        // Dot-product units take every KV head, so that a worker streams whole cache rows.
        let kvPerUnit = tiled ? 1 : kvHeads
        // Split the keys when (batch, KV head, query tile) alone leaves workers idle.
        let base = batch * (kvHeads / kvPerUnit) * queryTiles
        let workers = Parallel.workers
        var splits = 1
        if base < 4 * workers {
            splits = max(1, min((4 * workers + base - 1) / base, keysPerQuery / minimumSplitKeys))
        }
        let problem = Problem(
            q: q, kNew: kNew, vNew: vNew, kCache: kCache, vCache: vCache, capacity: capacity, batch: batch,
            newTokens: newTokens, past: past, heads: heads, kvHeads: kvHeads, headDim: headDim, group: group,
            window: window ?? 0, qScale: scale * 1.442_695_040_888_963_4, kvPerUnit: kvPerUnit,
            queriesPerTile: queriesPerTile, queryTiles: queryTiles, splits: splits, out: out)
        let unitCount = base * splits
        let rows = problem.rowsPerUnit
        let stateStride = headDim + 2
        let partials: UnsafeMutablePointer<Float>? =
            splits > 1 ? .allocate(capacity: base * splits * rows * stateStride) : nil
        defer { partials?.deallocate() }
        // Rough multiply-adds per unit, to keep small problems (short decode steps) on one thread.
        let workPerUnit = rows * max(1, keysPerQuery / splits) * headDim
        let minimumUnits = max(1, (1 << 16) / max(1, workPerUnit))

        Parallel.forRanges(unitCount, minimumPerTask: minimumUnits) { range in
            if tiled {
                tiledUnits(problem, range, partials: partials)
            } else {
                dotUnits(problem, range, partials: partials)
            }
        }
        if let partials { merge(problem, partials) }
    }

    // MARK: - Work decomposition

    /// Rows aimed for in a register-tiled unit, the fewest rows worth tiling, and rows of a dot-product unit.
    private static let tiledRows = 144
    private static let minimumTiledRows = 16
    private static let dotRows = 16
    /// Rows per register tile of the tiled kernels (three 8-lane vectors, against four broadcast keys or features).
    private static let rowBlock = 24
    /// Keys per tile of a tiled unit (a multiple of 4) and of a dot-product unit (a multiple of 8).
    private static let tiledKeyTile = 64
    private static let dotKeyTile = 64
    /// Positions whose key and value rows a dot-product unit touches in one go, ahead of use.
    private static let touchBurst = 256
    /// Fewest keys in one slice of a split unit.
    private static let minimumSplitKeys = 512
    /// The running maximum before any key: finite, so that a row without keys yet never computes -inf - -inf.
    private static let noMaximum = -Float.greatestFiniteMagnitude
    /// Written when the sum of the touched words has one particular value, so that the touching loads are kept.
    private static var touchSink: UInt32 = 0

    private struct Problem {
        let q: UnsafePointer<Float>, kNew: UnsafePointer<Float>, vNew: UnsafePointer<Float>
        let kCache: UnsafePointer<Float>?, vCache: UnsafePointer<Float>?
        let capacity: Int, batch: Int, newTokens: Int, past: Int, heads: Int, kvHeads: Int, headDim: Int, group: Int
        /// 0 when there is no window.
        let window: Int
        /// scale * log2(e): scores are kept in base 2.
        let qScale: Float
        /// KV heads per unit (1, or all of them).
        let kvPerUnit: Int
        let queriesPerTile: Int, queryTiles: Int, splits: Int
        let out: UnsafeMutablePointer<Float>

        var qStride: Int { heads &* headDim }
        var kvStride: Int { kvHeads &* headDim }
        /// Rows of one query: the query heads of the unit's KV heads.
        var rowsPerToken: Int { kvPerUnit &* group }
        var rowsPerUnit: Int { queriesPerTile &* kvPerUnit &* group }

        /// Unit u: units run stream by stream within each rank of query tiles, and the ranks alternate early (cheap)
        /// and late (expensive) tiles so that contiguous unit ranges carry similar work. Within a rank, the KV heads
        /// of one key slice are neighbours, so a worker streams contiguous cache rows.
        @inline(__always)
        func unit(_ u: Int) -> Unit {
            let unitHeads = kvHeads / kvPerUnit
            let streams = batch &* splits &* unitHeads
            let stream = u % streams
            let r = u / streams
            let tile = r % 2 == 0 ? r / 2 : queryTiles - 1 - r / 2
            let kvh = stream % unitHeads
            let split = (stream / unitHeads) % splits
            let b = stream / (unitHeads &* splits)
            let t0 = tile &* queriesPerTile
            let count = min(newTokens, t0 &+ queriesPerTile) &- t0
            let first = past &+ t0
            let last = first &+ count &- 1
            let start = window > 0 ? max(0, first &- window &+ 1) : 0
            let total = last &+ 1 &- start
            let keyStart = start &+ total &* split / splits
            let keyEnd = start &+ total &* (split &+ 1) / splits
            let slot = ((b &* queryTiles &+ tile) &* unitHeads &+ kvh) &* splits &+ split
            return Unit(b: b, kvh: kvh &* kvPerUnit, t0: t0, count: count, first: first, last: last, keyStart: keyStart,
                        keyEnd: keyEnd, slot: slot)
        }

        /// Pointers to the key and value rows of positions j0 ..< j0 + n for (b, kvh), padded to `padded` entries with
        /// the last row (padded keys are always masked).
        @inline(__always)
        func fillRows(_ unit: Unit, _ j0: Int, _ n: Int, _ padded: Int,
                      _ keys: UnsafeMutablePointer<UnsafePointer<Float>>,
                      _ values: UnsafeMutablePointer<UnsafePointer<Float>>) {
            let offset = unit.kvh &* headDim
            let stride = kvStride
            var j = j0
            var index = 0
            let end = j0 &+ n
            if j < past {
                let kc = kCache!, vc = vCache!
                let cachedEnd = min(end, past)
                var slot = j % capacity
                let rowBase = unit.b &* capacity
                while j < cachedEnd {
                    let o = (rowBase &+ slot) &* stride &+ offset
                    keys[index] = kc + o
                    values[index] = vc + o
                    slot &+= 1
                    if slot == capacity { slot = 0 }
                    j &+= 1
                    index &+= 1
                }
            }
            while j < end {
                let o = (unit.b &* newTokens &+ j &- past) &* stride &+ offset
                keys[index] = kNew + o
                values[index] = vNew + o
                j &+= 1
                index &+= 1
            }
            while index < padded {
                keys[index] = keys[n &- 1]
                values[index] = values[n &- 1]
                index &+= 1
            }
        }

        /// The query row of unit row r: query t = r / rowsPerToken, head unit.kvh * group + r % rowsPerToken.
        @inline(__always)
        func queryRow(_ unit: Unit, _ r: Int) -> Int {
            let t = r / rowsPerToken
            let h = r &- t &* rowsPerToken
            return (unit.b &* newTokens &+ unit.t0 &+ t) &* qStride &+ (unit.kvh &* group &+ h) &* headDim
        }

        /// Tile-relative keys lo ..< hi (clamped to 0 ... n) that the query at position i sees in the tile at j0.
        @inline(__always)
        func visible(_ i: Int, _ j0: Int, _ n: Int) -> (Int, Int) {
            let lo = window > 0 ? min(n, max(0, i &- window &+ 1 &- j0)) : 0
            let hi = min(n, max(0, i &+ 1 &- j0))
            return (lo, hi)
        }

        /// Whether every row of the unit sees every key of the tile j0 ..< j0 + n.
        @inline(__always)
        func unmasked(_ unit: Unit, _ j0: Int, _ n: Int) -> Bool {
            j0 &+ n &- 1 <= unit.first && (window == 0 || j0 >= unit.last &- window &+ 1)
        }
    }

    private struct Unit {
        /// Batch, first KV head, first query.
        let b: Int, kvh: Int, t0: Int, count: Int
        /// Positions of the unit's first and last queries.
        let first: Int, last: Int
        /// This unit's slice of the keys its queries need.
        let keyStart: Int, keyEnd: Int
        /// Index of the unit's partial state when keys are split.
        let slot: Int
    }

    /// Running softmax state of a unit row: stores it as a partial (max, sum, unnormalised output) for the merge, or
    /// divides and writes the output row.
    @inline(__always)
    private static func finish(_ p: Problem, _ unit: Unit, row r: Int, max m: Float, sum l: Float,
                               partials: UnsafeMutablePointer<Float>?, output: (Int) -> Float) {
        let headDim = p.headDim
        if let partials {
            let rows = p.rowsPerUnit
            let state = partials + (unit.slot &* rows &+ r) &* (headDim &+ 2)
            state[0] = m
            state[1] = l
            for d in 0..<headDim { state[2 &+ d] = output(d) }
        } else {
            let destination = p.out + p.queryRow(unit, r)
            let inverse = 1 / l
            for d in 0..<headDim { destination[d] = output(d) * inverse }
        }
    }

    /// Combines the partial states of the key slices of every row: out = sum_s 2^(m_s - M) o_s / sum_s 2^(m_s - M) l_s.
    private static func merge(_ p: Problem, _ partials: UnsafeMutablePointer<Float>) {
        let rows = p.rowsPerUnit
        let unitHeads = p.kvHeads / p.kvPerUnit
        let stateStride = p.headDim &+ 2
        let weights = UnsafeMutablePointer<Float>.allocate(capacity: p.splits)
        defer { weights.deallocate() }
        for b in 0..<p.batch {
            for tile in 0..<p.queryTiles {
                let t0 = tile &* p.queriesPerTile
                let count = min(p.newTokens, t0 &+ p.queriesPerTile) &- t0
                for kvh in 0..<unitHeads {
                    let slot0 = ((b &* p.queryTiles &+ tile) &* unitHeads &+ kvh) &* p.splits
                    let unit = Unit(b: b, kvh: kvh &* p.kvPerUnit, t0: t0, count: count, first: 0, last: 0,
                                    keyStart: 0, keyEnd: 0, slot: 0)
                    for r in 0..<(count &* p.rowsPerToken) {
                        @inline(__always) func state(_ s: Int) -> UnsafeMutablePointer<Float> {
                            partials + ((slot0 &+ s) &* rows &+ r) &* stateStride
                        }
                        var top = noMaximum
                        for s in 0..<p.splits { top = max(top, state(s)[0]) }
                        var total: Float = 0
                        for s in 0..<p.splits {
                            weights[s] = exp2f(state(s)[0] - top)
                            total += weights[s] * state(s)[1]
                        }
                        let inverse = 1 / total
                        let destination = p.out + p.queryRow(unit, r)
                        for d in 0..<p.headDim {
                            var x: Float = 0
                            for s in 0..<p.splits { x += weights[s] * state(s)[2 &+ d] }
                            destination[d] = x * inverse
                        }
                    }
                }
            }
        }
    }

    /// 64-byte aligned scratch, carved into pieces.
    private struct Arena {
        let base: UnsafeMutableRawPointer
        let bytes: Int
        var used = 0
        init(bytes: Int) {
            self.bytes = bytes
            base = .allocate(byteCount: bytes, alignment: 64)
        }
        mutating func take<T>(_ count: Int, _: T.Type) -> UnsafeMutablePointer<T> {
            let pointer = (base + used).bindMemory(to: T.self, capacity: count)
            used += (count &* MemoryLayout<T>.stride &+ 63) & ~63
            precondition(used <= bytes, "attention scratch overflow")
            return pointer
        }
    }

    // MARK: - Register-tiled units (prefill)

    /// Units with many rows: per key tile, S^T = K Q^T as 4-key x 24-row register tiles (keys broadcast from their
    /// rows, queries from a transposed, pre-scaled copy), an online softmax vectorised across rows, then
    /// O^T += V^T P^T as 4-feature x 24-row register tiles.
    private static func tiledUnits(_ p: Problem, _ range: Range<Int>, partials: UnsafeMutablePointer<Float>?) {
        let headDim = p.headDim
        let maxRows = (p.queriesPerTile &* p.group &+ rowBlock &- 1) / rowBlock &* rowBlock
        let features = (headDim &+ 3) & ~3
        let keyTile = tiledKeyTile
        var arena = Arena(bytes: 64 &* 16 &+ 4 &* maxRows &* (headDim &+ features &+ keyTile &+ 6)
                                     &+ 32 &* keyTile)
        defer { arena.base.deallocate() }
        let qT = arena.take(headDim &* maxRows, Float.self)
        let oT = arena.take(features &* maxRows, Float.self)
        let scores = arena.take(keyTile &* maxRows, Float.self)
        let runningMax = arena.take(maxRows, Float.self)
        let runningSum = arena.take(maxRows, Float.self)
        let correction = arena.take(maxRows, Float.self)
        let tileMax = arena.take(maxRows, Float.self)
        let lo = arena.take(maxRows, Int32.self)
        let hi = arena.take(maxRows, Int32.self)
        var keys = arena.take(keyTile, UnsafePointer<Float>.self)
        var values = arena.take(keyTile, UnsafePointer<Float>.self)
        var nextKeys = arena.take(keyTile, UnsafePointer<Float>.self)
        var nextValues = arena.take(keyTile, UnsafePointer<Float>.self)
        var touched: UInt32 = 0

        for u in range {
            let unit = p.unit(u)
            let rows = unit.count &* p.group
            let rp = (rows &+ rowBlock &- 1) / rowBlock &* rowBlock
            // Q^T, scaled into base-2 scores; padding rows are zero.
            for r in 0..<rows {
                let source = p.q + p.queryRow(unit, r)
                for d in 0..<headDim { qT[d &* rp &+ r] = source[d] * p.qScale }
            }
            if rows < rp {
                for d in 0..<headDim { (qT + (d &* rp &+ rows)).update(repeating: 0, count: rp &- rows) }
            }
            oT.update(repeating: 0, count: features &* rp)
            runningMax.update(repeating: noMaximum, count: rp)
            runningSum.update(repeating: 0, count: rp)

            var j0 = unit.keyStart
            if j0 < unit.keyEnd {
                let n = min(keyTile, unit.keyEnd &- j0)
                p.fillRows(unit, j0, n, (n &+ 3) & ~3, nextKeys, nextValues)
            }
            while j0 < unit.keyEnd {
                let n = min(keyTile, unit.keyEnd &- j0)
                let n4 = (n &+ 3) & ~3
                swap(&keys, &nextKeys)
                swap(&values, &nextValues)
                // The next tile's rows of this KV head, touched (one word loaded per cache line) now: their misses
                // overlap one another rather than stalling the products of the next tile one by one.
                let j1 = j0 &+ n
                if j1 < unit.keyEnd {
                    let m = min(keyTile, unit.keyEnd &- j1)
                    p.fillRows(unit, j1, m, (m &+ 3) & ~3, nextKeys, nextValues)
                    touched &+= touchRows(nextKeys, m, headDim &* 4) &+ touchRows(nextValues, m, headDim &* 4)
                }
                let masked = n != n4 || !p.unmasked(unit, j0, n)
                if masked {
                    for r in 0..<rp {
                        if r < rows {
                            let (l, h) = p.visible(unit.first &+ r / p.group, j0, n)
                            lo[r] = Int32(truncatingIfNeeded: l)
                            hi[r] = Int32(truncatingIfNeeded: h)
                        } else {
                            lo[r] = 0
                            hi[r] = 0
                        }
                    }
                }
                scoreTile(qT: qT, rp: rp, headDim: headDim, keys: keys, n4: n4, scores: scores, tileMax: tileMax,
                          lo: masked ? lo : nil, hi: hi)
                softmaxTile(rp: rp, n4: n4, scores: scores, tileMax: tileMax, runningMax: runningMax,
                            runningSum: runningSum, correction: correction)
                valueTile(oT: oT, rp: rp, headDim: headDim, features: features, values: values, n4: n4,
                          weights: scores, correction: correction)
                j0 &+= n
            }
            for r in 0..<rows {
                finish(p, unit, row: r, max: runningMax[r], sum: runningSum[r], partials: partials) { d in
                    oT[d &* rp &+ r]
                }
            }
        }
        if touched == 0x5EED_F00D { touchSink = touched }
    }

    /// Loads one word of every 64-byte line of bytes 0 ..< `bytes` of each of the n rows; returns their wrapping sum.
    @inline(__always)
    private static func touchRows(_ rows: UnsafePointer<UnsafePointer<Float>>, _ n: Int, _ bytes: Int) -> UInt32 {
        var sum: UInt32 = 0
        for i in 0..<n {
            let row = UnsafeRawPointer(rows[i])
            var o = 0
            while o < bytes {
                sum &+= row.load(fromByteOffset: o, as: UInt32.self)
                o &+= 64
            }
            sum &+= row.load(fromByteOffset: bytes &- 4, as: UInt32.self)
        }
        return sum
    }

    /// scores[j * rp + r] = sum_d qT[d * rp + r] * keys[j][d] for j < n4 and all rp rows, with entries outside
    /// lo[r] ..< hi[r] set to -inf when lo is given; tileMax[r] = the maximum over j.
    @inline(__always)
    private static func scoreTile(qT: UnsafePointer<Float>, rp: Int, headDim: Int,
                                  keys: UnsafePointer<UnsafePointer<Float>>, n4: Int,
                                  scores: UnsafeMutablePointer<Float>, tileMax: UnsafeMutablePointer<Float>,
                                  lo: UnsafePointer<Int32>?, hi: UnsafePointer<Int32>) {
        let rowBytes = rp &* 4
        let sr = UnsafeMutableRawPointer(scores)
        var rb = 0
        while rb < rp {
            var m0 = SIMD8<Float>(repeating: -.infinity), m1 = m0, m2 = m0
            var kb = 0
            while kb < n4 {
                let k0 = keys[kb], k1 = keys[kb &+ 1], k2 = keys[kb &+ 2], k3 = keys[kb &+ 3]
                var a00 = SIMD8<Float>(), a01 = SIMD8<Float>(), a02 = SIMD8<Float>()
                var a10 = SIMD8<Float>(), a11 = SIMD8<Float>(), a12 = SIMD8<Float>()
                var a20 = SIMD8<Float>(), a21 = SIMD8<Float>(), a22 = SIMD8<Float>()
                var a30 = SIMD8<Float>(), a31 = SIMD8<Float>(), a32 = SIMD8<Float>()
                var qp = UnsafeRawPointer(qT + rb)
                for d in 0..<headDim {
                    let x0 = qp.load(as: SIMD8<Float>.self)
                    let x1 = qp.load(fromByteOffset: 32, as: SIMD8<Float>.self)
                    let x2 = qp.load(fromByteOffset: 64, as: SIMD8<Float>.self)
                    var w = SIMD8<Float>(repeating: k0[d])
                    a00.addProduct(w, x0); a01.addProduct(w, x1); a02.addProduct(w, x2)
                    w = SIMD8<Float>(repeating: k1[d])
                    a10.addProduct(w, x0); a11.addProduct(w, x1); a12.addProduct(w, x2)
                    w = SIMD8<Float>(repeating: k2[d])
                    a20.addProduct(w, x0); a21.addProduct(w, x1); a22.addProduct(w, x2)
                    w = SIMD8<Float>(repeating: k3[d])
                    a30.addProduct(w, x0); a31.addProduct(w, x1); a32.addProduct(w, x2)
                    qp += rowBytes
                }
                if let lo {
                    let l0 = UnsafeRawPointer(lo + rb).load(as: SIMD8<Int32>.self)
                    let l1 = UnsafeRawPointer(lo + rb).load(fromByteOffset: 32, as: SIMD8<Int32>.self)
                    let l2 = UnsafeRawPointer(lo + rb).load(fromByteOffset: 64, as: SIMD8<Int32>.self)
                    let h0 = UnsafeRawPointer(hi + rb).load(as: SIMD8<Int32>.self)
                    let h1 = UnsafeRawPointer(hi + rb).load(fromByteOffset: 32, as: SIMD8<Int32>.self)
                    let h2 = UnsafeRawPointer(hi + rb).load(fromByteOffset: 64, as: SIMD8<Int32>.self)
                    @inline(__always)
                    func mask(_ a: inout SIMD8<Float>, _ j: Int, _ l: SIMD8<Int32>, _ h: SIMD8<Int32>) {
                        let jv = SIMD8<Int32>(repeating: Int32(truncatingIfNeeded: j))
                        a.replace(with: -.infinity, where: (jv .< l) .| (jv .>= h))
                    }
                    mask(&a00, kb, l0, h0); mask(&a01, kb, l1, h1); mask(&a02, kb, l2, h2)
                    mask(&a10, kb &+ 1, l0, h0); mask(&a11, kb &+ 1, l1, h1); mask(&a12, kb &+ 1, l2, h2)
                    mask(&a20, kb &+ 2, l0, h0); mask(&a21, kb &+ 2, l1, h1); mask(&a22, kb &+ 2, l2, h2)
                    mask(&a30, kb &+ 3, l0, h0); mask(&a31, kb &+ 3, l1, h1); mask(&a32, kb &+ 3, l2, h2)
                }
                let o = sr + (kb &* rp &+ rb) &* 4
                put(a00, a01, a02, o)
                put(a10, a11, a12, o + rowBytes)
                put(a20, a21, a22, o + 2 &* rowBytes)
                put(a30, a31, a32, o + 3 &* rowBytes)
                m0 = maximum(m0, maximum(maximum(a00, a10), maximum(a20, a30)))
                m1 = maximum(m1, maximum(maximum(a01, a11), maximum(a21, a31)))
                m2 = maximum(m2, maximum(maximum(a02, a12), maximum(a22, a32)))
                kb &+= 4
            }
            let t = UnsafeMutableRawPointer(tileMax + rb)
            t.storeBytes(of: m0, as: SIMD8<Float>.self)
            t.storeBytes(of: m1, toByteOffset: 32, as: SIMD8<Float>.self)
            t.storeBytes(of: m2, toByteOffset: 64, as: SIMD8<Float>.self)
            rb &+= rowBlock
        }
    }

    /// Online softmax of a score tile, vectorised across rows: the running max takes in the tile max, the scores
    /// become weights 2^(s - max) in place, the running sum is rescaled and extended, and the rescaling factor of each
    /// row's output is left in `correction`.
    @inline(__always)
    private static func softmaxTile(rp: Int, n4: Int, scores: UnsafeMutablePointer<Float>,
                                    tileMax: UnsafePointer<Float>, runningMax: UnsafeMutablePointer<Float>,
                                    runningSum: UnsafeMutablePointer<Float>, correction: UnsafeMutablePointer<Float>) {
        let rowBytes = rp &* 4
        var r = 0
        while r < rp {
            let old = UnsafeRawPointer(runningMax + r).load(as: SIMD8<Float>.self)
            let top = maximum(old, UnsafeRawPointer(tileMax + r).load(as: SIMD8<Float>.self))
            let c = exp2v(old - top)
            var s0 = SIMD8<Float>(), s1 = SIMD8<Float>()
            var at = UnsafeMutableRawPointer(scores + r)
            var j = 0
            while j &+ 2 <= n4 {
                let p0 = exp2v(at.load(as: SIMD8<Float>.self) - top)
                let p1 = exp2v(at.load(fromByteOffset: rowBytes, as: SIMD8<Float>.self) - top)
                at.storeBytes(of: p0, as: SIMD8<Float>.self)
                at.storeBytes(of: p1, toByteOffset: rowBytes, as: SIMD8<Float>.self)
                s0 += p0
                s1 += p1
                at += 2 &* rowBytes
                j &+= 2
            }
            if j < n4 {
                let p0 = exp2v(at.load(as: SIMD8<Float>.self) - top)
                at.storeBytes(of: p0, as: SIMD8<Float>.self)
                s0 += p0
            }
            let sum = UnsafeMutableRawPointer(runningSum + r)
            sum.storeBytes(of: sum.load(as: SIMD8<Float>.self) * c + (s0 + s1), as: SIMD8<Float>.self)
            UnsafeMutableRawPointer(runningMax + r).storeBytes(of: top, as: SIMD8<Float>.self)
            UnsafeMutableRawPointer(correction + r).storeBytes(of: c, as: SIMD8<Float>.self)
            r &+= 8
        }
    }

    /// oT[d * rp + r] = oT[d * rp + r] * correction[r] + sum_j values[j][d] * weights[j * rp + r], four features
    /// (the last block's extra features read feature headDim - 1 and land in padding rows of oT) by 24 rows at a time.
    @inline(__always)
    private static func valueTile(oT: UnsafeMutablePointer<Float>, rp: Int, headDim: Int, features: Int,
                                  values: UnsafePointer<UnsafePointer<Float>>, n4: Int, weights: UnsafePointer<Float>,
                                  correction: UnsafePointer<Float>) {
        let rowBytes = rp &* 4
        let or = UnsafeMutableRawPointer(oT)
        var rb = 0
        while rb < rp {
            let cr = UnsafeRawPointer(correction + rb)
            let c0 = cr.load(as: SIMD8<Float>.self)
            let c1 = cr.load(fromByteOffset: 32, as: SIMD8<Float>.self)
            let c2 = cr.load(fromByteOffset: 64, as: SIMD8<Float>.self)
            var f = 0
            while f < features {
                let last = headDim &- 1
                let e0 = f, e1 = min(f &+ 1, last), e2 = min(f &+ 2, last), e3 = min(f &+ 3, last)
                let o = or + (f &* rp &+ rb) &* 4
                var a00 = o.load(as: SIMD8<Float>.self) * c0
                var a01 = o.load(fromByteOffset: 32, as: SIMD8<Float>.self) * c1
                var a02 = o.load(fromByteOffset: 64, as: SIMD8<Float>.self) * c2
                var a10 = o.load(fromByteOffset: rowBytes, as: SIMD8<Float>.self) * c0
                var a11 = o.load(fromByteOffset: rowBytes &+ 32, as: SIMD8<Float>.self) * c1
                var a12 = o.load(fromByteOffset: rowBytes &+ 64, as: SIMD8<Float>.self) * c2
                var a20 = o.load(fromByteOffset: 2 &* rowBytes, as: SIMD8<Float>.self) * c0
                var a21 = o.load(fromByteOffset: 2 &* rowBytes &+ 32, as: SIMD8<Float>.self) * c1
                var a22 = o.load(fromByteOffset: 2 &* rowBytes &+ 64, as: SIMD8<Float>.self) * c2
                var a30 = o.load(fromByteOffset: 3 &* rowBytes, as: SIMD8<Float>.self) * c0
                var a31 = o.load(fromByteOffset: 3 &* rowBytes &+ 32, as: SIMD8<Float>.self) * c1
                var a32 = o.load(fromByteOffset: 3 &* rowBytes &+ 64, as: SIMD8<Float>.self) * c2
                var wp = UnsafeRawPointer(weights + rb)
                for j in 0..<n4 {
                    let x0 = wp.load(as: SIMD8<Float>.self)
                    let x1 = wp.load(fromByteOffset: 32, as: SIMD8<Float>.self)
                    let x2 = wp.load(fromByteOffset: 64, as: SIMD8<Float>.self)
                    let v = values[j]
                    var w = SIMD8<Float>(repeating: v[e0])
                    a00.addProduct(w, x0); a01.addProduct(w, x1); a02.addProduct(w, x2)
                    w = SIMD8<Float>(repeating: v[e1])
                    a10.addProduct(w, x0); a11.addProduct(w, x1); a12.addProduct(w, x2)
                    w = SIMD8<Float>(repeating: v[e2])
                    a20.addProduct(w, x0); a21.addProduct(w, x1); a22.addProduct(w, x2)
                    w = SIMD8<Float>(repeating: v[e3])
                    a30.addProduct(w, x0); a31.addProduct(w, x1); a32.addProduct(w, x2)
                    wp += rowBytes
                }
                put(a00, a01, a02, o)
                put(a10, a11, a12, o + rowBytes)
                put(a20, a21, a22, o + 2 &* rowBytes)
                put(a30, a31, a32, o + 3 &* rowBytes)
                f &+= 4
            }
            rb &+= rowBlock
        }
    }

    // MARK: - Dot-product units (decode)

    /// Units with few rows (a decode step's query heads, all KV heads). Per key tile: the scores of each KV head's
    /// rows, four rows at a time where the head size allows (two rows share each vector, so that every key load serves
    /// four rows and the dot products need only in-lane reductions), else one row at a time; then the online softmax
    /// of every row; then pairs of rows of one KV head accumulate the value rows in registers.
    private static func dotUnits(_ p: Problem, _ range: Range<Int>, partials: UnsafeMutablePointer<Float>?) {
        let headDim = p.headDim
        let group = p.group
        let rowsPerToken = p.rowsPerToken
        let maxRows = p.rowsPerUnit
        let keyTile = dotKeyTile
        // Rows per quad block of a KV head's group, and the steps of four features of the quad kernel.
        let quadRows = headDim & 3 == 0 ? group & ~3 : 0
        let steps = headDim >> 2
        var arena = Arena(bytes: 64 &* 8 &+ 4 &* maxRows &* (2 &* headDim &+ keyTile &+ 3) &+ 16 &* keyTile)
        defer { arena.base.deallocate() }
        let queries = arena.take(maxRows &* headDim, Float.self)
        let acc = arena.take(maxRows &* headDim, Float.self)
        let weights = arena.take(maxRows &* keyTile, Float.self)
        let runningMax = arena.take(maxRows, Float.self)
        let runningSum = arena.take(maxRows, Float.self)
        let correction = arena.take(maxRows, Float.self)
        let keys = arena.take(keyTile, UnsafePointer<Float>.self)
        let values = arena.take(keyTile, UnsafePointer<Float>.self)
        var touched: UInt32 = 0

        for u in range {
            let unit = p.unit(u)
            let rows = unit.count &* rowsPerToken
            // Scaled queries: rows of a quad block interleaved four features at a time as [A | B] [C | D] per step,
            // other rows as they are.
            for r in 0..<rows {
                let source = p.q + p.queryRow(unit, r)
                let inGroup = r % group
                if inGroup < quadRows {
                    let lane = inGroup & 3
                    let quad = r &- lane
                    let within: Int = (lane >> 1) &* 8 &+ (lane & 1) &* 4
                    let destination = queries + (quad &* headDim &+ within)
                    for s in 0..<steps {
                        for e in 0..<4 { destination[s &* 16 &+ e] = source[s &* 4 &+ e] * p.qScale }
                    }
                } else {
                    let destination = queries + r &* headDim
                    for d in 0..<headDim { destination[d] = source[d] * p.qScale }
                }
            }
            acc.update(repeating: 0, count: rows &* headDim)
            runningMax.update(repeating: noMaximum, count: rows)
            runningSum.update(repeating: 0, count: rows)

            // Key and value rows are touched (one word loaded per cache line) in bursts of `touchBurst` positions, at
            // least a tile ahead of use: the misses of a burst overlap one another and keep the hardware prefetcher
            // streaming, and the tiles then work from the cache.
            var ahead = Toucher(p, unit, from: unit.keyStart)
            var j0 = unit.keyStart
            while j0 < unit.keyEnd {
                let n = min(keyTile, unit.keyEnd &- j0)
                let n8 = (n &+ 7) & ~7
                p.fillRows(unit, j0, n, n8, keys, values)
                if ahead.position < j0 &+ n &+ keyTile { ahead.touch(upTo: j0 &+ n &+ touchBurst) }

                // Scores, in base 2.
                var r0 = 0
                while r0 < rows {
                    let offset = (r0 % rowsPerToken) / group &* headDim
                    let end = r0 &+ group
                    var r = r0
                    while r < r0 &+ quadRows {
                        let q = UnsafeRawPointer(queries + r &* headDim)
                        let wa = UnsafeMutableRawPointer(weights + r &* keyTile)
                        let rowBytes = keyTile &* 4
                        var g = 0
                        while g < n8 {
                            let (ab, cd) = quadDots4(q, keys + g, offset, steps)
                            wa.storeBytes(of: ab.lowHalf, toByteOffset: g &* 4, as: SIMD4<Float>.self)
                            wa.storeBytes(of: ab.highHalf, toByteOffset: rowBytes &+ g &* 4, as: SIMD4<Float>.self)
                            wa.storeBytes(of: cd.lowHalf, toByteOffset: 2 &* rowBytes &+ g &* 4, as: SIMD4<Float>.self)
                            wa.storeBytes(of: cd.highHalf, toByteOffset: 3 &* rowBytes &+ g &* 4, as: SIMD4<Float>.self)
                            g &+= 4
                        }
                        r &+= 4
                    }
                    while r < end {
                        let query = queries + r &* headDim
                        let w = UnsafeMutableRawPointer(weights + r &* keyTile)
                        var g = 0
                        while g < n8 {
                            w.storeBytes(of: dots8(query, keys + g, offset, headDim), toByteOffset: g &* 4,
                                         as: SIMD8<Float>.self)
                            g &+= 8
                        }
                        r &+= 1
                    }
                    r0 = end
                }

                // Online softmax of each row over the tile.
                let whole = n == n8 && p.unmasked(unit, j0, n)
                for r in 0..<rows {
                    let w = UnsafeMutableRawPointer(weights + r &* keyTile)
                    var maxima = SIMD8<Float>(repeating: -.infinity)
                    if whole {
                        var g = 0
                        while g < n8 {
                            maxima = maximum(maxima, w.load(fromByteOffset: g &* 4, as: SIMD8<Float>.self))
                            g &+= 8
                        }
                    } else {
                        let (lo, hi) = p.visible(unit.first &+ r / rowsPerToken, j0, n)
                        let lo32 = SIMD8<Int32>(repeating: Int32(truncatingIfNeeded: lo))
                        let hi32 = SIMD8<Int32>(repeating: Int32(truncatingIfNeeded: hi))
                        var g = 0
                        while g < n8 {
                            var s = w.load(fromByteOffset: g &* 4, as: SIMD8<Float>.self)
                            let jv = SIMD8<Int32>(0, 1, 2, 3, 4, 5, 6, 7) &+ Int32(truncatingIfNeeded: g)
                            s.replace(with: -.infinity, where: (jv .< lo32) .| (jv .>= hi32))
                            w.storeBytes(of: s, toByteOffset: g &* 4, as: SIMD8<Float>.self)
                            maxima = maximum(maxima, s)
                            g &+= 8
                        }
                    }
                    // A row without visible keys here keeps its state: -inf scores give zero weights, c = 1.
                    let old = runningMax[r]
                    let top = max(old, maxima.max())
                    let c = exp2f(old - top)
                    var sums = SIMD8<Float>()
                    let shift = SIMD8<Float>(repeating: top)
                    var g = 0
                    while g < n8 {
                        let e = exp2v(w.load(fromByteOffset: g &* 4, as: SIMD8<Float>.self) - shift)
                        w.storeBytes(of: e, toByteOffset: g &* 4, as: SIMD8<Float>.self)
                        sums += e
                        g &+= 8
                    }
                    runningSum[r] = runningSum[r] * c + sums.sum()
                    runningMax[r] = top
                    correction[r] = c
                }

                // Values: rows of one KV head are consecutive, group by group.
                r0 = 0
                while r0 < rows {
                    let offset = (r0 % rowsPerToken) / group &* headDim
                    let end = r0 &+ group
                    var r = r0
                    while r &+ 2 <= end {
                        accumulate2(acc + r &* headDim, acc + (r &+ 1) &* headDim, correction[r], correction[r &+ 1],
                                    weights + r &* keyTile, weights + (r &+ 1) &* keyTile, values, offset, n, headDim)
                        r &+= 2
                    }
                    if r < end {
                        accumulate1(acc + r &* headDim, correction[r], weights + r &* keyTile, values, offset, n,
                                    headDim)
                    }
                    r0 = end
                }
                j0 &+= n
            }
            for r in 0..<rows {
                let a = acc + r &* headDim
                finish(p, unit, row: r, max: runningMax[r], sum: runningSum[r], partials: partials) { d in a[d] }
            }
            touched &+= ahead.sum
        }
        if touched == 0x5EED_F00D { touchSink = touched }
    }

    /// Scores of four rows A, B, C, D against keys k[0 ..< 4] (+ offset): q holds per step of four features
    /// [A | B] then [C | D]; each step broadcasts a key's four features to both halves. Returns
    /// ([A k0 ... k3 | B k0 ... k3], [C k0 ... k3 | D k0 ... k3]).
    @inline(__always)
    private static func quadDots4(_ q: UnsafeRawPointer, _ k: UnsafePointer<UnsafePointer<Float>>, _ offset: Int,
                                  _ steps: Int) -> (SIMD8<Float>, SIMD8<Float>) {
        var a0 = SIMD8<Float>(), a1 = a0, a2 = a0, a3 = a0, c0 = a0, c1 = a0, c2 = a0, c3 = a0
        let k0 = UnsafeRawPointer(k[0] + offset), k1 = UnsafeRawPointer(k[1] + offset)
        let k2 = UnsafeRawPointer(k[2] + offset), k3 = UnsafeRawPointer(k[3] + offset)
        @inline(__always) func both(_ p: UnsafeRawPointer, _ o: Int) -> SIMD8<Float> {
            let x = p.loadUnaligned(fromByteOffset: o, as: SIMD4<Float>.self)
            return SIMD8(lowHalf: x, highHalf: x)
        }
        var s = 0
        while s < steps {
            let x = q.loadUnaligned(fromByteOffset: s &* 64, as: SIMD8<Float>.self)
            let y = q.loadUnaligned(fromByteOffset: s &* 64 &+ 32, as: SIMD8<Float>.self)
            let o = s &* 16
            var b = both(k0, o)
            a0.addProduct(x, b); c0.addProduct(y, b)
            b = both(k1, o)
            a1.addProduct(x, b); c1.addProduct(y, b)
            b = both(k2, o)
            a2.addProduct(x, b); c2.addProduct(y, b)
            b = both(k3, o)
            a3.addProduct(x, b); c3.addProduct(y, b)
            s &+= 1
        }
        // Lane-pair sums twice: lane l of each half becomes the sum of the four lanes of that half of a_l.
        return (pairSums(pairSums(a0, a1), pairSums(a2, a3)), pairSums(pairSums(c0, c1), pairSums(c2, c3)))
    }

    /// Walks the key and value rows (all KV heads) of consecutive positions, loading one word of each 64-byte line
    /// so that the lines are on their way to the cache before they are needed; the wrapping sum keeps the loads.
    private struct Toucher {
        let kRows: UnsafeRawPointer, vRows: UnsafeRawPointer
        let kFresh: UnsafeRawPointer, vFresh: UnsafeRawPointer
        let cachedEnd: Int, end: Int, capacity: Int, rowBytes: Int
        var position: Int, slot: Int
        var sum: UInt32 = 0

        init(_ p: Problem, _ unit: Unit, from start: Int) {
            rowBytes = p.kvStride &* 4
            end = unit.keyEnd
            cachedEnd = min(end, p.past)
            capacity = p.capacity
            kRows = UnsafeRawPointer(p.kCache ?? p.kNew) + unit.b &* p.capacity &* rowBytes
            vRows = UnsafeRawPointer(p.vCache ?? p.vNew) + unit.b &* p.capacity &* rowBytes
            kFresh = UnsafeRawPointer(p.kNew) + (unit.b &* p.newTokens &- p.past) &* rowBytes
            vFresh = UnsafeRawPointer(p.vNew) + (unit.b &* p.newTokens &- p.past) &* rowBytes
            position = start
            slot = start < cachedEnd ? start % capacity : 0
        }

        /// Touches the positions before `bound`.
        @inline(__always)
        mutating func touch(upTo bound: Int) {
            let stop = min(end, bound)
            while position < stop {
                let k: UnsafeRawPointer, v: UnsafeRawPointer
                if position < cachedEnd {
                    k = kRows + slot &* rowBytes
                    v = vRows + slot &* rowBytes
                    slot &+= 1
                    if slot == capacity { slot = 0 }
                } else {
                    k = kFresh + position &* rowBytes
                    v = vFresh + position &* rowBytes
                }
                var o = 0
                while o < rowBytes {
                    sum &+= k.load(fromByteOffset: o, as: UInt32.self) &+ v.load(fromByteOffset: o, as: UInt32.self)
                    o &+= 64
                }
                position &+= 1
            }
        }
    }

    /// Eight dot products q . (k[0 ..< 8] + offset) of length n, as one vector.
    @inline(__always)
    private static func dots8(_ q: UnsafePointer<Float>, _ k: UnsafePointer<UnsafePointer<Float>>, _ offset: Int,
                              _ n: Int) -> SIMD8<Float> {
        var a0 = SIMD8<Float>(), a1 = SIMD8<Float>(), a2 = SIMD8<Float>(), a3 = SIMD8<Float>()
        var a4 = SIMD8<Float>(), a5 = SIMD8<Float>(), a6 = SIMD8<Float>(), a7 = SIMD8<Float>()
        let k0 = UnsafeRawPointer(k[0] + offset), k1 = UnsafeRawPointer(k[1] + offset)
        let k2 = UnsafeRawPointer(k[2] + offset), k3 = UnsafeRawPointer(k[3] + offset)
        let k4 = UnsafeRawPointer(k[4] + offset), k5 = UnsafeRawPointer(k[5] + offset)
        let k6 = UnsafeRawPointer(k[6] + offset), k7 = UnsafeRawPointer(k[7] + offset)
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
        let w0 = pairSums(pairSums(a0, a1), pairSums(a2, a3))
        let w1 = pairSums(pairSums(a4, a5), pairSums(a6, a7))
        var result = SIMD8(lowHalf: w0.lowHalf, highHalf: w1.lowHalf) + SIMD8(lowHalf: w0.highHalf, highHalf: w1.highHalf)
        while d < n {
            let x = q[d]
            for l in 0..<8 { result[l] += x * k[l][offset &+ d] }
            d &+= 1
        }
        return result
    }

    /// Two rows at once: a = a * ca + sum_j wa[j] * values[j], b likewise, 32 (then 8, then 1) features at a time in
    /// registers, each value load shared by both rows.
    @inline(__always)
    private static func accumulate2(_ a: UnsafeMutablePointer<Float>, _ b: UnsafeMutablePointer<Float>, _ ca: Float,
                                    _ cb: Float, _ wa: UnsafePointer<Float>, _ wb: UnsafePointer<Float>,
                                    _ values: UnsafePointer<UnsafePointer<Float>>, _ offset: Int, _ n: Int,
                                    _ headDim: Int) {
        let ar = UnsafeMutableRawPointer(a), br = UnsafeMutableRawPointer(b)
        let base = offset &* 4
        let sa = SIMD8<Float>(repeating: ca), sb = SIMD8<Float>(repeating: cb)
        var d = 0
        while d &+ 32 <= headDim {
            let o = d &* 4
            var x0 = ar.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self) * sa
            var x1 = ar.loadUnaligned(fromByteOffset: o &+ 32, as: SIMD8<Float>.self) * sa
            var x2 = ar.loadUnaligned(fromByteOffset: o &+ 64, as: SIMD8<Float>.self) * sa
            var x3 = ar.loadUnaligned(fromByteOffset: o &+ 96, as: SIMD8<Float>.self) * sa
            var y0 = br.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self) * sb
            var y1 = br.loadUnaligned(fromByteOffset: o &+ 32, as: SIMD8<Float>.self) * sb
            var y2 = br.loadUnaligned(fromByteOffset: o &+ 64, as: SIMD8<Float>.self) * sb
            var y3 = br.loadUnaligned(fromByteOffset: o &+ 96, as: SIMD8<Float>.self) * sb
            for j in 0..<n {
                let v = UnsafeRawPointer(values[j]) + (base &+ o)
                let v0 = v.loadUnaligned(as: SIMD8<Float>.self)
                let v1 = v.loadUnaligned(fromByteOffset: 32, as: SIMD8<Float>.self)
                let v2 = v.loadUnaligned(fromByteOffset: 64, as: SIMD8<Float>.self)
                let v3 = v.loadUnaligned(fromByteOffset: 96, as: SIMD8<Float>.self)
                let p = SIMD8<Float>(repeating: wa[j])
                x0.addProduct(p, v0); x1.addProduct(p, v1); x2.addProduct(p, v2); x3.addProduct(p, v3)
                let q = SIMD8<Float>(repeating: wb[j])
                y0.addProduct(q, v0); y1.addProduct(q, v1); y2.addProduct(q, v2); y3.addProduct(q, v3)
            }
            ar.storeBytes(of: x0, toByteOffset: o, as: SIMD8<Float>.self)
            ar.storeBytes(of: x1, toByteOffset: o &+ 32, as: SIMD8<Float>.self)
            ar.storeBytes(of: x2, toByteOffset: o &+ 64, as: SIMD8<Float>.self)
            ar.storeBytes(of: x3, toByteOffset: o &+ 96, as: SIMD8<Float>.self)
            br.storeBytes(of: y0, toByteOffset: o, as: SIMD8<Float>.self)
            br.storeBytes(of: y1, toByteOffset: o &+ 32, as: SIMD8<Float>.self)
            br.storeBytes(of: y2, toByteOffset: o &+ 64, as: SIMD8<Float>.self)
            br.storeBytes(of: y3, toByteOffset: o &+ 96, as: SIMD8<Float>.self)
            d &+= 32
        }
        while d &+ 8 <= headDim {
            let o = d &* 4
            var x = ar.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self) * sa
            var y = br.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self) * sb
            for j in 0..<n {
                let v = UnsafeRawPointer(values[j]).loadUnaligned(fromByteOffset: base &+ o, as: SIMD8<Float>.self)
                x.addProduct(SIMD8<Float>(repeating: wa[j]), v)
                y.addProduct(SIMD8<Float>(repeating: wb[j]), v)
            }
            ar.storeBytes(of: x, toByteOffset: o, as: SIMD8<Float>.self)
            br.storeBytes(of: y, toByteOffset: o, as: SIMD8<Float>.self)
            d &+= 8
        }
        while d < headDim {
            var x = a[d] * ca, y = b[d] * cb
            for j in 0..<n {
                let v = values[j][offset &+ d]
                x += wa[j] * v
                y += wb[j] * v
            }
            a[d] = x
            b[d] = y
            d &+= 1
        }
    }

    /// One row: a = a * ca + sum_j wa[j] * values[j], 32 (then 8, then 1) features at a time in registers.
    @inline(__always)
    private static func accumulate1(_ a: UnsafeMutablePointer<Float>, _ ca: Float, _ wa: UnsafePointer<Float>,
                                    _ values: UnsafePointer<UnsafePointer<Float>>, _ offset: Int, _ n: Int,
                                    _ headDim: Int) {
        let ar = UnsafeMutableRawPointer(a)
        let base = offset &* 4
        let sa = SIMD8<Float>(repeating: ca)
        var d = 0
        while d &+ 32 <= headDim {
            let o = d &* 4
            var x0 = ar.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self) * sa
            var x1 = ar.loadUnaligned(fromByteOffset: o &+ 32, as: SIMD8<Float>.self) * sa
            var x2 = ar.loadUnaligned(fromByteOffset: o &+ 64, as: SIMD8<Float>.self) * sa
            var x3 = ar.loadUnaligned(fromByteOffset: o &+ 96, as: SIMD8<Float>.self) * sa
            for j in 0..<n {
                let v = UnsafeRawPointer(values[j]) + (base &+ o)
                let p = SIMD8<Float>(repeating: wa[j])
                x0.addProduct(p, v.loadUnaligned(as: SIMD8<Float>.self))
                x1.addProduct(p, v.loadUnaligned(fromByteOffset: 32, as: SIMD8<Float>.self))
                x2.addProduct(p, v.loadUnaligned(fromByteOffset: 64, as: SIMD8<Float>.self))
                x3.addProduct(p, v.loadUnaligned(fromByteOffset: 96, as: SIMD8<Float>.self))
            }
            ar.storeBytes(of: x0, toByteOffset: o, as: SIMD8<Float>.self)
            ar.storeBytes(of: x1, toByteOffset: o &+ 32, as: SIMD8<Float>.self)
            ar.storeBytes(of: x2, toByteOffset: o &+ 64, as: SIMD8<Float>.self)
            ar.storeBytes(of: x3, toByteOffset: o &+ 96, as: SIMD8<Float>.self)
            d &+= 32
        }
        while d &+ 8 <= headDim {
            let o = d &* 4
            var x = ar.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self) * sa
            for j in 0..<n {
                x.addProduct(SIMD8<Float>(repeating: wa[j]),
                             UnsafeRawPointer(values[j]).loadUnaligned(fromByteOffset: base &+ o,
                                                                       as: SIMD8<Float>.self))
            }
            ar.storeBytes(of: x, toByteOffset: o, as: SIMD8<Float>.self)
            d &+= 8
        }
        while d < headDim {
            var x = a[d] * ca
            for j in 0..<n { x += wa[j] * values[j][offset &+ d] }
            a[d] = x
            d &+= 1
        }
    }

    // MARK: - Vector helpers

    /// Stores three vectors at consecutive 32-byte offsets.
    @inline(__always)
    private static func put(_ a0: SIMD8<Float>, _ a1: SIMD8<Float>, _ a2: SIMD8<Float>, _ at: UnsafeMutableRawPointer) {
        at.storeBytes(of: a0, as: SIMD8<Float>.self)
        at.storeBytes(of: a1, toByteOffset: 32, as: SIMD8<Float>.self)
        at.storeBytes(of: a2, toByteOffset: 64, as: SIMD8<Float>.self)
    }

    /// Within each 128-bit half, [a0 + a1, a2 + a3, b0 + b1, b2 + b3] (vhaddps).
    @inline(__always)
    private static func pairSums(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> {
        SIMD8(a[0], a[2], b[0], b[2], a[4], a[6], b[4], b[6]) + SIMD8(a[1], a[3], b[1], b[3], a[5], a[7], b[5], b[7])
    }

    /// Lane-wise maximum (either operand when equal; no NaNs occur here).
    @inline(__always)
    private static func maximum(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> {
        a.replacing(with: b, where: b .> a)
    }

    /// 2^x for x <= 0 (and -inf): 2^n * 2^r with n = round(x) and r = x - n in [-0.5, 0.5], 2^r by the Cephes exp2f
    /// polynomial (relative error about 2e-7). Lanes below -126.5 (including -inf) give exactly 0, since n = -127
    /// builds a zero scale.
    @inline(__always)
    private static func exp2v(_ x: SIMD8<Float>) -> SIMD8<Float> {
        let lowest = SIMD8<Float>(repeating: -127)
        let clamped = lowest.replacing(with: x, where: x .> lowest)
        // Adding 1.5 * 2^23 + 127 rounds to an integer: the low mantissa bits of t hold n + 127, which shifted into
        // the exponent field (the bits above shifted out) is 2^n.
        let shifter = SIMD8<Float>(repeating: 12_583_039)
        let t = clamped + shifter
        let r = clamped - (t - shifter)
        var y = SIMD8<Float>(repeating: 1.535_336_188_319_500e-4)
        y = SIMD8<Float>(repeating: 1.339_887_440_266_574e-3).addingProduct(y, r)
        y = SIMD8<Float>(repeating: 9.618_437_357_674_640e-3).addingProduct(y, r)
        y = SIMD8<Float>(repeating: 5.550_332_471_162_809e-2).addingProduct(y, r)
        y = SIMD8<Float>(repeating: 2.402_264_791_363_012e-1).addingProduct(y, r)
        y = SIMD8<Float>(repeating: 6.931_472_028_550_421e-1).addingProduct(y, r)
        y = SIMD8<Float>(repeating: 1).addingProduct(y, r)
        let scale = unsafeBitCast(unsafeBitCast(t, to: SIMD8<UInt32>.self) &<< 23, to: SIMD8<Float>.self)
        return y * scale
    }
}
