// Causal prefill attention at head size 64 on Hopper's warpgroup MMAs (wgmma, sm_90a; the host compiles this module
// for sm_90a on sm_90 devices and uses it only there: elsewhere the kernel traps). Attention.causal's contract, as
// attn_prefill_d64 (attention_prefill.cu): keys from the new rows or the ring-buffer cache, GQA, optional window.
//
// A block is two warpgroups (256 threads), each taking 64 of the block's 128 queries of one head, their Q fragments
// in registers; both read every K and V tile the block loads. For a tile of 64 keys, S = Q K^T is four m64n64k16
// MMAs per warpgroup and O += P V four more, P taken from registers (the S accumulators' layout is the A operand's)
// and K, V from shared memory (V transposed by the instruction). The MMAs run asynchronously: each iteration issues
// S of tile t and P V of tile t - 1 together, waits for S only, runs the online softmax of tile t while P V of tile
// t - 1 still runs, then rescales O. Tiles are stored with the 128-byte swizzle the MMA descriptors name (row r's
// 16-byte chunk c at chunk c ^ (r % 8) of its 128-byte row) through a 4-stage cp.async ring (tile t + 2 loads while
// t computes and t - 1's V is read): 64 KiB, so that two blocks (four warpgroups) share a multiprocessor.
// Grid (heads, query tiles, batch), the longest tiles first.
#include "common.cuh"

#define WG_KT 64    // keys per tile
#define WG_D 64     // head size

// Element offset of (row, column) in a swizzled tile of 64-element (128-byte) rows; column a multiple of 8.
__device__ __forceinline__ int swizzled(int row, int column) { return row * 64 + (((column >> 3) ^ (row & 7)) << 3); }

// A shared-memory matrix descriptor: start address, both byte offsets 1024 (eight 128-byte rows: the step between
// core-matrix groups along the strided dimension; the leading one is unused at these sizes) and the 128-byte swizzle.
__device__ __forceinline__ unsigned long long descriptor(const void* p) {
    unsigned long long address = smem_address(p);
    return ((address & 0x3FFFF) >> 4) | (1024ull >> 4) << 16 | (1024ull >> 4) << 32 | 1ull << 62;
}

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
__device__ __forceinline__ void wg_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wg_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wg_wait() { asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory"); }

// Keeps the compiler from moving the 32 accumulators across an asynchronous MMA that writes them.
__device__ __forceinline__ void hold(float* d) {
#pragma unroll
    for (int i = 0; i < 32; i++) asm volatile("" : "+f"(d[i])::"memory");
}

// d (64 x 64, this thread's 32 values) += A (registers: 64 x 16) B (shared, descriptor bd: 16 x 64), B given as its
// rows (K) when TRANSPOSE_B is 0 and as its columns (V, transposed by the instruction) when 1.
template <int TRANSPOSE_B>
__device__ __forceinline__ void mma_rs(float* d, const unsigned* a, unsigned long long bd) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32." ACT_PTX "." ACT_PTX " "
        "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"
        "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31}, {%32,%33,%34,%35}, %36, p, 1, 1, %37;\n}"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
          "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
          "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
          "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(bd), "n"(TRANSPOSE_B));
}

// STAGES of K and V in shared memory: tile t + STAGES - 2 loads while tile t computes and tile t - 1's V is read.
// GROUPS warpgroups per block (64 queries each) share every K and V tile.
template <int STAGES, int GROUPS>
__device__ void prefill_wgmma(const act* q, const act* kNew, const act* vNew, const act* kCache, const act* vCache,
                              act* out, int capacity, int newTokens, int past, int heads, int kvHeads, int window,
                              float scale) {
    extern __shared__ __align__(1024) unsigned char raw[];
    // 1024-byte aligned stages of K [64][64] and V [64][64].
    act* stages = (act*)(((unsigned long long)raw + 1023) & ~1023ull);
    constexpr int TILE = WG_KT * WG_D;
    int h = blockIdx.x, tile = gridDim.y - 1 - blockIdx.y, b = blockIdx.z;
    constexpr int QT = 64 * GROUPS, THREADS = 128 * GROUPS;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3;
    i64 qStride = (i64)heads * WG_D, kvStride = (i64)kvHeads * WG_D;
    int kvOffset = (h / (heads / kvHeads)) * WG_D;
    int t0 = tile * QT;
    int first = past + t0, last = past + min(newTokens, t0 + QT) - 1;
    // This thread's rows: row0 = t0 + 16 warp + g and row0 + 8 (positions past + row); warps 4 w .. 4 w + 3 are
    // warpgroup w.
    int row0 = t0 + 16 * warp + g, row1 = row0 + 8, pos0 = past + row0;
    int wFirst = past + t0 + 16 * warp, wLast = min(wFirst + 15, last);

    // Q as A fragments: per 16 dimensions kk, (row0, 2tq..), (row1, 2tq..), (row0, 8 + 2tq..), (row1, 8 + 2tq..).
    unsigned qf[WG_D / 16][4];
    const act* qb = q + (i64)b * newTokens * qStride + (i64)h * WG_D;
#pragma unroll
    for (int kk = 0; kk < WG_D / 16; kk++) {
        int col = kk * 16 + tq * 2;
        qf[kk][0] = row0 < newTokens ? pair(qb + row0 * qStride + col) : 0u;
        qf[kk][1] = row1 < newTokens ? pair(qb + row1 * qStride + col) : 0u;
        qf[kk][2] = row0 < newTokens ? pair(qb + row0 * qStride + col + 8) : 0u;
        qf[kk][3] = row1 < newTokens ? pair(qb + row1 * qStride + col + 8) : 0u;
    }
    float o[32], m[2] = {NEG_INF, NEG_INF}, l[2] = {0.0f, 0.0f};
#pragma unroll
    for (int i = 0; i < 32; i++) o[i] = 0.0f;
    const float scaleLog2 = scale * 1.4426950408889634f;

    int lo = window > 0 ? max(0, first - window + 1) : 0;
    int count = (last - lo) / WG_KT + 1;
    // Issues key/value tile t (keys lo + 64 t ..., zeros past `last`) into its stage and commits a group either way,
    // so that group t is tile t's. Row r's 16-byte chunk c goes to chunk c ^ (r % 8): this thread's rows are
    // tiles.row + 32 u, all with the same r % 8, so its places are `at` + 2048 u.
    constexpr int ROWS_PER_PASS = THREADS / (WG_D / 8);
    PrefillTiles<WG_D, WG_KT, THREADS, 64 * ROWS_PER_PASS> tiles(kNew, vNew, kCache, vCache, b, newTokens, past,
                                                                 last, capacity, kvStride, kvOffset, lo);
    const int at = swizzled(tiles.row, tiles.column);
    auto load = [&](int t) {
        if (t < count) {
            act* ks = stages + (t % STAGES) * 2 * TILE + at;
            tiles.load(lo + t * WG_KT, ks, ks + TILE);
        }
        asm volatile("cp.async.commit_group;");
    };
    // Descriptors advance with the address in their low field (address / 16): a stage is 2 TILE x 2 bytes, K's
    // 16-dimension step 32 bytes, V's 16-key step 2048 bytes.
    const unsigned long long firstDescriptor = descriptor(stages);
    constexpr unsigned long long STAGE_STEP = 2 * TILE * 2 / 16, V_OFFSET = TILE * 2 / 16;
    constexpr int AHEAD = STAGES - 2;  // tiles loading while one computes
#pragma unroll
    for (int t = 0; t < AHEAD; t++) load(t);
    float s[32];                       // S of the tile being computed
    unsigned previous[WG_KT / 16][4];  // P of the tile before it, the A operand of its P V
    // Issues S = Q K^T of tile t and P V of tile t - 1 (two groups).
    auto issue = [&](int t) {
        unsigned long long kd = firstDescriptor + (t % STAGES) * STAGE_STEP;
        unsigned long long vd = firstDescriptor + ((t + STAGES - 1) % STAGES) * STAGE_STEP + V_OFFSET;
#pragma unroll
        for (int i = 0; i < 32; i++) s[i] = 0.0f;
        wg_fence();
#pragma unroll
        for (int kk = 0; kk < WG_D / 16; kk++) mma_rs<0>(s, qf[kk], kd + 2 * kk);
        wg_commit();
        if (t > 0) {
#pragma unroll
            for (int kk = 0; kk < WG_KT / 16; kk++) mma_rs<1>(o, previous[kk], vd + 128 * kk);
        }
        wg_commit();
        hold(o);
    };
    // The online softmax of tile t's S (complete), then, once P V of tile t - 1 is done, P of tile t into
    // `previous` and O rescaled to the new maxima.
    auto finish = [&](int t) {
        int j0 = lo + t * WG_KT;
        // s[4 n + e]: row0 (e < 2) or row1, key j0 + 8 n + 2 tq + (e & 1). Masks where the tile crosses this
        // warp's diagonal, a window's edge or the last key.
        bool interior = j0 + WG_KT - 1 <= wFirst && j0 + WG_KT - 1 <= last && (window <= 0 || j0 > wLast - window);
        if (!interior) {
#pragma unroll
            for (int n = 0; n < WG_KT / 8; n++) {
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    int j = j0 + n * 8 + tq * 2 + (e & 1), pos = pos0 + (e >> 1) * 8;
                    if (!(j <= pos && j <= last && (window <= 0 || j > pos - window))) s[4 * n + e] = NEG_INF;
                }
            }
        }
        float correction[2] = {1.0f, 1.0f};
        bool grows = false;
        float mx[2];
#pragma unroll
        for (int r = 0; r < 2; r++) {
            float part[2] = {NEG_INF, NEG_INF};  // two chains, half the dependent latency
#pragma unroll
            for (int n = 0; n < WG_KT / 8; n++)
                part[n & 1] = fmaxf(part[n & 1], fmaxf(s[4 * n + 2 * r], s[4 * n + 2 * r + 1]));
            float v = fmaxf(part[0], part[1]);
            v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
            v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
            mx[r] = v * scaleLog2;
            grows |= mx[r] > m[r] + RESCALE_SLACK;
        }
        bool rescale = __any_sync(0xffffffffu, grows);
        if (rescale) {
#pragma unroll
            for (int r = 0; r < 2; r++) {
                float next = fmaxf(m[r], mx[r]);
                correction[r] = ex2(m[r] - (next == NEG_INF ? 0.0f : next));  // 0 while the row saw no key
                m[r] = next;
                l[r] *= correction[r];
            }
        }
        float base0 = m[0] == NEG_INF ? 0.0f : m[0], base1 = m[1] == NEG_INF ? 0.0f : m[1];
        float sums[2][2] = {{0.0f, 0.0f}, {0.0f, 0.0f}};
#pragma unroll
        for (int n = 0; n < WG_KT / 8; n++) {
            s[4 * n] = ex2(fmaf(s[4 * n], scaleLog2, -base0));
            s[4 * n + 1] = ex2(fmaf(s[4 * n + 1], scaleLog2, -base0));
            s[4 * n + 2] = ex2(fmaf(s[4 * n + 2], scaleLog2, -base1));
            s[4 * n + 3] = ex2(fmaf(s[4 * n + 3], scaleLog2, -base1));
            sums[0][n & 1] += s[4 * n] + s[4 * n + 1];
            sums[1][n & 1] += s[4 * n + 2] + s[4 * n + 3];
        }
        l[0] += sums[0][0] + sums[0][1];
        l[1] += sums[1][0] + sums[1][1];
        wg_wait<0>();  // P V of tile t - 1: O and `previous` are free again
        hold(o);
#pragma unroll
        for (int kk = 0; kk < WG_KT / 16; kk++) {
            previous[kk][0] = pack_act(s[8 * kk], s[8 * kk + 1]);
            previous[kk][1] = pack_act(s[8 * kk + 2], s[8 * kk + 3]);
            previous[kk][2] = pack_act(s[8 * kk + 4], s[8 * kk + 5]);
            previous[kk][3] = pack_act(s[8 * kk + 6], s[8 * kk + 7]);
        }
        if (rescale) {
#pragma unroll
            for (int n = 0; n < WG_D / 8; n++) {
                o[4 * n] *= correction[0];
                o[4 * n + 1] *= correction[0];
                o[4 * n + 2] *= correction[1];
                o[4 * n + 3] *= correction[1];
            }
        }
    };
    for (int t = 0; t < count; t++) {
        asm volatile("cp.async.wait_group %0;" ::"n"(AHEAD - 1));  // tile t's group (later ones may still run)
        asm volatile("fence.proxy.async.shared::cta;" ::: "memory");  // the copies, visible to the MMAs
        __syncthreads();  // tile t in place everywhere; P V of tile t - 2 done, so its stage takes tile t + AHEAD
        load(t + AHEAD);
        issue(t);
        wg_wait<1>();  // S of tile t; P V of tile t - 1 may still run
        finish(t);
    }
    // P V of the last tile.
    unsigned long long lastV = firstDescriptor + ((count - 1) % STAGES) * STAGE_STEP + V_OFFSET;
    wg_fence();
#pragma unroll
    for (int kk = 0; kk < WG_KT / 16; kk++) mma_rs<1>(o, previous[kk], lastV + 128 * kk);
    wg_commit();
    hold(o);
    wg_wait<0>();
    store_attention_rows<WG_D>(out + (i64)b * newTokens * qStride + (i64)h * WG_D, qStride, row0, newTokens, o, l,
                               tq);
}
#endif

// Dynamic shared memory: 1 KiB of alignment slack and 4 stages of K and V (64 KiB); two warpgroups (128 queries)
// per block, two blocks per multiprocessor (128 registers).
extern "C" __global__ void __launch_bounds__(256, 2) attn_prefill_wgmma_d64(
    const act* q, const act* kNew, const act* vNew, const act* kCache, const act* vCache, act* out, int capacity,
    int newTokens, int past, int heads, int kvHeads, int window, float scale) {
    grid_dependency_sync();
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    prefill_wgmma<4, 2>(q, kNew, vNew, kCache, vCache, out, capacity, newTokens, past, heads, kvHeads, window, scale);
#else
    __trap();
#endif
}
