// Causal attention against the ring-buffer KV cache (Attention.causal's contract) with split-KV on tensor cores:
// each block computes the softmax states of the query heads of one KV head (for one query row) over one split of its
// keys, and attn_combine_d* merges the splits. Used for decode steps and for new rows that the tensor-core prefill
// kernel does not take (fewer than 16, other head sizes). Also: appending to the cache.
#include "common.cuh"

// 16 bytes from global to shared memory, or 16 zero bytes when !valid (src is then not read).
__device__ __forceinline__ void copy16_or_zero(act* dst, const act* src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(smem_address(dst)), "l"(src),
                 "r"(valid ? 16 : 0));
}

// Transposes an 8x8 16-bit matrix held one register per thread (thread T: row T / 4, columns 2 (T % 4), +1).
__device__ __forceinline__ unsigned transpose8x8(unsigned r) {
    unsigned t;
    asm volatile("movmatrix.sync.aligned.m8n8.trans.b16 %0, %1;" : "=r"(t) : "r"(r));
    return t;
}

// Grid (splits, heads / group, batch * newTokens); 128 threads (4 warps); dynamic shared memory of 4 warps x 3 stages
// x (K, V) x 16 keys x (D + 8) activations. A block serves the `group` (at most 8) query heads that share one KV
// head, so every key and value row is read once for all of them. Its split of the row's keys is cut into 16-key
// tiles that the warps take in turn; each warp streams its tiles through its own 3-stage cp.async ring (two tiles in
// flight while it computes one) and computes, on tensor cores with fp32 accumulation,
//   S^T = K Q^T (16 keys x 8 heads: one m16n8k16 MMA per 16 dimensions, q's fragments held in registers),
//   an online softmax per head, and O^T += V^T P^T (P^T transposed in registers by movmatrix, V^T from
//   ldmatrix.trans),
// then the warps' states merge through shared memory. partial: [rows, heads, splits, headDim + 2] holding (max,
// sum, unnormalised output) per head and split, the max in natural-log units of scaled scores (an empty split
// leaves max -inf). D is the head size rounded up to 16, 32, 64, 128 or 256 (the rest zero); rows of keys and
// values go by cp.async when they are 16-byte aligned (head size a multiple of 8), element by element otherwise.
// window 0 means none. The split size is computed here (a multiple of 16 keys covering the longest row's keys in
// gridDim.x splits); pastDevice, when not null, overrides past (recorded decode steps replay with a fixed grid).
template <int D>
__device__ __forceinline__ void split_attention(const act* q, const act* kNew, const act* vNew, const act* kCache,
                                                const act* vCache, float* partial, int capacity, int newTokens,
                                                int past, int heads, int kvHeads, int headDim, int window,
                                                float scale, const int* pastDevice, int group) {
    constexpr int KT = 16, STRIDE = D + 8, STAGES = 3, TILE = KT * STRIDE, WARPS = 4, CHUNKS = D / 8;
    extern __shared__ __align__(16) unsigned char raw[];
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3;
    act* ring = (act*)raw + warp * STAGES * 2 * TILE;  // this warp's [STAGES][K, V][KT][STRIDE]
    int s = blockIdx.x, splits = gridDim.x, row = blockIdx.z, h0 = blockIdx.y * group;
    if (pastDevice) past = *pastDevice;
    int maxKeys = window > 0 ? min(past + newTokens, window) : past + newTokens;
    int splitSize = ((maxKeys + splits - 1) / splits + KT - 1) / KT * KT;
    int b = row / newTokens, i = past + row % newTokens;
    int lo = window > 0 ? max(0, i - window + 1) : 0;
    int start = lo + s * splitSize, end = min(i + 1, start + splitSize);
    int tiles = start < end ? (end - start + KT - 1) / KT : 0;
    int count = tiles > warp ? (tiles - warp + WARPS - 1) / WARPS : 0;  // this warp's tiles: warp + WARPS k
    i64 kvStride = (i64)kvHeads * headDim;
    int kvOffset = (h0 / (heads / kvHeads)) * headDim;
    bool vector = (headDim & 7) == 0 && aligned16(kNew) && aligned16(vNew)
        && (capacity == 0 || (aligned16(kCache) && aligned16(vCache)));
    int slot0 = start < past ? start % capacity : 0;  // keys start.. < past lie at slots slot0.. (wrapping once)

    // Issues the copies of this warp's k-th tile into its stage, if it has one; commits a group either way, so that
    // group k is always tile k's. Lane x copies 16-byte chunks x + 32 u of the tile's rows (zeros past `end` and
    // past the head size).
    auto load = [&](int k) {
        if (k < count) {
            int j0 = start + (warp + WARPS * k) * KT;
            act* ks = ring + (k % STAGES) * 2 * TILE;
            act* vs = ks + TILE;
            auto offset = [&](int j) -> i64 {  // key j's row in kNew (j >= past) or in the cache, without branches
                int slot = slot0 + (j - start);
                slot = slot >= capacity ? slot - capacity : slot;
                return (j >= past ? (i64)b * newTokens + j - past : (i64)b * capacity + slot) * kvStride + kvOffset;
            };
            if (vector) {
#pragma unroll
                for (int u = 0; u < KT * CHUNKS / 32; u++) {
                    int x = lane + 32 * u, r = x / CHUNKS, c = (x % CHUNKS) * 8, j = j0 + r;
                    bool valid = j < end && c < headDim, fresh = j >= past;
                    i64 at = offset(j) + c;
                    // An invalid copy reads nothing; kNew stands for its source.
                    copy16_or_zero(ks + r * STRIDE + c, valid ? (fresh ? kNew : kCache) + at : kNew, valid);
                    copy16_or_zero(vs + r * STRIDE + c, valid ? (fresh ? vNew : vCache) + at : vNew, valid);
                }
            } else {
                for (int x = lane; x < KT * D; x += 32) {
                    int r = x / D, c = x % D, j = j0 + r;
                    bool valid = j < end && c < headDim;
                    i64 at = offset(j) + c;
                    ks[r * STRIDE + c] = valid ? (j >= past ? kNew : kCache)[at] : float_to_act(0.0f);
                    vs[r * STRIDE + c] = valid ? (j >= past ? vNew : vCache)[at] : float_to_act(0.0f);
                }
            }
        }
        asm volatile("cp.async.commit_group;");
    };
#pragma unroll
    for (int k = 0; k < STAGES - 1; k++) load(k);

    // q's B fragments (dimensions x heads): b0 = q[h0 + g][16 kk + 2 tq, +1], b1 the same 8 dimensions on.
    unsigned qf[D / 16][2];
    const act* qRow = q + ((i64)row * heads + h0 + g) * headDim;
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
#pragma unroll
        for (int e = 0; e < 2; e++) {
            int d = kk * 16 + e * 8 + tq * 2;
            qf[kk][e] = pack_act(g < group && d < headDim ? ld(qRow, d) : 0.0f,
                                 g < group && d + 1 < headDim ? ld(qRow, d + 1) : 0.0f);
        }
    }
    // O^T accumulators (dims 16 n + g and + 8, heads 2 tq and 2 tq + 1), running maxima (log2 units of scaled
    // scores) and this thread's share of the sums of heads 2 tq and 2 tq + 1.
    float o[D / 16][4], m[2] = {NEG_INF, NEG_INF}, l[2] = {0.0f, 0.0f};
#pragma unroll
    for (int n = 0; n < D / 16; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    const float scaleLog2 = scale * 1.4426950408889634f;

    // ldmatrix lane addresses. Keys (A of S^T, keys x dims): matrices (keys 0-7, dims 0-7), (8-15, 0-7), (0-7, 8-15),
    // (8-15, 8-15) of a 16-dim slice. Values (A of O^T, dims x keys, transposed): (keys 0-7, dims 0-7), (0-7, 8-15),
    // (8-15, 0-7), (8-15, 8-15) of a 16-dim slice.
    int kLane = ((lane & 7) + ((lane >> 3) & 1) * 8) * STRIDE + (lane >> 4) * 8;
    int vLane = ((lane & 7) + (lane >> 4) * 8) * STRIDE + ((lane >> 3) & 1) * 8;
    for (int k = 0; k < count; k++) {
        asm volatile("cp.async.wait_group %0;" ::"n"(STAGES - 2));
        __syncwarp();  // tile k is in place for every lane, and every lane is done with tile k - 1's stage,
        load(k + STAGES - 1);  // which this refills
        const act* ks = ring + (k % STAGES) * 2 * TILE;
        const act* vs = ks + TILE;
        // s4[0], s4[1]: key g, heads 2 tq, 2 tq + 1; s4[2], s4[3]: key g + 8.
        float s4[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) {
            unsigned f[4];
            ldmatrix(f, ks + kLane + kk * 16);
            mma(s4, f, qf[kk][0], qf[kk][1]);
        }
        int j0 = start + (warp + WARPS * k) * KT;
#pragma unroll
        for (int e = 0; e < 4; e++) s4[e] = j0 + g + (e >> 1) * 8 < end ? s4[e] * scaleLog2 : NEG_INF;
        // Each head's maximum over the tile's 16 keys (the lanes of one tq); key j0 is always valid, so it is finite.
        float mx[2] = {fmaxf(s4[0], s4[2]), fmaxf(s4[1], s4[3])};
#pragma unroll
        for (int w = 4; w < 32; w <<= 1) {
            mx[0] = fmaxf(mx[0], __shfl_xor_sync(0xffffffffu, mx[0], w));
            mx[1] = fmaxf(mx[1], __shfl_xor_sync(0xffffffffu, mx[1], w));
        }
        float c[2];
#pragma unroll
        for (int e = 0; e < 2; e++) {
            float next = fmaxf(m[e], mx[e]);
            c[e] = ex2(m[e] - next);  // 0 before the first tile
            m[e] = next;
        }
        float p[4];
#pragma unroll
        for (int e = 0; e < 4; e++) p[e] = ex2(s4[e] - m[e & 1]);
        l[0] = l[0] * c[0] + p[0] + p[2];
        l[1] = l[1] * c[1] + p[1] + p[3];
#pragma unroll
        for (int n = 0; n < D / 16; n++) {
            o[n][0] *= c[0];
            o[n][1] *= c[1];
            o[n][2] *= c[0];
            o[n][3] *= c[1];
        }
        // P^T's B fragments (keys x heads): the transposes of P's keys 0-7 and 8-15 (rows g, columns 2 tq, +1).
        unsigned b0 = transpose8x8(pack_act(p[0], p[1])), b1 = transpose8x8(pack_act(p[2], p[3]));
#pragma unroll
        for (int n = 0; n < D / 16; n++) {
            unsigned f[4];
            ldmatrix_trans(f, vs + vLane + n * 16);
            mma(o[n], f, b0, b1);
        }
    }
    asm volatile("cp.async.wait_group 0;");

    // Merge the warps' states through shared memory (the rings' space): maxima and sums [WARPS][8 heads], outputs
    // [WARPS][8 heads][D].
#pragma unroll
    for (int e = 0; e < 2; e++) {
        l[e] += __shfl_xor_sync(0xffffffffu, l[e], 4);
        l[e] += __shfl_xor_sync(0xffffffffu, l[e], 8);
        l[e] += __shfl_xor_sync(0xffffffffu, l[e], 16);
    }
    float* wm = (float*)raw;
    float* wl = wm + WARPS * 8;
    float* wo = wl + WARPS * 8;
    __syncthreads();  // every warp is done with its ring
    if (g == 0) {
        wm[warp * 8 + 2 * tq] = m[0];
        wm[warp * 8 + 2 * tq + 1] = m[1];
        wl[warp * 8 + 2 * tq] = l[0];
        wl[warp * 8 + 2 * tq + 1] = l[1];
    }
#pragma unroll
    for (int n = 0; n < D / 16; n++) {
        float* head0 = wo + (warp * 8 + 2 * tq) * D + 16 * n + g;
        head0[0] = o[n][0];
        head0[D] = o[n][1];
        head0[8] = o[n][2];
        head0[D + 8] = o[n][3];
    }
    __syncthreads();
    for (int x = threadIdx.x; x < group * (headDim + 2); x += blockDim.x) {
        int hh = x / (headDim + 2), d = x % (headDim + 2);
        float M = NEG_INF;
#pragma unroll
        for (int w = 0; w < WARPS; w++) M = fmaxf(M, wm[w * 8 + hh]);
        float total = 0.0f;
#pragma unroll
        for (int w = 0; w < WARPS; w++) {
            float mw = wm[w * 8 + hh];
            if (mw == NEG_INF) continue;
            total += ex2(mw - M) * (d == 1 ? wl[w * 8 + hh] : d >= 2 ? wo[(w * 8 + hh) * D + d - 2] : 0.0f);
        }
        partial[(((i64)row * heads + h0 + hh) * splits + s) * (headDim + 2) + d]
            = d == 0 ? M * 0.6931471805599453f : total;
    }
}

// Padded head size, and blocks per multiprocessor to fit in registers (shared memory allows 4, 2, 1 on the H100).
#define SPLIT(D, BLOCKS)                                                                                            \
    extern "C" __global__ void __launch_bounds__(128, BLOCKS) attn_split_d##D(                                    \
        const act* q, const act* kNew, const act* vNew, const act* kCache, const act* vCache, float* partial,  \
        int capacity, int newTokens, int past, int heads, int kvHeads, int headDim, int window, float scale,        \
        const int* pastDevice, int group) {                                                                         \
        grid_dependency_sync();                                                                                     \
        split_attention<D>(q, kNew, vNew, kCache, vCache, partial, capacity, newTokens, past, heads, kvHeads,       \
                           headDim, window, scale, pastDevice, group);                                             \
    }
SPLIT(16, 4) SPLIT(32, 4) SPLIT(64, 4) SPLIT(128, 2) SPLIT(256, 1)

// Grid (heads, batch * newTokens), 256 threads: warp w merges splits w, w + 8, ... of one head, eight splits at a
// time with all their loads issued together (indices clamped, so that no branch separates them; lanes over the
// head's elements), then the 8 warps' states merge through shared memory:
// out = sum_s acc_s exp(m_s - M) / sum_s l_s exp(m_s - M). D is the head size rounded up as for split_attention.
template <int D>
__device__ __forceinline__ void combine(const float* partial, act* out, int heads, int headDim, int splits) {
    constexpr int WARPS = 8, BATCH = 8, PER_LANE = D < 32 ? 1 : D / 32;
    __shared__ float wm[WARPS], wl[WARPS], wo[WARPS][32 * PER_LANE];
    int h = blockIdx.x, row = blockIdx.y, width = headDim + 2;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const float* base = partial + ((i64)row * heads + h) * splits * width;
    float M = NEG_INF, L = 0.0f, o[PER_LANE];
#pragma unroll
    for (int e = 0; e < PER_LANE; e++) o[e] = 0.0f;
    for (int s0 = warp; s0 < splits; s0 += WARPS * BATCH) {
        float ms[BATCH], ls[BATCH], a[BATCH][PER_LANE];
#pragma unroll
        for (int u = 0; u < BATCH; u++) {
            int s = s0 + u * WARPS;
            const float* p = base + (i64)min(s, splits - 1) * width;
            ms[u] = p[0];
            ls[u] = p[1];
#pragma unroll
            for (int e = 0; e < PER_LANE; e++) a[u][e] = p[2 + min(lane + 32 * e, headDim - 1)];
        }
        float next = M;
#pragma unroll
        for (int u = 0; u < BATCH; u++) {
            ms[u] = s0 + u * WARPS < splits ? ms[u] : NEG_INF;  // a clamped repeat of the last split counts once
            next = fmaxf(next, ms[u]);
        }
        bool none = next == NEG_INF;  // every split so far empty (selects, not a branch that would split the loads)
        float c = none ? 1.0f : expf(M - next);  // 0 while M is -inf
        L *= c;
#pragma unroll
        for (int e = 0; e < PER_LANE; e++) o[e] *= c;
#pragma unroll
        for (int u = 0; u < BATCH; u++) {
            float w = none ? 0.0f : expf(ms[u] - next);  // 0 for an empty split
            L += ls[u] * w;
#pragma unroll
            for (int e = 0; e < PER_LANE; e++) o[e] += a[u][e] * w;
        }
        M = next;
    }
    if (lane == 0) {
        wm[warp] = M;
        wl[warp] = L;
    }
#pragma unroll
    for (int e = 0; e < PER_LANE; e++) wo[warp][lane + 32 * e] = o[e];
    __syncthreads();
    act* dst = out + (i64)row * heads * headDim + (i64)h * headDim;
    for (int d = threadIdx.x; d < headDim; d += blockDim.x) {
        float mx = NEG_INF;
#pragma unroll
        for (int w = 0; w < WARPS; w++) mx = fmaxf(mx, wm[w]);
        float num = 0.0f, den = 0.0f;
#pragma unroll
        for (int w = 0; w < WARPS; w++) {
            if (wm[w] == NEG_INF) continue;
            float f = expf(wm[w] - mx);
            num += wo[w][d] * f;
            den += wl[w] * f;
        }
        st(dst, d, num / den);
    }
}

#define COMBINE(D)                                                                                                  \
    extern "C" __global__ void __launch_bounds__(256) attn_combine_d##D(const float* partial, act* out, int heads, \
                                                                         int headDim, int splits) {               \
        grid_dependency_sync();                                                                                     \
        combine<D>(partial, out, heads, headDim, splits);                                                           \
    }
COMBINE(16) COMBINE(32) COMBINE(64) COMBINE(128) COMBINE(256)

// Stores new keys and values t in first..<newTokens at ring slot (past + t) % capacity (past read from pastDevice
// when that is not null).
extern "C" __global__ void append_kv(const act* kNew, const act* vNew, act* kCache, act* vCache, int capacity,
                                     int newTokens, int past, int first, int width, i64 total,
                                     const int* pastDevice) {
    grid_dependency_sync();
    if (pastDevice) past = *pastDevice;
    int kept = newTokens - first;
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (i64)gridDim.x * blockDim.x) {
        int c = i % width;
        i64 rest = i / width;
        int t = first + rest % kept;
        i64 b = rest / kept;
        i64 slot = (b * capacity + (past + t) % capacity) * width + c;
        i64 src = (b * newTokens + t) * width + c;
        kCache[slot] = kNew[src];
        vCache[slot] = vNew[src];
    }
}
