// Linear layers of decode steps (a few rows): out[r, n] = sum_k x'[r, k] w[n, k] (+ bias[n]) (+ out[r, n] when
// accumulate), with weights of the activation type read once in 16-byte loads and fp32 accumulation; memory bound
// on the weights. k a multiple of 8 with 16-byte aligned rows; rows <= 8 (kernels _r1 for one row, _r8 for up to
// eight); 256 threads per block. The n columns may come from up to three weights that share the input (Segments:
// q, k and v, or gate and up), and the epilogue may also run a causal conv step over some columns (ConvEpilogue).
//
// Work split: block b owns the columns [b per, (b + 1) per), per = ceil(n / gridDim) (the host sizes the grid at
// about two blocks per multiprocessor, so that one wave covers any n and no block holds more than one column above
// the average). Within a block, groups of `tpc` threads (threads per column: 256, or fewer for short rows) share a
// column: thread t of a group takes the eight-element chunks t, t + tpc, ... of k (V of them; the kernels _vV take
// k <= 8 V tpc). Each group walks its columns in batches of SLOTS / V, issuing the next batch's 16-byte loads
// before it reduces the current one, so that every thread keeps SLOTS to 2 SLOTS loads in flight. A batch's
// partial dot products are summed over each warp all at once (warp_sum_each) and stored as that warp's share of
// each column in shared memory (no atomics: every warp has its own slots); after the block's only closing sync, the
// epilogue adds up each column's shares in a fixed order.
//
// x' is x (gemv_*) or x transformed on the fly (gemv_norm_*: an RMSNorm, Mamba-2's gated RMSNorm, or a gated MLP's
// activation), so that a decode step needs no separate launch for it: every block recomputes the transform of the
// rows (a few KB from L2) and keeps x' in fp32 shared memory (for a norm of one group, x' unscaled: the epilogue
// applies the row's scale, NormPrologue::scale); or x as it is with only a norm's scale left to apply
// (gemv_presummed_*: Mamba-2's out projection after ssd_step_gated). The first batch of weights is loaded before
// grid_dependency_sync (weights do not change during a step), so that in a recorded step the loads overlap the end
// of the kernel before.
#include "common.cuh"

#define MAX_GROUPS 8
#define THREADS 256
#define WARPS (THREADS / 32)

// Eight consecutive inputs of row r starting at column c, as fp32: from global memory or fp32 shared memory.
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

// Up to three weights that share the input (a decode step's q, k and v projections, or gate and up), as one
// column space: columns [0, end0) are w0's rows, [end0, end1) w1's, [end1, n) w2's; each with its own bias (or
// null) and output of its own width.
struct Segments {
    const act *w0, *w1, *w2;
    const float *bias0, *bias1, *bias2;
    act *out0, *out1, *out2;
    int end0, end1;

    __device__ __forceinline__ int of(int col) const { return col < end0 ? 0 : col < end1 ? 1 : 2; }
    __device__ __forceinline__ int start(int s) const { return s == 0 ? 0 : s == 1 ? end0 : end1; }
    __device__ __forceinline__ const act* weight(int s) const { return s == 0 ? w0 : s == 1 ? w1 : w2; }
    __device__ __forceinline__ const float* bias(int s) const { return s == 0 ? bias0 : s == 1 ? bias1 : bias2; }
    __device__ __forceinline__ act* out(int s) const { return s == 0 ? out0 : s == 1 ? out1 : out2; }

    // Where column col of row r goes: its segment, its column there and its offset in that segment's output.
    struct Entry {
        int s, column;
        i64 offset;
    };
    __device__ __forceinline__ Entry entry(int r, int col, int n) const {
        int s = of(col), begin = start(s), width = (s == 0 ? end0 : s == 1 ? end1 : n) - begin;
        return {s, col - begin, (i64)r * width + col - begin};
    }

    // What the epilogue adds to an entry's sum: its bias, and the output's old value when accumulating.
    __device__ __forceinline__ float addend(Entry e, int accumulate) const {
        const float* b = bias(e.s);
        return (b ? b[e.column] : 0.0f) + (accumulate ? ld(out(e.s), e.offset) : 0.0f);
    }
};

// The causal conv step folded into the epilogue (Mamba's in_proj of a decode step): output columns [first, first +
// channels) of segment 0 are also the newest inputs of a depthwise conv of `kernel` taps (weight [channels, kernel]
// fp32, bias or null, state [rows, kernel - 1, channels] rolled in place), whose (silu'd) outputs go to out
// [rows, channels]. The thread that writes a column owns its channel, so no other thread touches its state.
// channels 0: none.
//
// Where each thread writes at most one column, the conv has at most HELD_TAPS taps and the kernel has registers to
// spare (V <= 2: k up to 4096 at 256 threads a column), the thread loads its
// channel's weights, bias and state into a ConvHeld before grid_dependency_sync (the state was last written by this
// kernel's launch of the step before, the weights never change), so that the epilogue, at the kernel's very end,
// waits on no load: otherwise its state reads, serialised behind its own state writes, add round trips to DRAM there.
#define HELD_TAPS 4
struct ConvHeld {
    float w[HELD_TAPS], old[HELD_TAPS - 1], bias;
    bool ready;
};

struct ConvEpilogue {
    const float* weight;
    const float* bias;
    act* state;
    act* out;
    int first, channels, kernel, silu;

    // Loads column col's weights, bias and state for row r into held, if col is a conv column and the taps fit.
    __device__ __forceinline__ void hold(int r, int col, ConvHeld& held) const {
        int c = col - first;
        held.ready = c >= 0 && c < channels && kernel <= HELD_TAPS;
        if (!held.ready) return;
        int history = kernel - 1;
        const act* s = state + (i64)r * history * channels + c;
        const float* w = weight + (i64)c * kernel;
#pragma unroll
        for (int i = 0; i < HELD_TAPS; i++) held.w[i] = i < kernel ? w[i] : 0.0f;
#pragma unroll
        for (int i = 0; i < HELD_TAPS - 1; i++) held.old[i] = i < history ? ld(s, (i64)i * channels) : 0.0f;
        held.bias = bias ? bias[c] : 0.0f;
    }

    // The step for column col of row r, whose projection output (as stored) is `stored`.
    __device__ __forceinline__ void operator()(int r, int col, float stored) const {
        int c = col - first;
        if (c < 0 || c >= channels) return;
        int history = kernel - 1;
        act* s = state + (i64)r * history * channels + c;
        const float* w = weight + (i64)c * kernel;
        float acc = (bias ? bias[c] : 0.0f) + w[history] * stored;
        for (int i = 0; i < history; i++) {
            float old = ld(s, (i64)i * channels);
            acc += w[i] * old;
            if (i > 0) st(s, (i64)(i - 1) * channels, old);
        }
        if (history > 0) st(s, (i64)(history - 1) * channels, stored);
        st(out, (i64)r * channels + c, silu ? fast_silu(acc) : acc);
    }

    // The same from what hold() loaded (held.ready).
    __device__ __forceinline__ void operator()(int r, int col, float stored, const ConvHeld& held) const {
        int c = col - first, history = kernel - 1;
        act* s = state + (i64)r * history * channels + c;
        float acc = held.bias;
#pragma unroll
        for (int i = 0; i < HELD_TAPS; i++) acc += held.w[i] * (i < history ? held.old[i] : i == history ? stored : 0.0f);
#pragma unroll
        for (int i = 1; i < HELD_TAPS - 1; i++)
            if (i < history) st(s, (i64)(i - 1) * channels, held.old[i]);
        if (history > 0) st(s, (i64)(history - 1) * channels, stored);
        st(out, (i64)r * channels + c, silu ? fast_silu(acc) : acc);
    }
};

// An RMSNorm's scale from its sum of squares in WARPS partial sums (added in a fixed order): 1 / sqrt(sum / k + eps).
__device__ __forceinline__ float inverse_rms(const float* warpSums, int k, float eps) {
    float total = 0.0f;
#pragma unroll
    for (int w = 0; w < WARPS; w++) total += warpSums[w];
    return 1.0f / sqrtf(total / k + eps);
}

// The input as it is: nothing to stage, nothing to scale.
struct NoPrologue {
    __device__ __forceinline__ void operator()() const {}
    __device__ __forceinline__ void finish() const {}
    __device__ __forceinline__ float scale(int) const { return 1.0f; }
};

// One row already weighted (and gated) for an RMSNorm whose sums of squares were taken before, in `parts` (<=
// 4 THREADS) partial sums (ssd.cu's ssd_step_gated): the input is read as it is (GlobalRows), and the row's scale 1 /
// sqrt(sum / k + eps) applied in the epilogue. The parts are loaded after the wait and summed only after the weights'
// loop, so that no load waits before the first batch.
struct PresummedNorm {
    const float* squares;
    int parts, k;
    float eps;
    float* warpSums;  // shared, [WARPS]
    float held[4];

    __device__ __forceinline__ void operator()() {
#pragma unroll
        for (int u = 0; u < 4; u++) {
            int i = threadIdx.x + u * THREADS;
            held[u] = i < parts ? squares[i] : 0.0f;
        }
    }
    __device__ __forceinline__ void finish() {
        float total = warp_sum((held[0] + held[1]) + (held[2] + held[3]));
        if ((threadIdx.x & 31) == 0) warpSums[threadIdx.x >> 5] = total;
    }
    __device__ __forceinline__ float scale(int) const { return inverse_rms(warpSums, k, eps); }
};

// Loads in flight per thread and batch: eight 16-byte loads for one row; four for up to eight rows (whose
// accumulators take the registers).
template <int ROWS>
struct Slots {
    static constexpr int value = ROWS == 1 ? 8 : 4;
};

// Sums N values (N a power of two <= 32) over the warp at once: each halving step exchanges half of the values
// with the lane `offset` away (N/2 shuffles instead of N full reductions), then the last value is summed over the
// remaining lanes. Returns in lane L the total of value (L >> (5 - log2 N)) & (N - 1).
template <int N>
__device__ __forceinline__ float warp_sum_each(float (&a)[N], int lane) {
#pragma unroll
    for (int half = N / 2, offset = 16; half >= 1; half /= 2, offset /= 2) {
        bool upper = lane & offset;  // this lane keeps the upper half
#pragma unroll
        for (int i = 0; i < half; i++) {
            float keep = upper ? a[half + i] : a[i], give = upper ? a[i] : a[half + i];
            a[i] = keep + __shfl_xor_sync(0xffffffffu, give, offset);
        }
    }
    float v = a[0];
#pragma unroll
    for (int offset = 16 / N; offset >= 1; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

template <int N>
struct Log2 {
    static constexpr int value = N <= 1 ? 0 : 1 + Log2<N / 2>::value;
};
template <>
struct Log2<1> {
    static constexpr int value = 0;
};

// Dynamic shared memory: the warps' shares of the block's column sums (WARPS x per x ROWS floats, rounded up to 16
// bytes), then what the rows need (SharedRows: rows x k floats, and the prologue's own). The prologue runs after
// the wait, and each column's sum is multiplied by prologue.scale(row) in the epilogue.
template <int ROWS, int V, typename Rows, typename Prologue>
__device__ __forceinline__ void gemv_block(Rows xs, Prologue prologue, float* sums, Segments seg, ConvEpilogue conv,
                                           int rows, int n, int k, int accumulate, int tpc) {
    constexpr int COLS = Slots<ROWS>::value / V > 0 ? Slots<ROWS>::value / V : 1;  // columns per batch and group
    int per = (n + gridDim.x - 1) / gridDim.x;
    int first = blockIdx.x * per, owned = max(0, min(n, first + per) - first);
    int groups = THREADS / tpc, group = threadIdx.x / tpc, t = threadIdx.x % tpc;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warpsPerGroup = tpc / 32;
    // Group g takes the block's columns g, g + groups, ... in batches of COLS.
    int batches = (((owned + groups - 1) / groups) + COLS - 1) / COLS;
    // Where all the block's columns lie in one segment (every block of a single weight, most blocks of several),
    // a column's row is one multiply-add from the block's first row.
    int firstSegment = seg.of(first);
    bool single = owned > 0 && seg.of(first + owned - 1) == firstSegment;
    const act* blockRows = seg.weight(firstSegment) + (i64)(first - seg.start(firstSegment)) * k + t * 8;
    auto issue = [&](int b, uint4* wv) {
#pragma unroll
        for (int j = 0; j < COLS; j++) {
            int local = (b * COLS + j) * groups + group;
            const act* row;
            if (single) {
                row = blockRows + (i64)local * k;
            } else {
                int col = first + local, s = seg.of(col);
                row = seg.weight(s) + (i64)(col - seg.start(s)) * k + t * 8;
            }
#pragma unroll
            for (int v = 0; v < V; v++) {
                int c = (t + v * tpc) * 8;
                wv[j * V + v] = local < owned && c < k ? __ldg((const uint4*)(row + v * tpc * 8))
                                                      : make_uint4(0, 0, 0, 0);
            }
        }
    };
    // One batch: the dot products of this thread's chunks, summed over the warp, stored as the warp's share of
    // each column (sums[warp][local][row]; the epilogue adds up the shares of the column's group's warps).
    auto consume = [&](int b, const uint4* wv) {
        float acc[ROWS][COLS];
#pragma unroll
        for (int r = 0; r < ROWS; r++) {
#pragma unroll
            for (int j = 0; j < COLS; j++) acc[r][j] = 0.0f;
        }
#pragma unroll
        for (int v = 0; v < V; v++) {
            int c = (t + v * tpc) * 8;
            if (c >= k) continue;
#pragma unroll
            for (int r = 0; r < ROWS; r++) {
                if (r >= rows) continue;
                float x[8];
                xs.load(r, c, x);
#pragma unroll
                for (int j = 0; j < COLS; j++) {
                    const act2* wp = (const act2*)&wv[j * V + v];
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        float2 f = act2_to_float2(wp[e]);
                        acc[r][j] = fmaf(x[2 * e], f.x, acc[r][j]);
                        acc[r][j] = fmaf(x[2 * e + 1], f.y, acc[r][j]);
                    }
                }
            }
        }
        constexpr int SHIFT = 5 - Log2<COLS>::value;
        int j = (lane >> SHIFT) & (COLS - 1), local = (b * COLS + j) * groups + group;
#pragma unroll
        for (int r = 0; r < ROWS; r++) {
            if (r >= rows) continue;
            float s = warp_sum_each<COLS>(acc[r], lane);
            if ((lane & ((1 << SHIFT) - 1)) == 0 && local < owned) sums[(warp * per + local) * ROWS + r] = s;
        }
    };
    uint4 even[COLS * V], odd[COLS * V];
    issue(0, even);
    // The epilogue's entries are i = threadIdx.x + THREADS j < owned ROWS (column first + i / ROWS, row i % ROWS).
    ConvHeld held;
    held.ready = false;
    if (V <= 2 && conv.channels > 0 && owned * ROWS <= THREADS && (int)threadIdx.x < owned * ROWS) {
        int r = threadIdx.x % ROWS, col = first + threadIdx.x / ROWS;
        if (r < rows && seg.of(col) == 0) conv.hold(r, col, held);
    }
    grid_dependency_sync();
    // Where each thread has at most one epilogue entry (and registers to spare, V <= 2), what the epilogue adds to
    // its sum (the bias, and the output's old value when accumulating, final now that the kernel before has
    // completed) is loaded here, so that the load overlaps the weights' stream rather than waiting at the kernel's
    // end.
    bool early = V <= 2 && owned * ROWS <= THREADS;
    float addend = 0.0f;
    if (early && (int)threadIdx.x < owned * ROWS) {
        int r = threadIdx.x % ROWS, col = first + threadIdx.x / ROWS;
        if (r < rows) addend = seg.addend(seg.entry(r, col, n), accumulate);
    }
    prologue();
    __syncthreads();  // the prologue's rows are staged
    // Two batches per turn, so that the buffers alternate without copies; the next batch's loads go out before
    // the current one is consumed. (Issuing two batches ahead, the second before the prologue, measured slower.)
    for (int b = 0; b < batches; b += 2) {
        if (b + 1 < batches) issue(b + 1, odd);
        consume(b, even);
        if (b + 1 >= batches) break;
        if (b + 2 < batches) issue(b + 2, even);
        consume(b + 1, odd);
    }
    prologue.finish();
    __syncthreads();
    for (int i = threadIdx.x; i < owned * ROWS; i += THREADS) {
        int local = i / ROWS, r = i % ROWS, col = first + local;
        if (r >= rows) continue;
        Segments::Entry e = seg.entry(r, col, n);
        float sum = 0.0f;
        for (int w = (local % groups) * warpsPerGroup, end = w + warpsPerGroup; w < end; w++)
            sum += sums[(w * per + local) * ROWS + r];
        float value = sum * prologue.scale(r) + (early ? addend : seg.addend(e, accumulate));
        st(seg.out(e.s), e.offset, value);
        if (conv.channels > 0 && e.s == 0) {
            float stored = act_to_float(float_to_act(value));
            if (V <= 2 && held.ready)
                conv(r, col, stored, held);
            else
                conv(r, col, stored);
        }
    }
}

#define GEMV(ROWS, V)                                                                                           \
    extern "C" __global__ void __launch_bounds__(THREADS, 2) gemv_r##ROWS##_v##V(                                \
        const act* x, Segments seg, ConvEpilogue conv, int rows, int n, int k, int accumulate, int tpc) {          \
        extern __shared__ float sums[];                                                                          \
        gemv_block<ROWS, V>(GlobalRows{x, k}, NoPrologue{}, sums, seg, conv, rows, n, k, accumulate, tpc);        \
    }
GEMV(1, 1) GEMV(1, 2) GEMV(1, 4) GEMV(1, 8)
GEMV(8, 1) GEMV(8, 2) GEMV(8, 4) GEMV(8, 8)

// Normalises the rows into shared memory: mode 1: RMSNorm(x) * normWeight (normWeight may be null); mode 2:
// Mamba-2's gated RMSNorm over `groups` groups of k / groups features (see gated_rmsnorm): normBeforeGate 0:
// rmsnorm(x * silu(gate)) * normWeight; 1: rmsnorm(x) * normWeight * silu(gate); mode 3: no norm, a gated MLP's
// activation, activate(kind, gate) * x, the activation code passed in normBeforeGate. Each thread loads its (at
// most CHUNKS) eight-element chunks of a row at once with 16-byte loads, so k <= 8 * CHUNKS * blockDim.
//
// With one group (every RMSNorm, and Mamba-2's gated norm of one group) the norm's scale, a single number per row,
// is deferred: the prologue stages the unscaled x * normWeight (* silu(gate)) and each warp's sum of squares, and
// the epilogue multiplies each column's sum by the row's 1 / rms (scale()), so that the prologue needs no block
// reduction and a row costs one round of loads (x, gate and normWeight together) and no sync of its own. Several
// groups keep the per-group reduction in the prologue. Every block runs the prologue over the whole row, so its
// silu is the fast one (fast_silu).
template <int CHUNKS>
struct NormPrologue {
    const act* x;
    const act* gate;
    const float* normWeight;
    float eps;
    int mode, groups, normBeforeGate, rows, k;
    float* partials;  // [ROWS][WARPS] sums of squares (deferred)
    float* staged;    // [rows][k]

    __device__ __forceinline__ bool deferred() const { return mode != 3 && groups == 1; }
    __device__ __forceinline__ void finish() const {}

    // What the epilogue multiplies row r's column sums by.
    __device__ __forceinline__ float scale(int r) const {
        return deferred() ? inverse_rms(partials + r * WARPS, k, eps) : 1.0f;
    }

    __device__ __forceinline__ void operator()() const {
        __shared__ float inverse[MAX_GROUPS];
        int size = k / groups, step = 8 * blockDim.x;
        if (mode == 3) {  // act(gate) * x, no reduction
            for (int i = threadIdx.x * 8; i < rows * k; i += step) {
                float v[8], g[8];
                ld8(x + i, v);
                ld8(gate + i, g);
#pragma unroll
                for (int e = 0; e < 8; e++) staged[i + e] = activate(normBeforeGate, g[e]) * v[e];
            }
            __syncthreads();
            return;
        }
        bool gated = mode == 2, gateFirst = gated && !normBeforeGate;
        for (int r = 0; r < rows; r++) {
            const act* xr = x + (i64)r * k;
            const act* gr = gated ? gate + (i64)r * k : nullptr;
            float v[CHUNKS][8], g[CHUNKS][8];
#pragma unroll
            for (int u = 0; u < CHUNKS; u++) {
                int c = threadIdx.x * 8 + u * step;
                if (c < k) {
                    ld8(xr + c, v[u]);
                    if (gated) ld8(gr + c, g[u]);
                }
            }
            if (deferred()) {
                float ss = 0.0f;
#pragma unroll
                for (int u = 0; u < CHUNKS; u++) {
                    int c = threadIdx.x * 8 + u * step;
                    if (c >= k) continue;
                    float w[8], o[8];
                    if (normWeight) {
                        const float4* wp = (const float4*)(normWeight + c);
                        float4 a = wp[0], b = wp[1];
                        w[0] = a.x; w[1] = a.y; w[2] = a.z; w[3] = a.w;
                        w[4] = b.x; w[5] = b.y; w[6] = b.z; w[7] = b.w;
                    }
#pragma unroll
                    for (int e = 0; e < 8; e++) {
                        float gv = gated ? fast_silu(g[u][e]) : 1.0f;
                        float h = gateFirst ? v[u][e] * gv : v[u][e];
                        ss = fmaf(h, h, ss);
                        o[e] = v[u][e] * gv * (normWeight ? w[e] : 1.0f);
                    }
                    float4* out = (float4*)(staged + r * k + c);
                    out[0] = make_float4(o[0], o[1], o[2], o[3]);
                    out[1] = make_float4(o[4], o[5], o[6], o[7]);
                }
                ss = warp_sum(ss);
                if ((threadIdx.x & 31) == 0) partials[r * WARPS + (threadIdx.x >> 5)] = ss;
                continue;  // the block's sync after the prologue publishes staged and partials
            }
            float ss[MAX_GROUPS];
#pragma unroll
            for (int q = 0; q < MAX_GROUPS; q++) ss[q] = 0.0f;
#pragma unroll
            for (int u = 0; u < CHUNKS; u++) {
                int c = threadIdx.x * 8 + u * step;
                if (c >= k) continue;
                int group = c / size;
#pragma unroll
                for (int e = 0; e < 8; e++) {
                    if (gated) g[u][e] = fast_silu(g[u][e]);
                    float h = gateFirst ? v[u][e] * g[u][e] : v[u][e];
#pragma unroll
                    for (int q = 0; q < MAX_GROUPS; q++) ss[q] += q == group ? h * h : 0.0f;
                }
            }
#pragma unroll
            for (int q = 0; q < MAX_GROUPS; q++) {  // unrolled, so that ss stays in registers
                if (q >= groups) break;
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

// Dynamic shared memory: the column sums, the norm's partial sums of squares (ROWS x WARPS floats), then rows * k
// floats. groups <= 8, (k / groups) % 8 == 0, k <= 8 V tpc, normWeight 16-byte aligned; the norm's chunks per thread
// equal V (the whole block normalises each row).
#define GEMV_NORM(ROWS, V)                                                                                      \
    extern "C" __global__ void __launch_bounds__(THREADS, 2) gemv_norm_r##ROWS##_v##V(                           \
        const act* x, Segments seg, ConvEpilogue conv, int rows, int n, int k, int accumulate, int tpc, int mode, \
        const float* normWeight, float eps, const act* gate, int groups, int normBeforeGate) {                   \
        extern __shared__ float sums[];                                                                          \
        float* partials = sums + (WARPS * ((n + gridDim.x - 1) / gridDim.x) * ROWS + 3) / 4 * 4;                 \
        NormPrologue<V> prologue{x, gate, normWeight, eps, mode, groups, normBeforeGate, rows, k, partials,         \
                                 partials + ROWS * WARPS};                                                       \
        gemv_block<ROWS, V>(SharedRows{partials + ROWS * WARPS, k}, prologue, sums, seg, conv, rows, n, k,         \
                            accumulate, tpc);                                                                    \
    }
GEMV_NORM(1, 1) GEMV_NORM(1, 2) GEMV_NORM(1, 4)
GEMV_NORM(8, 1) GEMV_NORM(8, 2) GEMV_NORM(8, 4)

// A one-row gemv whose input is weighted for an RMSNorm taken before (PresummedNorm: Mamba-2's out projection after
// ssd_step_gated). Dynamic shared memory: the column sums, then WARPS floats.
#define GEMV_PRESUMMED(V)                                                                                       \
    extern "C" __global__ void __launch_bounds__(THREADS, 2) gemv_presummed_r1_v##V(                             \
        const act* x, Segments seg, ConvEpilogue conv, int rows, int n, int k, int accumulate, int tpc,           \
        const float* squares, int parts, float eps) {                                                            \
        extern __shared__ float sums[];                                                                          \
        float* warpSums = sums + (WARPS * ((n + gridDim.x - 1) / gridDim.x) + 3) / 4 * 4;                        \
        gemv_block<1, V>(GlobalRows{x, k}, PresummedNorm{squares, parts, k, eps, warpSums}, sums, seg, conv, rows, \
                         n, k, accumulate, tpc);                                                                 \
    }
GEMV_PRESUMMED(1) GEMV_PRESUMMED(2) GEMV_PRESUMMED(4)
