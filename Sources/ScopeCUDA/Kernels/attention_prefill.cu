// Causal prefill attention on tensor cores (FlashAttention-2 style, mma.sync m16n8k16 bf16 with fp32
// accumulation). A block of 4 warps takes 4 x 16 G queries of one head, each warp 16 G of them (G row groups of
// 16, so that every key and value fragment read from shared memory feeds G MMAs). Key/value tiles of 64 rows go
// through a 3-stage cp.async ring in shared memory; key fragments come from ldmatrix, value fragments from
// ldmatrix.trans; scores stay in registers with an online softmax, so no L x L matrix exists. Dynamic shared
// memory: 3 stages x (K, V) x 64 x (D + 8) bf16. Keys come from the new rows or the ring-buffer cache
// (Attention.causal's contract); GQA by head / (heads / kvHeads); window 0 means none.
// Grid (heads, query tiles, batch): blockIdx.y counts query tiles from the last, so the longest tiles of every head
// start first and the short ones fill the tail.
#include "common.cuh"

template <int D, int G>
__device__ void prefill(const act* q, const act* kNew, const act* vNew, const act* kCache, const act* vCache,
                        act* out, int capacity, int newTokens, int past, int heads, int kvHeads, int window,
                        float scale) {
    constexpr int ROWS = 16 * G, QT = 4 * ROWS, KT = 64, STRIDE = D + 8, STAGES = 3, TILE = KT * STRIDE;
    extern __shared__ __align__(16) unsigned char raw[];
    act* tiles = (act*)raw;  // [STAGES][K, V][KT][STRIDE]
    int h = blockIdx.x, tile = gridDim.y - 1 - blockIdx.y, b = blockIdx.z;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3;
    i64 qStride = (i64)heads * D, kvStride = (i64)kvHeads * D;
    int kvOffset = (h / (heads / kvHeads)) * D;
    int t0 = tile * QT;
    int first = past + t0, last = past + min(newTokens, t0 + QT) - 1;
    // This warp's rows are t0 + warp * ROWS + 16 i + g (+ 8) for i < G; wFirst .. wLast their positions (rows past
    // the new tokens are computed but never stored).
    int wFirst = first + warp * ROWS, wLast = min(wFirst + ROWS - 1, last);

    unsigned qf[G][D / 16][4];
    const act* qb = q + (i64)b * newTokens * qStride + (i64)h * D;
#pragma unroll
    for (int i = 0; i < G; i++) {
        int r0 = t0 + warp * ROWS + 16 * i + g, r1 = r0 + 8;
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) {
            int col = kk * 16 + tq * 2;
            qf[i][kk][0] = r0 < newTokens ? pair(qb + r0 * qStride + col) : 0u;
            qf[i][kk][1] = r1 < newTokens ? pair(qb + r1 * qStride + col) : 0u;
            qf[i][kk][2] = r0 < newTokens ? pair(qb + r0 * qStride + col + 8) : 0u;
            qf[i][kk][3] = r1 < newTokens ? pair(qb + r1 * qStride + col + 8) : 0u;
        }
    }
    // Per row group i, rows g (index 0) and g + 8 (index 1): accumulators, running maxima (log2 domain of scaled
    // scores) and this thread's share of the row sums (its quad adds them up at the end).
    float o[G][D / 8][4], m[G][2], l[G][2];
#pragma unroll
    for (int i = 0; i < G; i++) {
#pragma unroll
        for (int n = 0; n < D / 8; n++) o[i][n][0] = o[i][n][1] = o[i][n][2] = o[i][n][3] = 0.0f;
        m[i][0] = m[i][1] = NEG_INF;
        l[i][0] = l[i][1] = 0.0f;
    }
    const float scaleLog2 = scale * 1.4426950408889634f;

    int lo = window > 0 ? max(0, first - window + 1) : 0;
    int count = (last - lo) / KT + 1;
    // Issues the copies of key tile t (keys lo + t KT ..., zeros past `last`) into its stage, if t < count; commits a
    // group either way so that group t is always tile t's.
    constexpr int STEP = 128 / (D / 8);  // rows per pass of the block's 128 threads
    PrefillTiles<D, KT, 128, STEP * STRIDE> kv(kNew, vNew, kCache, vCache, b, newTokens, past, last, capacity,
                                               kvStride, kvOffset, lo);
    const int at = kv.row * STRIDE + kv.column;
    auto load = [&](int t) {
        if (t < count) {
            act* ks = tiles + (t % STAGES) * 2 * TILE + at;
            kv.load(lo + t * KT, ks, ks + TILE);
        }
        asm volatile("cp.async.commit_group;");
    };
#pragma unroll
    for (int t = 0; t < STAGES - 1; t++) load(t);

    // Lane addresses for ldmatrix. Keys: matrices (n-tile n, dims 0-7), (n, 8-15), (n + 1, 0-7), (n + 1, 8-15) of a
    // 16-dim slice give b0, b1 of n-tiles n and n + 1. Values (transposed): rows (l % 8) + 8 ((l / 8) % 2) of 16 keys
    // at dims 8 (l / 16) of a pair of n-tiles give b0, b1 of n-tile n and b0, b1 of n-tile n + 1.
    int kLane = ((lane & 7) + (lane >> 4) * 8) * STRIDE + ((lane >> 3) & 1) * 8;
    int vLane = ((lane & 7) + ((lane >> 3) & 1) * 8) * STRIDE + (lane >> 4) * 8;
    for (int t = 0; t < count; t++) {
        asm volatile("cp.async.wait_group %0;" ::"n"(STAGES - 2));
        __syncthreads();  // tile t is in place, and every warp is done with tile t - 1, whose stage load(t + 2) takes
        load(t + STAGES - 1);
        int j0 = lo + t * KT;
        // Skips tiles that lie wholly after this warp's rows or before their windows.
        if (j0 > wLast || (window > 0 && j0 + KT - 1 <= wFirst - window)) continue;
        const act* ks = tiles + (t % STAGES) * 2 * TILE;
        const act* vs = ks + TILE;

        float s[G][KT / 8][4];
#pragma unroll
        for (int i = 0; i < G; i++)
#pragma unroll
            for (int n = 0; n < KT / 8; n++) s[i][n][0] = s[i][n][1] = s[i][n][2] = s[i][n][3] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) {
#pragma unroll
            for (int n = 0; n < KT / 8; n += 2) {
                unsigned f[4];
                ldmatrix(f, ks + kLane + n * 8 * STRIDE + kk * 16);
#pragma unroll
                for (int i = 0; i < G; i++) {
                    mma(s[i][n], qf[i][kk], f[0], f[1]);
                    mma(s[i][n + 1], qf[i][kk], f[2], f[3]);
                }
            }
        }
        // Masks only where the tile crosses this warp's diagonal, a window's edge or the last key.
        bool interior = j0 + KT - 1 <= wFirst && j0 + KT - 1 <= last && (window <= 0 || j0 > wLast - window);
        if (!interior) {
#pragma unroll
            for (int i = 0; i < G; i++) {
                int pos0 = wFirst + 16 * i + g;
#pragma unroll
                for (int n = 0; n < KT / 8; n++) {
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        int j = j0 + n * 8 + tq * 2 + (e & 1), pos = pos0 + (e >> 1) * 8;
                        if (!(j <= pos && j <= last && (window <= 0 || j > pos - window))) s[i][n][e] = NEG_INF;
                    }
                }
            }
        }
        // Row maxima of the tile over the quad, in the log2 domain.
        float mx[G][2];
        bool grows = false;
#pragma unroll
        for (int i = 0; i < G; i++) {
#pragma unroll
            for (int r = 0; r < 2; r++) {
                float v = NEG_INF;
#pragma unroll
                for (int n = 0; n < KT / 8; n++) v = fmaxf(v, fmaxf(s[i][n][2 * r], s[i][n][2 * r + 1]));
                v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
                v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
                mx[i][r] = v * scaleLog2;
                grows |= mx[i][r] > m[i][r] + RESCALE_SLACK;
            }
        }
        if (__any_sync(0xffffffffu, grows)) {
#pragma unroll
            for (int i = 0; i < G; i++) {
#pragma unroll
                for (int r = 0; r < 2; r++) {
                    float next = fmaxf(m[i][r], mx[i][r]);
                    float c = ex2(m[i][r] - (next == NEG_INF ? 0.0f : next));  // 0 while the row saw no key
                    m[i][r] = next;
                    l[i][r] *= c;
#pragma unroll
                    for (int n = 0; n < D / 8; n++) {
                        o[i][n][2 * r] *= c;
                        o[i][n][2 * r + 1] *= c;
                    }
                }
            }
        }
        // p = 2^(s scaleLog2 - m): one FMA and one ex2 each; then P (bf16, as the A operand) times V.
#pragma unroll
        for (int i = 0; i < G; i++) {
            float base0 = m[i][0] == NEG_INF ? 0.0f : m[i][0], base1 = m[i][1] == NEG_INF ? 0.0f : m[i][1];
#pragma unroll
            for (int n = 0; n < KT / 8; n++) {
                s[i][n][0] = ex2(fmaf(s[i][n][0], scaleLog2, -base0));
                s[i][n][1] = ex2(fmaf(s[i][n][1], scaleLog2, -base0));
                s[i][n][2] = ex2(fmaf(s[i][n][2], scaleLog2, -base1));
                s[i][n][3] = ex2(fmaf(s[i][n][3], scaleLog2, -base1));
                l[i][0] += s[i][n][0] + s[i][n][1];
                l[i][1] += s[i][n][2] + s[i][n][3];
            }
        }
#pragma unroll
        for (int kk = 0; kk < KT / 16; kk++) {
            unsigned a[G][4];
#pragma unroll
            for (int i = 0; i < G; i++) {
                a[i][0] = pack_act(s[i][2 * kk][0], s[i][2 * kk][1]);
                a[i][1] = pack_act(s[i][2 * kk][2], s[i][2 * kk][3]);
                a[i][2] = pack_act(s[i][2 * kk + 1][0], s[i][2 * kk + 1][1]);
                a[i][3] = pack_act(s[i][2 * kk + 1][2], s[i][2 * kk + 1][3]);
            }
#pragma unroll
            for (int n = 0; n < D / 8; n += 2) {
                unsigned f[4];
                ldmatrix_trans(f, vs + vLane + kk * 16 * STRIDE + n * 8);
#pragma unroll
                for (int i = 0; i < G; i++) {
                    mma(o[i][n], a[i], f[0], f[1]);
                    mma(o[i][n + 1], a[i], f[2], f[3]);
                }
            }
        }
    }
    act* ob = out + (i64)b * newTokens * qStride + (i64)h * D;
#pragma unroll
    for (int i = 0; i < G; i++)
        store_attention_rows<D>(ob, qStride, t0 + warp * ROWS + 16 * i + g, newTokens, &o[i][0][0], l[i], tq);
}

// Head size, row groups per warp (2 up to head size 64; 1 at 128, where two groups' accumulators would not fit in
// registers). The host's query tile (CUDABackend+Attention.swift) is 64 x G.
#define PREFILL(D, G)                                                                                               \
    extern "C" __global__ void __launch_bounds__(128) attn_prefill_d##D(                                          \
        const act* q, const act* kNew, const act* vNew, const act* kCache, const act* vCache, act* out,       \
        int capacity, int newTokens, int past, int heads, int kvHeads, int window, float scale) {                   \
        grid_dependency_sync();                                                                                       \
        prefill<D, G>(q, kNew, vNew, kCache, vCache, out, capacity, newTokens, past, heads, kvHeads, window, scale); \
    }

PREFILL(16, 2)
PREFILL(32, 2)
PREFILL(64, 2)
PREFILL(128, 1)
