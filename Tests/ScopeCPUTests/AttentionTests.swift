import Glibc
import Testing

@testable import ScopeCPU

/// A whole sequence's queries, keys and values for `batch` sequences, with the double-precision attention output.
private struct AttentionCase {
    let batch: Int, length: Int, heads: Int, kvHeads: Int, headDim: Int, window: Int?
    let scale: Float
    let q: [Float], k: [Float], v: [Float]  // [batch, length, (kv)heads * headDim]

    init(batch: Int, length: Int, heads: Int, kvHeads: Int, headDim: Int, window: Int?, seed: UInt64) {
        self.batch = batch; self.length = length; self.heads = heads; self.kvHeads = kvHeads
        self.headDim = headDim; self.window = window
        scale = 1 / Float(headDim).squareRoot()
        var rng = SplitMix64(seed: seed)
        // Scaled-up queries make the softmax peaky enough that a wrong mask or stale max would show.
        q = rng.floats(batch * length * heads * headDim, scale: 3)
        k = rng.floats(batch * length * kvHeads * headDim, scale: 3)
        v = rng.floats(batch * length * kvHeads * headDim)
    }

    /// Naive causal softmax attention over full rows of scores, [batch, length, heads * headDim].
    func reference() -> [Double] {
        let qStride = heads * headDim, kvStride = kvHeads * headDim
        var out = [Double](repeating: 0, count: batch * length * qStride)
        for b in 0..<batch {
            for h in 0..<heads {
                let kvh = h / (heads / kvHeads)
                for i in 0..<length {
                    let lowest = window.map { max(0, i - $0 + 1) } ?? 0
                    var scores = [Double]()
                    for j in lowest...i {
                        var s = 0.0
                        for d in 0..<headDim {
                            s += Double(q[(b * length + i) * qStride + h * headDim + d])
                                * Double(k[(b * length + j) * kvStride + kvh * headDim + d])
                        }
                        scores.append(s * Double(scale))
                    }
                    let top = scores.max()!
                    let weights = scores.map { exp($0 - top) }
                    let total = weights.reduce(0, +)
                    for (offset, j) in (lowest...i).enumerated() {
                        for d in 0..<headDim {
                            out[(b * length + i) * qStride + h * headDim + d] +=
                                weights[offset] / total * Double(v[(b * length + j) * kvStride + kvh * headDim + d])
                        }
                    }
                }
            }
        }
        return out
    }

    /// Runs the sequence through Attention.causal in chunks of the given sizes (summing to `length`), keeping keys and
    /// values in a ring-buffer cache of `capacity` slots as a model would; returns the concatenated outputs.
    func chunked(_ chunks: [Int], capacity: Int) -> [Float] {
        precondition(chunks.reduce(0, +) == length)
        let qStride = heads * headDim, kvStride = kvHeads * headDim
        var kCache = [Float](repeating: .nan, count: max(1, batch * capacity * kvStride))
        var vCache = kCache
        var result = [Float](repeating: .nan, count: batch * length * qStride)
        var past = 0
        for chunk in chunks {
            func rows(_ source: [Float], _ stride: Int) -> [Float] {
                var picked = [Float]()
                for b in 0..<batch {
                    let start = (b * length + past) * stride
                    picked += source[start..<(start + chunk * stride)]
                }
                return picked
            }
            let q = rows(self.q, qStride), kNew = rows(k, kvStride), vNew = rows(v, kvStride)
            var out = [Float](repeating: .nan, count: batch * chunk * qStride)
            Attention.causal(q: q, kNew: kNew, vNew: vNew, kCache: kCache, vCache: vCache, capacity: capacity,
                             batch: batch, newTokens: chunk, past: past, heads: heads, kvHeads: kvHeads, headDim: headDim,
                             window: window, scale: scale, out: &out)
            for b in 0..<batch {
                for t in 0..<chunk {
                    let destination = (b * length + past + t) * qStride
                    let row = (b * chunk + t) * qStride
                    result[destination..<(destination + qStride)] = out[row..<(row + qStride)]
                    // Append this position's key and value to the ring buffer.
                    if capacity > 0 {
                        let slot = (b * capacity + (past + t) % capacity) * kvStride
                        let source = (b * length + past + t) * kvStride
                        kCache[slot..<(slot + kvStride)] = k[source..<(source + kvStride)]
                        vCache[slot..<(slot + kvStride)] = v[source..<(source + kvStride)]
                    }
                }
            }
            past += chunk
        }
        return result
    }
}

@Test func prefillFromEmptyCacheMatchesNaiveSoftmax() {
    // Longer than one key tile and one query tile; headDim with a non-multiple-of-8 tail.
    let c = AttentionCase(batch: 2, length: 80, heads: 2, kvHeads: 2, headDim: 20, window: nil, seed: 21)
    let error = relativeError(c.chunked([80], capacity: 0), c.reference())
    #expect(error < 1e-4, "relative error \(error)")
}

@Test func chunkedPrefillEqualsOneShot() {
    let c = AttentionCase(batch: 2, length: 75, heads: 4, kvHeads: 2, headDim: 16, window: nil, seed: 22)
    let oneShot = c.chunked([75], capacity: 75)
    let chunked = c.chunked([5, 30, 1, 39], capacity: 75)
    #expect(relativeError(chunked, oneShot.map(Double.init)) < 1e-5)
    #expect(relativeError(chunked, c.reference()) < 1e-4)
}

@Test func decodeStepsEqualPrefillRows() {
    let c = AttentionCase(batch: 1, length: 70, heads: 2, kvHeads: 1, headDim: 32, window: nil, seed: 23)
    let prefill = c.chunked([70], capacity: 80)
    let decode = c.chunked([66] + [Int](repeating: 1, count: 4), capacity: 80)
    #expect(relativeError(decode, prefill.map(Double.init)) < 1e-5)
    let stepwise = c.chunked([Int](repeating: 1, count: 70), capacity: 70)
    #expect(relativeError(stepwise, c.reference()) < 1e-4)
}

@Test(arguments: [1, 4, 13, 64, 100])
func slidingWindowMatchesNaiveSoftmax(window: Int) {
    let c = AttentionCase(batch: 1, length: 90, heads: 3, kvHeads: 3, headDim: 12, window: window, seed: 24 + UInt64(window))
    let expected = c.reference()
    #expect(relativeError(c.chunked([90], capacity: 90), expected) < 1e-4)
    #expect(relativeError(c.chunked([17, 50, 1, 1, 21], capacity: 90), expected) < 1e-4)
}

@Test func groupedQueryHeadsShareKVHeads() {
    let c = AttentionCase(batch: 2, length: 33, heads: 8, kvHeads: 2, headDim: 8, window: nil, seed: 25)
    #expect(relativeError(c.chunked([20, 13], capacity: 40), c.reference()) < 1e-4)
}

@Test func ringBufferSmallerThanContextWithWindow() {
    // capacity 8 < context; window 6 <= capacity, so every needed key is still cached.
    let c = AttentionCase(batch: 2, length: 40, heads: 4, kvHeads: 1, headDim: 16, window: 6, seed: 26)
    let expected = c.reference()
    #expect(relativeError(c.chunked([Int](repeating: 1, count: 40), capacity: 8), expected) < 1e-4)
    // Chunks of 3 need keys back to past - 5 >= past - 8.
    #expect(relativeError(c.chunked([10] + [Int](repeating: 3, count: 10), capacity: 8), expected) < 1e-4)
    // A window equal to the capacity.
    let tight = AttentionCase(batch: 1, length: 30, heads: 2, kvHeads: 2, headDim: 8, window: 8, seed: 27)
    #expect(relativeError(tight.chunked([9] + [Int](repeating: 1, count: 21), capacity: 8), tight.reference()) < 1e-4)
}

@Test(arguments: [64, 72, 130])
func wideHeadsMatchNaiveSoftmax(headDim: Int) {
    // Head sizes that use the 64-feature register blocks of the value accumulation, with 8-wide and scalar tails.
    let c = AttentionCase(batch: 1, length: 40, heads: 2, kvHeads: 1, headDim: headDim, window: nil, seed: 28)
    #expect(relativeError(c.chunked([37, 1, 1, 1], capacity: 40), c.reference()) < 1e-4)
}

@Test func longContextSplitsKeysAcrossWorkers() {
    // Long enough that decode steps and a short chunk (register-tiled) split their keys into slices merged by
    // log-sum-exp; four query heads per KV head (the four-row decode kernel).
    let c = AttentionCase(batch: 1, length: 1100, heads: 8, kvHeads: 2, headDim: 32, window: nil, seed: 29)
    #expect(relativeError(c.chunked([1080, 17, 1, 1, 1], capacity: 1100), c.reference()) < 1e-4)
}

@Test func longWindowedDecodeSplitsKeys() {
    // Split key slices that start at the window edge and wrap around the ring buffer.
    let c = AttentionCase(batch: 2, length: 1400, heads: 4, kvHeads: 1, headDim: 16, window: 1100, seed: 30)
    #expect(relativeError(c.chunked([1300, 96, 1, 1, 1, 1], capacity: 1200), c.reference()) < 1e-4)
}

@Test(arguments: [[16, 2, 12], [6, 1, 20], [5, 1, 32], [3, 1, 18]])
func decodeQueryHeadGroupsMatchNaiveSoftmax(shape: [Int]) {
    // Groups of 8, 6 and 5 query heads per KV head (four-row blocks plus single rows) and head sizes without the
    // four-feature steps, over short decode chunks.
    let c = AttentionCase(batch: 2, length: 60, heads: shape[0], kvHeads: shape[1], headDim: shape[2], window: nil,
                          seed: 31 + UInt64(shape[2]))
    #expect(relativeError(c.chunked([50, 1, 2, 3, 1, 3], capacity: 60), c.reference()) < 1e-4)
}
