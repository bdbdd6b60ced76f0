// Causal attention against the ring-buffer KV cache (Attention.causal's contract) with split-KV: each block
// computes one query's softmax state over one split of its keys, and attn_combine merges the splits. Used for
// decode steps and for head sizes the tensor-core prefill kernel does not take. Also: appending to the cache.
#include "common.cuh"

#define MAX_PER_LANE 8  // head size up to 256

// The key (or value) row of position j: new rows for j >= past, else the ring slot j % capacity.
__device__ __forceinline__ const bf16* kv_row(const bf16* fresh, const bf16* cached, int j, int b, int newTokens,
                                              int past, int capacity, int stride, int offset) {
    if (j >= past) return fresh + ((i64)b * newTokens + (j - past)) * stride + offset;
    return cached + ((i64)b * capacity + j % capacity) * stride + offset;
}

// Grid (splits, heads, batch * newTokens); 128 threads. partial: [rows, heads, splits, headDim + 2] holding
// (max, sum, unnormalised output) per split (an empty split leaves max -inf). window 0 means none. pastDevice, when
// not null, overrides past and the split size (recorded decode steps replay with a fixed grid). Each warp takes 32
// keys at a time, one per lane (so that 32 key rows are read at once), then accumulates their values with lanes
// over the head dimension.
extern "C" __global__ void attn_split(const bf16* q, const bf16* kNew, const bf16* vNew, const bf16* kCache,
                                      const bf16* vCache, float* partial, int capacity, int newTokens, int past,
                                      int heads, int kvHeads, int headDim, int window, float scale, int splitSize,
                                      const int* pastDevice) {
    int s = blockIdx.x, h = blockIdx.y, row = blockIdx.z, splits = gridDim.x;
    if (pastDevice) {  // a recorded decode step: the cached length comes from device memory, the split size with it
        past = *pastDevice;
        int maxKeys = window > 0 ? min(past + newTokens, window) : past + newTokens;
        splitSize = (maxKeys + splits - 1) / splits;
    }
    int b = row / newTokens, t = row % newTokens, i = past + t;
    int lo = window > 0 ? max(0, i - window + 1) : 0;
    int start = lo + s * splitSize, end = min(i + 1, start + splitSize);
    int kvOffset = (h / (heads / kvHeads)) * headDim, kvStride = kvHeads * headDim;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;

    __shared__ float qs[256];
    const bf16* qp = q + (i64)row * heads * headDim + (i64)h * headDim;
    for (int d = threadIdx.x; d < headDim; d += blockDim.x) qs[d] = ld(qp, d) * scale;
    __syncthreads();
    float acc[MAX_PER_LANE];
#pragma unroll
    for (int e = 0; e < MAX_PER_LANE; e++) acc[e] = 0.0f;
    float m = NEG_INF, l = 0.0f;
    for (int j0 = start + warp * 32; j0 < end; j0 += warps * 32) {
        int j = j0 + lane;
        float score = NEG_INF;
        if (j < end) {
            const bf16* kp = kv_row(kNew, kCache, j, b, newTokens, past, capacity, kvStride, kvOffset);
            float dot = 0.0f;
            if ((((unsigned long long)kp | (unsigned long long)(headDim * 2)) & 15) == 0) {  // 16-byte rows
                for (int d = 0; d < headDim; d += 8) {
                    uint4 raw = *(const uint4*)(kp + d);
                    const __nv_bfloat162* k2 = (const __nv_bfloat162*)&raw;
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        float2 kf = __bfloat1622float2(k2[e]);
                        dot += qs[d + 2 * e] * kf.x + qs[d + 2 * e + 1] * kf.y;
                    }
                }
            } else {
                for (int d = 0; d < headDim; d++) dot += qs[d] * ld(kp, d);
            }
            score = dot;
        }
        float mNew = fmaxf(m, warp_max(score));
        float correction = expf(m - mNew);
        float p = j < end ? expf(score - mNew) : 0.0f;
        l = l * correction + warp_sum(p);
#pragma unroll
        for (int e = 0; e < MAX_PER_LANE; e++) acc[e] *= correction;
        int count = min(32, end - j0);
#pragma unroll 8
        for (int jj = 0; jj < count; jj++) {
            float pj = __shfl_sync(0xffffffffu, p, jj);
            const bf16* vp = kv_row(vNew, vCache, j0 + jj, b, newTokens, past, capacity, kvStride, kvOffset);
#pragma unroll
            for (int e = 0; e < MAX_PER_LANE; e++) {
                int d = lane + 32 * e;
                if (d < headDim) acc[e] += pj * ld(vp, d);
            }
        }
        m = mNew;
    }
    // Merge the warps' states.
    __shared__ float wm[4], wl[4], wacc[4][256];
    if (lane == 0) { wm[warp] = m; wl[warp] = l; }
#pragma unroll
    for (int e = 0; e < MAX_PER_LANE; e++) {
        int d = lane + 32 * e;
        if (d < headDim) wacc[warp][d] = acc[e];
    }
    __syncthreads();
    float* dst = partial + (((i64)row * heads + h) * splits + s) * (headDim + 2);
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

// Grid (heads, batch * newTokens): out = sum_s acc_s exp(m_s - M) / sum_s l_s exp(m_s - M).
extern "C" __global__ void attn_combine(const float* partial, bf16* out, int heads, int headDim, int splits) {
    int h = blockIdx.x, row = blockIdx.y;
    const float* base = partial + ((i64)row * heads + h) * splits * (headDim + 2);
    float M = NEG_INF;
    for (int s = 0; s < splits; s++) M = fmaxf(M, base[s * (headDim + 2)]);
    float L = 0.0f;
    for (int s = 0; s < splits; s++) {
        float m = base[s * (headDim + 2)];
        if (m != NEG_INF) L += base[s * (headDim + 2) + 1] * expf(m - M);
    }
    bf16* dst = out + (i64)row * heads * headDim + (i64)h * headDim;
    for (int d = threadIdx.x; d < headDim; d += blockDim.x) {
        float total = 0.0f;
        for (int s = 0; s < splits; s++) {
            float m = base[s * (headDim + 2)];
            if (m != NEG_INF) total += base[s * (headDim + 2) + 2 + d] * expf(m - M);
        }
        st(dst, d, total / L);
    }
}

// Stores new keys and values t in first..<newTokens at ring slot (past + t) % capacity (past read from pastDevice
// when that is not null).
extern "C" __global__ void append_kv(const bf16* kNew, const bf16* vNew, bf16* kCache, bf16* vCache, int capacity,
                                     int newTokens, int past, int first, int width, i64 total,
                                     const int* pastDevice) {
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
