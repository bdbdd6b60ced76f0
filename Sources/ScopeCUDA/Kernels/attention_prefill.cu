// Causal prefill attention on tensor cores (FlashAttention-2 style, mma.sync m16n8k16 bf16 with fp32
// accumulation): a block of 4 warps takes 64 queries of one head, each warp 16 of them; key/value tiles of 64 rows
// go through shared memory, double-buffered with cp.async so that the next tile loads while this one computes;
// value fragments come from ldmatrix.trans; scores stay in registers with an online softmax, so no L x L matrix
// exists. Dynamic shared memory: 4 tiles of 64 x (D + 8) bf16. Keys come
// from the new rows or the ring-buffer cache (Attention.causal's contract); GQA by head / (heads / kvHeads);
// window 0 means none. Grid (query tiles, heads, batch).
#include "common.cuh"

__device__ __forceinline__ unsigned pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *(unsigned*)&v;
}

__device__ __forceinline__ unsigned pair(const bf16* p) { return *(const unsigned*)p; }

__device__ __forceinline__ unsigned smem_address(const void* p) { return (unsigned)__cvta_generic_to_shared(p); }

__device__ __forceinline__ void copy16(void* dst, const void* src) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(smem_address(dst)), "l"(src));
}

// Four 8x8 b16 matrices, transposed: rows of matrix i at the addresses lanes 8i..8i+7 give.
__device__ __forceinline__ void ldmatrix_trans(unsigned* r, const bf16* row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_address(row)));
}

// 2^x by the special-function unit (2^-inf = 0).
__device__ __forceinline__ float ex2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

// c += a (16x16, row) * b (16x8, col).
__device__ __forceinline__ void mma(float* c, const unsigned* a, unsigned b0, unsigned b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

template <int D>
__device__ void prefill(const bf16* q, const bf16* kNew, const bf16* vNew, const bf16* kCache, const bf16* vCache,
                        bf16* out, int capacity, int newTokens, int past, int heads, int kvHeads, int window,
                        float scale) {
    constexpr int QT = 64, KT = 64, STRIDE = D + 8;
    extern __shared__ __align__(16) unsigned char raw[];
    bf16* tiles = (bf16*)raw;  // [2 buffers][K, V][KT][STRIDE]
    int tile = gridDim.x - 1 - blockIdx.x;  // the longest tiles first
    int h = blockIdx.y, b = blockIdx.z;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3;
    i64 qStride = (i64)heads * D, kvStride = (i64)kvHeads * D;
    int kvOffset = (h / (heads / kvHeads)) * D;
    int t0 = tile * QT;
    int first = past + t0, last = past + min(newTokens, t0 + QT) - 1;
    int r0 = t0 + warp * 16 + g, r1 = r0 + 8;
    int pos0 = past + r0, pos1 = past + r1;

    unsigned qf[D / 16][4];
    const bf16* qb = q + (i64)b * newTokens * qStride + (i64)h * D;
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
        int col = kk * 16 + tq * 2;
        qf[kk][0] = r0 < newTokens ? pair(qb + r0 * qStride + col) : 0u;
        qf[kk][1] = r1 < newTokens ? pair(qb + r1 * qStride + col) : 0u;
        qf[kk][2] = r0 < newTokens ? pair(qb + r0 * qStride + col + 8) : 0u;
        qf[kk][3] = r1 < newTokens ? pair(qb + r1 * qStride + col + 8) : 0u;
    }
    float o[D / 8][4];
#pragma unroll
    for (int n = 0; n < D / 8; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    float m0 = NEG_INF, m1 = NEG_INF, l0 = 0.0f, l1 = 0.0f;
    const float scaleLog2 = scale * 1.4426950408889634f;

    // Issues the copies of the key and value rows j0 .. j0 + KT - 1 into buffer `buffer` (zeros past `last`).
    auto load = [&](int buffer, int j0) {
        bf16* ks = tiles + buffer * 2 * KT * STRIDE;
        bf16* vs = ks + KT * STRIDE;
        for (int idx = threadIdx.x; idx < KT * (D / 8); idx += blockDim.x) {
            int r = idx / (D / 8), c = (idx % (D / 8)) * 8, j = j0 + r;
            if (j <= last) {
                i64 rowK = j >= past ? ((i64)b * newTokens + j - past) * kvStride : ((i64)b * capacity + j % capacity) * kvStride;
                copy16(ks + r * STRIDE + c, (j >= past ? kNew : kCache) + rowK + kvOffset + c);
                copy16(vs + r * STRIDE + c, (j >= past ? vNew : vCache) + rowK + kvOffset + c);
            } else {
                *(uint4*)(ks + r * STRIDE + c) = make_uint4(0, 0, 0, 0);
                *(uint4*)(vs + r * STRIDE + c) = make_uint4(0, 0, 0, 0);
            }
        }
        asm volatile("cp.async.commit_group;");
    };
    int lo = window > 0 ? max(0, first - window + 1) : 0, buffer = 0;
    load(0, lo);
    for (int j0 = lo; j0 <= last; j0 += KT, buffer ^= 1) {
        if (j0 + KT <= last) {
            load(buffer ^ 1, j0 + KT);
            asm volatile("cp.async.wait_group 1;");
        } else {
            asm volatile("cp.async.wait_group 0;");
        }
        __syncthreads();
        const bf16* ks = tiles + buffer * 2 * KT * STRIDE;
        const bf16* vs = ks + KT * STRIDE;

        float s[KT / 8][4];
#pragma unroll
        for (int n = 0; n < KT / 8; n++) {
            s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
            const bf16* krow = ks + (n * 8 + g) * STRIDE + tq * 2;
#pragma unroll
            for (int kk = 0; kk < D / 16; kk++) mma(s[n], qf[kk], pair(krow + kk * 16), pair(krow + kk * 16 + 8));
        }
        // Masks only where the tile crosses the diagonal, the window's edge or the last key; the running maxima
        // are kept in the log2 domain of scaled scores, so p = 2^(s * scaleLog2 - m) is one FMA and one ex2.
        bool interior = j0 + KT - 1 <= first && j0 + KT - 1 <= last && (window <= 0 || j0 > last - window);
        if (!interior) {
#pragma unroll
            for (int n = 0; n < KT / 8; n++) {
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    int j = j0 + n * 8 + tq * 2 + (e & 1);
                    int pos = e < 2 ? pos0 : pos1;
                    if (!(j <= pos && j <= last && (window <= 0 || j > pos - window))) s[n][e] = NEG_INF;
                }
            }
        }
        float mx0 = NEG_INF, mx1 = NEG_INF;
#pragma unroll
        for (int n = 0; n < KT / 8; n++) {
            mx0 = fmaxf(mx0, fmaxf(s[n][0], s[n][1]));
            mx1 = fmaxf(mx1, fmaxf(s[n][2], s[n][3]));
        }
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
        float n0 = fmaxf(m0, mx0 * scaleLog2), n1 = fmaxf(m1, mx1 * scaleLog2);
        float base0 = n0 == NEG_INF ? 0.0f : n0, base1 = n1 == NEG_INF ? 0.0f : n1;
        float c0 = ex2(m0 - base0), c1 = ex2(m1 - base1);
        float sum0 = 0.0f, sum1 = 0.0f;
#pragma unroll
        for (int n = 0; n < KT / 8; n++) {
            s[n][0] = ex2(fmaf(s[n][0], scaleLog2, -base0));
            s[n][1] = ex2(fmaf(s[n][1], scaleLog2, -base0));
            s[n][2] = ex2(fmaf(s[n][2], scaleLog2, -base1));
            s[n][3] = ex2(fmaf(s[n][3], scaleLog2, -base1));
            sum0 += s[n][0] + s[n][1];
            sum1 += s[n][2] + s[n][3];
        }
        sum0 += __shfl_xor_sync(0xffffffffu, sum0, 1);
        sum0 += __shfl_xor_sync(0xffffffffu, sum0, 2);
        sum1 += __shfl_xor_sync(0xffffffffu, sum1, 1);
        sum1 += __shfl_xor_sync(0xffffffffu, sum1, 2);
        l0 = l0 * c0 + sum0;
        l1 = l1 * c1 + sum1;
        m0 = n0;
        m1 = n1;
#pragma unroll
        for (int n = 0; n < D / 8; n++) {
            o[n][0] *= c0; o[n][1] *= c0;
            o[n][2] *= c1; o[n][3] *= c1;
        }
#pragma unroll
        for (int kk = 0; kk < KT / 16; kk++) {
            unsigned a[4] = {pack_bf16(s[2 * kk][0], s[2 * kk][1]), pack_bf16(s[2 * kk][2], s[2 * kk][3]),
                             pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                             pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3])};
            // Lane l addresses row (l % 8) + 8 ((l / 8) % 2) of the 16 keys, at dims 8 (l / 16) of each pair of
            // n-tiles: the four matrices are b0, b1 of n-tile n and b0, b1 of n-tile n + 1.
            const bf16* vrow = vs + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * STRIDE + (lane >> 4) * 8;
#pragma unroll
            for (int n = 0; n < D / 8; n += 2) {
                unsigned f[4];
                ldmatrix_trans(f, vrow + n * 8);
                mma(o[n], a, f[0], f[1]);
                mma(o[n + 1], a, f[2], f[3]);
            }
        }
        __syncthreads();  // the next iteration prefetches into this buffer
    }
    bf16* ob = out + (i64)b * newTokens * qStride + (i64)h * D;
    float inv0 = 1.0f / l0, inv1 = 1.0f / l1;
#pragma unroll
    for (int n = 0; n < D / 8; n++) {
        int col = n * 8 + tq * 2;
        if (r0 < newTokens) *(__nv_bfloat162*)(ob + r0 * qStride + col) = __floats2bfloat162_rn(o[n][0] * inv0, o[n][1] * inv0);
        if (r1 < newTokens) *(__nv_bfloat162*)(ob + r1 * qStride + col) = __floats2bfloat162_rn(o[n][2] * inv1, o[n][3] * inv1);
    }
}

#define PREFILL(D)                                                                                                  \
    extern "C" __global__ void __launch_bounds__(128) attn_prefill_d##D(                                          \
        const bf16* q, const bf16* kNew, const bf16* vNew, const bf16* kCache, const bf16* vCache, bf16* out,       \
        int capacity, int newTokens, int past, int heads, int kvHeads, int window, float scale) {                   \
        prefill<D>(q, kNew, vNew, kCache, vCache, out, capacity, newTokens, past, heads, kvHeads, window, scale);   \
    }

PREFILL(16)
PREFILL(32)
PREFILL(64)
PREFILL(128)
