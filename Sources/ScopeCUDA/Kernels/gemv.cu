// Linear layers of decode steps (a few rows): out[r, n] = sum_k x'[r, k] w[n, k] (+ bias[n]) with bf16 weights read
// once in 16-byte loads, one warp per output column, fp32 accumulation; memory bound on the weights. k a multiple
// of 8 and 16-byte aligned rows; rows <= 8 (kernels _r1 for one row, _r8 for up to eight). accumulate: out += instead
// of out =. 256 threads; at most one block per 8 columns, about two per multiprocessor.
//
// x' is x (gemv_*) or x normalised on the fly (gemv_norm_*), so that a decode step needs no separate norm
// launch: every block recomputes the rows' norms (a few KB from L2) and keeps x' in fp32 shared memory, after
// issuing its first weight loads so that the norm's latency hides behind theirs.
#include "common.cuh"

#define MAX_GROUPS 8
#define UNROLL 4
#define STRIDE (32 * 8)  // columns of k one warp covers per 16-byte load

// Eight consecutive inputs of row r starting at column c, as fp32: from bf16 global memory or fp32 shared memory.
struct GlobalRows {
    const act* x;
    int k;
    __device__ __forceinline__ void load(int r, int c, float* v) const { ld8(x + (i64)r * k + c, v); }
};

struct SharedRows {
    const float* x;
    int k;
    __device__ __forceinline__ void load(int r, int c, float* v) const {
        const float4* p = (const float4*)(x + r * k + c);
        float4 a = p[0], b = p[1];
        v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w;
        v[4] = b.x; v[5] = b.y; v[6] = b.z; v[7] = b.w;
    }
};

struct NoPrologue {
    __device__ __forceinline__ void operator()() const {}
};

// UNROLL weight loads of this lane starting at column c0 (zeros past k).
__device__ __forceinline__ void load_weights(const act* wr, int c0, int k, bool active, uint4* wv) {
#pragma unroll
    for (int u = 0; u < UNROLL; u++) {
        int c = c0 + u * STRIDE;
        wv[u] = active && c < k ? __ldg((const uint4*)(wr + c)) : make_uint4(0, 0, 0, 0);
    }
}

// Each warp streams whole weight rows, one output column after another (columns warp, warp + all warps, ...), so
// that a grid of about two blocks per multiprocessor covers any n in one wave and the prologue runs once per block.
// The weights stream double-buffered across columns: the next UNROLL loads are issued before the current ones are
// used, so about 4 KB per warp are always in flight. `prologue` runs on every thread of the block after the first
// loads are issued (it may synchronise the block); `xs` is read only after it.
template <int ROWS, typename Rows, typename Prologue>
__device__ __forceinline__ void gemv_columns(Rows xs, Prologue prologue, const act* w, const float* bias, act* out,
                                             int rows, int n, int k, int accumulate) {
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, warps = blockDim.x >> 5;
    int first = blockIdx.x * warps + warp, everyWarp = gridDim.x * warps;
    int batches = (k + STRIDE * UNROLL - 1) / (STRIDE * UNROLL);  // load batches per column
    int columns = first < n ? (n - first + everyWarp - 1) / everyWarp : 0;
    int total = columns * batches;
    // Batch `it` of this warp: column first + (it / batches) * everyWarp, columns from (it % batches) * STRIDE * UNROLL.
    auto issue = [&](int it, uint4* wv) {
        int col = first + (it / batches) * everyWarp;
        load_weights(w + (i64)col * k, lane * 8 + (it % batches) * STRIDE * UNROLL, k, it < total, wv);
    };
    uint4 wv[UNROLL];
    issue(0, wv);
    prologue();
    float acc[ROWS];
#pragma unroll
    for (int r = 0; r < ROWS; r++) acc[r] = 0.0f;
    for (int it = 0; it < total; it++) {
        uint4 next[UNROLL];
        issue(it + 1, next);
        int c0 = lane * 8 + (it % batches) * STRIDE * UNROLL;
#pragma unroll
        for (int u = 0; u < UNROLL; u++) {
            int c = c0 + u * STRIDE;
            if (c >= k) break;
            const act2* wp = (const act2*)&wv[u];
            float2 wf[4];
#pragma unroll
            for (int e = 0; e < 4; e++) wf[e] = act2_to_float2(wp[e]);
#pragma unroll
            for (int r = 0; r < ROWS; r++) {
                if (r < rows) {
                    float v[8];
                    xs.load(r, c, v);
#pragma unroll
                    for (int e = 0; e < 4; e++) acc[r] += v[2 * e] * wf[e].x + v[2 * e + 1] * wf[e].y;
                }
            }
        }
        if (it % batches == batches - 1) {  // the column is complete
            int col = first + (it / batches) * everyWarp;
#pragma unroll
            for (int r = 0; r < ROWS; r++) {
                if (r < rows) {
                    float v = warp_sum(acc[r]);
                    acc[r] = 0.0f;
                    if (lane == 0) {
                        i64 o = (i64)r * n + col;
                        st(out, o, v + (bias ? bias[col] : 0.0f) + (accumulate ? ld(out, o) : 0.0f));
                    }
                }
            }
        }
#pragma unroll
        for (int u = 0; u < UNROLL; u++) wv[u] = next[u];
    }
}

#define GEMV(ROWS)                                                                                               \
    extern "C" __global__ void gemv_r##ROWS(const act* x, const act* w, const float* bias, act* out,     \
                                                 int rows, int n, int k, int accumulate) {                       \
        gemv_columns<ROWS>(GlobalRows{x, k}, NoPrologue{}, w, bias, out, rows, n, k, accumulate);                 \
    }
GEMV(1)
GEMV(8)

// Normalises the rows into shared memory: mode 1: RMSNorm(x) * normWeight (normWeight may be null); mode 2:
// Mamba-2's gated RMSNorm over `groups` groups of k / groups features (see gated_rmsnorm): normBeforeGate 0:
// rmsnorm(x * silu(gate)) * normWeight; 1: rmsnorm(x) * normWeight * silu(gate). Each thread loads its (at most
// CHUNKS) eight-element chunks of a row at once with 16-byte loads and keeps them in registers for both passes, so
// k <= 8 * CHUNKS * blockDim (kernels _c1, _c2, _c4: fewer chunks, fewer registers).
template <int CHUNKS>
struct NormPrologue {
    const act* x;
    const act* gate;
    const float* normWeight;
    float eps;
    int mode, groups, normBeforeGate, rows, k;
    float* staged;

    __device__ __forceinline__ void operator()() const {
        __shared__ float inverse[MAX_GROUPS];
        int size = k / groups, step = 8 * blockDim.x;
        bool gated = mode == 2, gateFirst = gated && !normBeforeGate;
        for (int r = 0; r < rows; r++) {
            const act* xr = x + (i64)r * k;
            const act* gr = gated ? gate + (i64)r * k : nullptr;
            float v[CHUNKS][8], g[CHUNKS][8], ss[MAX_GROUPS];
#pragma unroll
            for (int q = 0; q < MAX_GROUPS; q++) ss[q] = 0.0f;
#pragma unroll
            for (int u = 0; u < CHUNKS; u++) {
                int c = threadIdx.x * 8 + u * step;
                if (c < k) {
                    ld8(xr + c, v[u]);
                    if (gated) ld8(gr + c, g[u]);
                }
            }
#pragma unroll
            for (int u = 0; u < CHUNKS; u++) {
                int c = threadIdx.x * 8 + u * step;
                if (c >= k) continue;
                int group = c / size;
#pragma unroll
                for (int e = 0; e < 8; e++) {
                    if (gated) g[u][e] = silu(g[u][e]);
                    float h = gateFirst ? v[u][e] * g[u][e] : v[u][e];
#pragma unroll
                    for (int q = 0; q < MAX_GROUPS; q++) ss[q] += q == group ? h * h : 0.0f;
                }
            }
            for (int q = 0; q < groups; q++) {
                float total = block_sum(ss[q]);
                if (threadIdx.x == 0) inverse[q] = 1.0f / sqrtf(total / size + eps);
            }
            __syncthreads();
#pragma unroll
            for (int u = 0; u < CHUNKS; u++) {
                int c = threadIdx.x * 8 + u * step;
                if (c >= k) continue;
                float s = inverse[c / size];
#pragma unroll
                for (int e = 0; e < 8; e++) {
                    float o = v[u][e] * s * (normWeight ? normWeight[c + e] : 1.0f);
                    staged[r * k + c + e] = gated ? o * g[u][e] : o;
                }
            }
            __syncthreads();  // `inverse` is reused by the next row; `staged` is read after the prologue
        }
    }
};

// Dynamic shared memory: rows * k floats. groups <= 8, (k / groups) % 8 == 0, k <= 8 * CHUNKS * blockDim.
#define GEMV_NORM(ROWS, CHUNKS)                                                                                  \
    extern "C" __global__ void gemv_norm_r##ROWS##_c##CHUNKS(                                               \
        const act* x, const act* w, const float* bias, act* out, int rows, int n, int k, int accumulate,     \
        int mode, const float* normWeight, float eps, const act* gate, int groups, int normBeforeGate) {        \
        extern __shared__ float staged[];                                                                        \
        NormPrologue<CHUNKS> prologue{x, gate, normWeight, eps, mode, groups, normBeforeGate, rows, k, staged};  \
        gemv_columns<ROWS>(SharedRows{staged, k}, prologue, w, bias, out, rows, n, k, accumulate);                \
    }
GEMV_NORM(1, 1) GEMV_NORM(1, 2) GEMV_NORM(1, 4)
GEMV_NORM(8, 1) GEMV_NORM(8, 2) GEMV_NORM(8, 4)
