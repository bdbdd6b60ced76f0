// Causal attention against the ring-buffer KV cache (Attention.causal's contract) with split-KV: each block
// computes one query's softmax states (for the query heads of one KV head) over one split of its keys, and
// attn_combine merges the splits. Used for
// decode steps and for head sizes the tensor-core prefill kernel does not take. Also: appending to the cache.
#include "common.cuh"


// The key (or value) row of position j: new rows for j >= past, else the ring slot j % capacity.
__device__ __forceinline__ const act* kv_row(const act* fresh, const act* cached, int j, int b, int newTokens,
                                              int past, int capacity, int stride, int offset) {
    if (j >= past) return fresh + ((i64)b * newTokens + (j - past)) * stride + offset;
    return cached + ((i64)b * capacity + j % capacity) * stride + offset;
}

// Grid (splits, heads / group, batch * newTokens); 128 threads. Each block serves `group` query heads that share
// one KV head (GQA), so every key and value row is read once for all of them. partial: [rows, heads, splits,
// headDim + 2] holding (max, sum, unnormalised output) per head and split (an empty split leaves max -inf). window 0
// means none. pastDevice, when not null, overrides past and the split size (recorded decode steps replay with a
// fixed grid). Each warp takes 32 keys at a time, one per lane (so that 32 key rows are read at once), then
// accumulates their values eight rows at a time (eight loads in flight) with lanes over pairs of the head
// dimension. Instantiated for head sizes up to 64 PAIRS and for up to GROUP query heads per block.
template <int PAIRS, int GROUP>
__device__ __forceinline__ void split_attention(const act* q, const act* kNew, const act* vNew, const act* kCache,
                                                const act* vCache, float* partial, int capacity, int newTokens,
                                                int past, int heads, int kvHeads, int headDim, int window,
                                                float scale, int splitSize, const int* pastDevice, int group) {
    int s = blockIdx.x, row = blockIdx.z, splits = gridDim.x;
    int h0 = blockIdx.y * group;  // first query head of this block
    if (pastDevice) {  // a recorded decode step: the cached length comes from device memory, the split size with it
        past = *pastDevice;
        int maxKeys = window > 0 ? min(past + newTokens, window) : past + newTokens;
        splitSize = (maxKeys + splits - 1) / splits;
    }
    int b = row / newTokens, t = row % newTokens, i = past + t;
    int lo = window > 0 ? max(0, i - window + 1) : 0;
    int start = lo + s * splitSize, end = min(i + 1, start + splitSize);
    int kvOffset = (h0 / (heads / kvHeads)) * headDim, kvStride = kvHeads * headDim;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    bool vectorKeys = ((kvStride | kvOffset | headDim) & 7) == 0;  // 16-byte key rows
    bool pairedValues = ((kvStride | kvOffset | headDim) & 1) == 0;

    __shared__ __align__(16) float qs[GROUP][64 * PAIRS];
    for (int e = threadIdx.x; e < group * headDim; e += blockDim.x) {
        int g = e / headDim, d = e % headDim;
        qs[g][d] = ld(q + (i64)row * heads * headDim + (i64)(h0 + g) * headDim, d) * scale;
    }
    __syncthreads();
    float2 acc[GROUP][PAIRS];
    float m[GROUP], l[GROUP];
#pragma unroll
    for (int g = 0; g < GROUP; g++) {
        m[g] = NEG_INF;
        l[g] = 0.0f;
#pragma unroll
        for (int e = 0; e < PAIRS; e++) acc[g][e] = make_float2(0.0f, 0.0f);
    }
    for (int j0 = start + warp * 32; j0 < end; j0 += warps * 32) {
        int j = j0 + lane;
        float score[GROUP];
#pragma unroll
        for (int g = 0; g < GROUP; g++) score[g] = 0.0f;
        if (j < end) {
            const act* kp = kv_row(kNew, kCache, j, b, newTokens, past, capacity, kvStride, kvOffset);
            if (vectorKeys) {
#pragma unroll
                for (int d0 = 0; d0 < 64 * PAIRS; d0 += 64) {  // 128-byte segments, eight loads in flight
                    uint4 raw[8];
#pragma unroll
                    for (int u = 0; u < 8; u++) {
                        raw[u] = d0 + 8 * u < headDim ? *(const uint4*)(kp + d0 + 8 * u) : make_uint4(0, 0, 0, 0);
                    }
#pragma unroll
                    for (int u = 0; u < 8; u++) {
                        int d = d0 + 8 * u;
                        if (d >= headDim) continue;
                        float kf[8];
                        const act2* k2 = (const act2*)&raw[u];
#pragma unroll
                        for (int e = 0; e < 4; e++) {
                            float2 f = act2_to_float2(k2[e]);
                            kf[2 * e] = f.x;
                            kf[2 * e + 1] = f.y;
                        }
#pragma unroll
                        for (int g = 0; g < GROUP; g++) {  // q by 16-byte broadcasts from shared memory
                            float4 qa = *(const float4*)&qs[g][d], qb = *(const float4*)&qs[g][d + 4];
                            score[g] += qa.x * kf[0] + qa.y * kf[1] + qa.z * kf[2] + qa.w * kf[3]
                                + qb.x * kf[4] + qb.y * kf[5] + qb.z * kf[6] + qb.w * kf[7];
                        }
                    }
                }
            } else {
                for (int d = 0; d < headDim; d++) {
                    float kf = ld(kp, d);
#pragma unroll
                    for (int g = 0; g < GROUP; g++) score[g] += qs[g][d] * kf;
                }
            }
        }
        float p[GROUP];
#pragma unroll
        for (int g = 0; g < GROUP; g++) {
            float sc = j < end && g < group ? score[g] : NEG_INF;
            float mNew = fmaxf(m[g], warp_max(sc));
            float correction = mNew == NEG_INF ? 1.0f : expf(m[g] - mNew);
            p[g] = sc == NEG_INF ? 0.0f : expf(sc - mNew);
            l[g] = l[g] * correction + warp_sum(p[g]);
#pragma unroll
            for (int e = 0; e < PAIRS; e++) {
                acc[g][e].x *= correction;
                acc[g][e].y *= correction;
            }
            m[g] = mNew;
        }
        int count = min(32, end - j0);
        for (int jb = 0; jb < count; jb += 8) {
            float2 v[8][PAIRS];
#pragma unroll
            for (int u = 0; u < 8; u++) {
                const act* vp = kv_row(vNew, vCache, j0 + jb + u, b, newTokens, past, capacity, kvStride, kvOffset);
#pragma unroll
                for (int e = 0; e < PAIRS; e++) {
                    int d = 2 * (lane + 32 * e);
                    if (jb + u >= count || d >= headDim) {
                        v[u][e] = make_float2(0.0f, 0.0f);
                    } else if (pairedValues) {
                        v[u][e] = act2_to_float2(*(const act2*)(vp + d));
                    } else {
                        v[u][e] = make_float2(ld(vp, d), d + 1 < headDim ? ld(vp, d + 1) : 0.0f);
                    }
                }
            }
#pragma unroll
            for (int u = 0; u < 8; u++) {
#pragma unroll
                for (int g = 0; g < GROUP; g++) {
                    float pj = __shfl_sync(0xffffffffu, p[g], (jb + u) & 31);
#pragma unroll
                    for (int e = 0; e < PAIRS; e++) {
                        acc[g][e].x += pj * v[u][e].x;
                        acc[g][e].y += pj * v[u][e].y;
                    }
                }
            }
        }
    }
    // Merge the warps' states, one query head at a time, through shared memory.
    __shared__ float wm[4], wl[4], wacc[4][64 * PAIRS];
    for (int g = 0; g < group; g++) {
        __syncthreads();
        float mg = m[0], lg = l[0];
        float2 ag[PAIRS];
#pragma unroll
        for (int e = 0; e < PAIRS; e++) ag[e] = acc[0][e];
#pragma unroll
        for (int gg = 1; gg < GROUP; gg++) {
            if (gg == g) {
                mg = m[gg];
                lg = l[gg];
#pragma unroll
                for (int e = 0; e < PAIRS; e++) ag[e] = acc[gg][e];
            }
        }
        if (lane == 0) { wm[warp] = mg; wl[warp] = lg; }
#pragma unroll
        for (int e = 0; e < PAIRS; e++) {
            int d = 2 * (lane + 32 * e);
            if (d < headDim) wacc[warp][d] = ag[e].x;
            if (d + 1 < headDim) wacc[warp][d + 1] = ag[e].y;
        }
        __syncthreads();
        float* dst = partial + (((i64)row * heads + h0 + g) * splits + s) * (headDim + 2);
        float M = NEG_INF;
        for (int w = 0; w < warps; w++) M = fmaxf(M, wm[w]);
        for (int d = threadIdx.x; d < headDim + 2; d += blockDim.x) {
            float total = 0.0f;
            for (int w = 0; w < warps; w++) {
                if (wm[w] == NEG_INF) continue;
                float f = expf(wm[w] - M);
                total += (d == 1 ? wl[w] : d >= 2 ? wacc[w][d - 2] : 0.0f) * f;
            }
            dst[d] = d == 0 ? M : total;
        }
    }
}

#define SPLIT(PAIRS, GROUP)                                                                                         \
    extern "C" __global__ void attn_split_p##PAIRS##_g##GROUP(                                                      \
        const act* q, const act* kNew, const act* vNew, const act* kCache, const act* vCache, float* partial,  \
        int capacity, int newTokens, int past, int heads, int kvHeads, int headDim, int window, float scale,        \
        int splitSize, const int* pastDevice, int group) {                                                          \
        grid_dependency_sync();                                                                                       \
        split_attention<PAIRS, GROUP>(q, kNew, vNew, kCache, vCache, partial, capacity, newTokens, past, heads,     \
                                      kvHeads, headDim, window, scale, splitSize, pastDevice, group);               \
    }
SPLIT(1, 1) SPLIT(1, 2) SPLIT(1, 4) SPLIT(1, 8)
SPLIT(2, 1) SPLIT(2, 2) SPLIT(2, 4) SPLIT(2, 8)
SPLIT(4, 1) SPLIT(4, 2) SPLIT(4, 4) SPLIT(4, 8)

// Grid (heads, batch * newTokens), 256 threads, dynamic shared memory of `splits` floats:
// out = sum_s acc_s exp(m_s - M) / sum_s l_s exp(m_s - M), the splits shared among the threads.
extern "C" __global__ void attn_combine(const float* partial, act* out, int heads, int headDim, int splits) {
    grid_dependency_sync();
    extern __shared__ float weights[];
    __shared__ float sums[256];
    int h = blockIdx.x, row = blockIdx.y, width = headDim + 2;
    const float* base = partial + ((i64)row * heads + h) * splits * width;
    float mx = NEG_INF;
    for (int s = threadIdx.x; s < splits; s += blockDim.x) mx = fmaxf(mx, base[(i64)s * width]);
    float M = block_max(mx);
    float lsum = 0.0f;
    for (int s = threadIdx.x; s < splits; s += blockDim.x) {
        float m = base[(i64)s * width];
        float w = m == NEG_INF ? 0.0f : expf(m - M);
        weights[s] = w;
        lsum += base[(i64)s * width + 1] * w;
    }
    float L = block_sum(lsum);  // synchronises, so every weight is visible below
    act* dst = out + (i64)row * heads * headDim + (i64)h * headDim;
    if (headDim * 2 > (int)blockDim.x) {
        for (int d = threadIdx.x; d < headDim; d += blockDim.x) {
            float total = 0.0f;
#pragma unroll 4
            for (int s = 0; s < splits; s++) total += base[(i64)s * width + 2 + d] * weights[s];
            st(dst, d, total / L);
        }
        return;
    }
    int parts = blockDim.x / headDim, part = threadIdx.x / headDim, d = threadIdx.x % headDim;
    float total = 0.0f;
    if (part < parts) {
#pragma unroll 4
        for (int s = part; s < splits; s += parts) total += base[(i64)s * width + 2 + d] * weights[s];
        sums[threadIdx.x] = total;
    }
    __syncthreads();
    if (part == 0) {
        for (int p = 1; p < parts; p++) total += sums[p * headDim + d];
        st(dst, d, total / L);
    }
}

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
