/// Causal depthwise 1-D convolution of Mamba-family mixers (Hugging Face `conv1d` with `groups = channels`,
/// `padding = kernel - 1`, output cut to the input length), with a rolling state for incremental decoding.
public enum Conv1d {
    /// Causal depthwise convolution over `tokens` new inputs per sequence, continuing from `state`.
    ///
    /// - Parameters:
    ///   - x: [batch * tokens, channels] (row = b * tokens + t).
    ///   - weight: [channels, kernel] (HF `conv1d.weight` [C, 1, K] flattened); weight[c, K-1] multiplies the newest input.
    ///   - bias: [channels] or nil.
    ///   - silu: apply SiLU to the result.
    ///   - state: [batch, kernel - 1, channels], the previous kernel-1 inputs of each sequence, oldest first (zeros for
    ///     a fresh sequence); on return it holds the last kernel-1 inputs (including the new ones).
    ///   - out: [batch * tokens, channels]; must not alias x.
    ///
    /// out[b, t, c] = bias[c] + sum_{j<K} weight[c, j] * input[t - (K-1) + j], where input before t=0 comes from state;
    /// then SiLU if `silu`.
    public static func causal(x: UnsafePointer<Float>, batch: Int, tokens: Int, channels: Int, kernel: Int,
                              weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?, silu: Bool,
                              state: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>) {
        precondition(kernel >= 1, "Conv1d.causal: kernel must be at least 1")
        guard batch > 0, tokens > 0, channels > 0 else { return }
        let history = kernel - 1

        // Weights transposed to [kernel, channels] so that channels are contiguous for SIMD.
        let wT = UnsafeMutablePointer<Float>.allocate(capacity: kernel * channels)
        defer { wT.deallocate() }
        for c in 0..<channels {
            for j in 0..<kernel { wT[j * channels + c] = weight[c * kernel + j] }
        }

        let block = 64
        let blocks = (channels + block - 1) / block
        let workPerItem = max(1, tokens * min(block, channels) * kernel)
        let minimum = max(1, 32_768 / workPerItem)
        Parallel.forRanges(batch * blocks, minimumPerTask: minimum) { range in
            for item in range {
                let b = item / blocks
                let c0 = (item % blocks) * block
                let c1 = min(channels, c0 + block)
                let st = state + b * history * channels
                let xb = x + b * tokens * channels
                for t in 0..<tokens {
                    let o = out + (b * tokens + t) * channels
                    var c = c0
                    while c + 8 <= c1 {
                        var acc = bias.map { SSMMath.load($0 + c) } ?? SIMD8<Float>()
                        for j in 0..<kernel {
                            let index = t - history + j
                            let src: UnsafePointer<Float> = index >= 0
                                ? xb + index * channels : UnsafePointer(st + (history + index) * channels)
                            acc = acc.addingProduct(SSMMath.load(wT + j * channels + c), SSMMath.load(src + c))
                        }
                        if silu { acc = SSMMath.silu(acc) }
                        SSMMath.store(acc, o + c)
                        c += 8
                    }
                    while c < c1 {
                        var acc: Float = bias?[c] ?? 0
                        for j in 0..<kernel {
                            let index = t - history + j
                            let v = index >= 0 ? xb[index * channels + c] : st[(history + index) * channels + c]
                            acc += wT[j * channels + c] * v
                        }
                        o[c] = silu ? SSMMath.silu(acc) : acc
                        c += 1
                    }
                }
                // Roll the state: keep the newest kernel-1 inputs (old state followed by the new tokens).
                guard history > 0 else { continue }
                let count = c1 - c0
                if tokens >= history {
                    for i in 0..<history {
                        (st + i * channels + c0).update(from: xb + (tokens - history + i) * channels + c0, count: count)
                    }
                } else {
                    let kept = history - tokens
                    for i in 0..<kept {
                        (st + i * channels + c0).update(from: st + (i + tokens) * channels + c0, count: count)
                    }
                    for i in 0..<tokens {
                        (st + (kept + i) * channels + c0).update(from: xb + i * channels + c0, count: count)
                    }
                }
            }
        }
    }
}
