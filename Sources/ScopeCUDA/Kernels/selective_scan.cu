// Mamba-1 selective scan (SelectiveScan.scan's contract) in one pass: each exponential is computed once.
//
// A block owns 16 channels of one sequence for the whole sequence and walks it in tiles of 16 x ITEMS tokens.
// Each channel belongs to 16 lanes (half a warp); lane s owns the tile's tokens [s ITEMS, (s + 1) ITEMS). Per
// state n, each lane computes its tokens' dA = exp(step a_n) and dBu = step u B_n in registers and composes them
// into one affine map h -> p h + q (p = exp(a_n sum of its steps), q = its state from zero); a shuffle scan over
// the 16 lanes composes the maps, the lane before gives each lane its entering state, and the lane then runs its
// tokens again from registers, accumulating y += C_n h. The last lane's final state is the carry into the next
// tile (shared memory, double-buffered by tile parity). Per tile the block stages softplus(delta), u, silu(z) for
// its channels and B, C for up to 16 states as fp32 in shared memory with 16-byte global loads, laid out so that
// each lane reads its tokens as float4 without bank conflicts; outputs return through shared memory the same way.
// Per step: dA = exp(step a); h = dA h + step B u; y = C.h + D u; y *= silu(z).
#include "common.cuh"

#define CH 16    // channels per block (8 warps, two channels each)
#define SEGS 16  // lanes per channel, one segment of tokens each
#define NG 16    // states staged in shared memory at a time
#define THREADS (CH * SEGS)

#define VECTOR_CHANNELS 1  // flags: u, delta, z and out rows allow 16-byte accesses (dInner % 8 == 0, aligned)
#define VECTOR_STATES 2    //        B and C rows do (dState % 8 == 0, aligned)

__device__ __forceinline__ void prefetch_l2(const void* p) { asm volatile("prefetch.L2 [%0];" ::"l"(p)); }

// softplus with the fast exponential and logarithm (relative error ~1e-6; log1p's series below 1e-4); silu is
// common.cuh's fast_silu.
__device__ __forceinline__ float fast_softplus(float x) {
    float e = __expf(x);
    return x > 20.0f ? x : e < 1e-4f ? e * (1.0f - 0.5f * e) : __logf(1.0f + e);
}

// Shared-memory geometry of a tile: a row (one channel, or one state of B or C) holds the 16 segments of ITEMS
// tokens, `seg` words apart, so that the eight lanes of one float4 wavefront hit distinct banks.
template <int ITEMS> struct Tile {
    static constexpr int tokens = SEGS * ITEMS;
    static constexpr int seg = ITEMS >= 8 ? ITEMS + 4 : ITEMS;
    static constexpr int row = ITEMS == 1 ? 32 : SEGS * seg + 4;
    static __device__ __forceinline__ int slot(int t) { return (t / ITEMS) * seg + t % ITEMS; }
};

template <int ITEMS> __device__ __forceinline__ void load_items(const float* p, float (&v)[ITEMS]) {
    if constexpr (ITEMS % 4 == 0) {
#pragma unroll
        for (int j = 0; j < ITEMS / 4; j++) {
            float4 f = reinterpret_cast<const float4*>(p)[j];
            v[4 * j] = f.x, v[4 * j + 1] = f.y, v[4 * j + 2] = f.z, v[4 * j + 3] = f.w;
        }
    } else {
#pragma unroll
        for (int i = 0; i < ITEMS; i++) v[i] = p[i];
    }
}

// B and C of states [g NG, g NG + NG) for the tile's `len` tokens (zero beyond) into sB, sC [NG][row].
template <int ITEMS>
__device__ void stage_states(const act* B, const act* C, float* sB, float* sC, i64 r0, int len, int dState, int g,
                             int flags) {
    using T = Tile<ITEMS>;
    if (flags & VECTOR_STATES) {
        for (int i = threadIdx.x; i < T::tokens * (NG / 8); i += THREADS) {
            int t = i % T::tokens, k0 = i / T::tokens * 8, n0 = g * NG + k0;
            float vb[8] = {}, vc[8] = {};
            if (t < len && n0 < dState) {
                i64 at = (r0 + t) * dState + n0;
                unpack8(*reinterpret_cast<const uint4*>(B + at), vb);
                unpack8(*reinterpret_cast<const uint4*>(C + at), vc);
            }
#pragma unroll
            for (int k = 0; k < 8; k++) {
                sB[(k0 + k) * T::row + T::slot(t)] = vb[k];
                sC[(k0 + k) * T::row + T::slot(t)] = vc[k];
            }
        }
        return;
    }
    for (int i = threadIdx.x; i < T::tokens * NG; i += THREADS) {
        int t = i / NG, k = i % NG, n = g * NG + k;
        bool on = t < len && n < dState;
        sB[k * T::row + T::slot(t)] = on ? ld(B, (r0 + t) * dState + n) : 0.0f;
        sC[k * T::row + T::slot(t)] = on ? ld(C, (r0 + t) * dState + n) : 0.0f;
    }
}

// Grid (ceil(dInner / CH), batch), THREADS threads. Shared memory (floats): step, u, gate [CH][row]; B, C
// [NG][row]; A * log2(e) [CH][states]; the carried state [2][CH][states], with states = dState rounded up to NG.
// States past dState have A = 0, B = C = 0 and state 0, so every group runs all NG states without a bound check
// (the scheduler may then overlap one state's exponentials with the previous state's scan).
// With 8 or more tokens a lane runs them as two halves whose recurrences are independent dependency chains: the
// halves' maps are composed for the scan, and the second half starts from the first half's map applied to the
// entering state.
template <int ITEMS>
__device__ void scan(const act* u, const act* delta, const float* A, const act* B, const act* C, const float* D,
                     const act* z, float* state, act* out, int tokens, int dInner, int dState, int flags) {
    using T = Tile<ITEMS>;
    extern __shared__ float4 smem4[];
    float* sStep = reinterpret_cast<float*>(smem4);
    float* sU = sStep + CH * T::row;
    float* sGate = sU + CH * T::row;
    float* sB = sGate + CH * T::row;
    float* sC = sB + NG * T::row;
    float* sA = sC + NG * T::row;
    int states = (dState + NG - 1) / NG * NG;
    float* sH = sA + CH * states;
    const unsigned full = 0xffffffffu;
    int c0 = blockIdx.x * CH, b = blockIdx.y;
    int ch = threadIdx.x / SEGS, seg = threadIdx.x % SEGS;
    bool valid = c0 + ch < dInner;
    float d = valid ? D[c0 + ch] : 0.0f;
    for (int i = threadIdx.x; i < CH * states; i += THREADS) {
        int c = c0 + i / states, n = i % states;
        bool on = c < dInner && n < dState;
        sA[i] = on ? A[(i64)c * dState + n] * 1.4426950408889634f : 0.0f;  // log2 domain
        sH[i] = on ? state[((i64)b * dInner + c) * dState + n] : 0.0f;
    }
    const float* aRow = sA + ch * states;
    int par = 0;
    for (int t0 = 0; t0 < tokens; t0 += T::tokens, par ^= 1) {
        int len = min(T::tokens, tokens - t0);
        i64 r0 = (i64)b * tokens + t0;
        __syncthreads();  // the previous tile's outputs have left sU
        if (flags & VECTOR_CHANNELS) {
            for (int i = threadIdx.x; i < T::tokens * (CH / 8); i += THREADS) {
                int t = i % T::tokens, k0 = i / T::tokens * 8, c = c0 + k0;
                float vs[8] = {}, vu[8] = {}, vg[8] = {};
                if (t < len && c < dInner) {
                    i64 at = (r0 + t) * dInner + c;
                    unpack8(*reinterpret_cast<const uint4*>(delta + at), vs);
                    unpack8(*reinterpret_cast<const uint4*>(u + at), vu);
                    if (z) unpack8(*reinterpret_cast<const uint4*>(z + at), vg);
#pragma unroll
                    for (int k = 0; k < 8; k++) {
                        vs[k] = fast_softplus(vs[k]);
                        vg[k] = z ? fast_silu(vg[k]) : 1.0f;
                    }
                }
#pragma unroll
                for (int k = 0; k < 8; k++) {
                    int at = (k0 + k) * T::row + T::slot(t);
                    sStep[at] = vs[k], sU[at] = vu[k], sGate[at] = vg[k];
                }
            }
        } else {
            for (int i = threadIdx.x; i < T::tokens * CH; i += THREADS) {
                int t = i / CH, k = i % CH, c = c0 + k, at = k * T::row + T::slot(t);
                bool on = t < len && c < dInner;
                i64 g = (r0 + t) * dInner + c;
                sStep[at] = on ? fast_softplus(ld(delta, g)) : 0.0f;
                sU[at] = on ? ld(u, g) : 0.0f;
                sGate[at] = on && z ? fast_silu(ld(z, g)) : 1.0f;
            }
        }
        stage_states<ITEMS>(B, C, sB, sC, r0, len, dState, 0, flags);
        __syncthreads();

        // The next tile's rows head for L2 while this one computes, so that its staging waits less.
        for (int i = threadIdx.x; i < 5 * T::tokens && t0 + T::tokens < tokens; i += THREADS) {
            int t = i % T::tokens, which = i / T::tokens;
            i64 r = min(r0 + T::tokens + t, (i64)b * tokens + tokens - 1);
            const act* row = which == 0 ? delta : which == 1 ? u : which == 2 ? z : which == 3 ? B : C;
            if (row) prefetch_l2(row + (which < 3 ? r * dInner + c0 : r * dState));
        }

        // Tokens past `len` have step 0 and u 0: dA = 1 and dBu = 0 leave the state unchanged.
        int mine = ch * T::row + seg * T::seg;
        constexpr bool SPLIT = ITEMS >= 8;
        constexpr int H = SPLIT ? ITEMS / 2 : ITEMS;  // tokens in the first (or only) half
        float step[ITEMS], du[ITEMS], y[ITEMS], sumLo = 0.0f, sumHi = 0.0f;
        load_items<ITEMS>(sStep + mine, step);
        load_items<ITEMS>(sU + mine, du);
#pragma unroll
        for (int i = 0; i < ITEMS; i++) {
            y[i] = d * du[i];
            du[i] *= step[i];
            (i < H ? sumLo : sumHi) += step[i];
        }
        // A decode step (one token, in lane 0) needs no scan: lane 0 runs from the carried state and keeps it.
        bool alone = ITEMS == 1 && len == 1;
        const float* hIn = sH + par * CH * states + ch * states;
        float* hOut = sH + (par ^ 1) * CH * states + ch * states;
        for (int g = 0; g * NG < dState; g++) {
            if (g > 0) {
                __syncthreads();
                stage_states<ITEMS>(B, C, sB, sC, r0, len, dState, g, flags);
                __syncthreads();
            }
#pragma unroll
            for (int k = 0; k < NG; k++) {
                int n = g * NG + k;
                float a = aRow[n], dA[ITEMS], dBu[ITEMS], qLo = 0.0f, qHi = 0.0f;
                load_items<ITEMS>(sB + k * T::row + seg * T::seg, dBu);
#pragma unroll
                for (int i = 0; i < H; i++) {
                    dA[i] = ex2(step[i] * a);
                    dBu[i] *= du[i];
                    qLo = fmaf(dA[i], qLo, dBu[i]);
                    if constexpr (SPLIT) {
                        dA[i + H] = ex2(step[i + H] * a);
                        dBu[i + H] *= du[i + H];
                        qHi = fmaf(dA[i + H], qHi, dBu[i + H]);
                    }
                }
                float pLo = ex2(a * sumLo), pHi = SPLIT ? ex2(a * sumHi) : 1.0f;
                float p = pLo * pHi, q = fmaf(pHi, qLo, qHi);
                float carried = hIn[n], h = carried;
                if (!alone) {
                    // Inclusive scan of the segments' maps: an earlier (pp, qq) then (p, q) is (pp p, p qq + q).
#pragma unroll
                    for (int off = 1; off < SEGS; off *= 2) {
                        float pp = __shfl_up_sync(full, p, off, SEGS), qq = __shfl_up_sync(full, q, off, SEGS);
                        if (seg >= off) q = fmaf(p, qq, q), p *= pp;
                    }
                    float before = __shfl_up_sync(full, fmaf(p, carried, q), 1, SEGS);
                    if (seg > 0) h = before;
                }
                float h2 = fmaf(pLo, h, qLo), c[ITEMS];
                load_items<ITEMS>(sC + k * T::row + seg * T::seg, c);
#pragma unroll
                for (int i = 0; i < H; i++) {
                    h = fmaf(dA[i], h, dBu[i]);
                    y[i] = fmaf(c[i], h, y[i]);
                    if constexpr (SPLIT) {
                        h2 = fmaf(dA[i + H], h2, dBu[i + H]);
                        y[i + H] = fmaf(c[i + H], h2, y[i + H]);
                    }
                }
                if (seg == (alone ? 0 : SEGS - 1)) hOut[n] = SPLIT ? h2 : h;
            }
        }
        float gate[ITEMS];
        load_items<ITEMS>(sGate + mine, gate);
#pragma unroll
        for (int i = 0; i < ITEMS; i++) sU[mine + i] = y[i] * gate[i];  // only this lane read these slots
        __syncthreads();
        if (flags & VECTOR_CHANNELS) {
            for (int i = threadIdx.x; i < T::tokens * (CH / 8); i += THREADS) {
                int t = i % T::tokens, k0 = i / T::tokens * 8, c = c0 + k0;
                if (t >= len || c >= dInner) continue;
                uint4 raw;
                act2* h = reinterpret_cast<act2*>(&raw);
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    h[j] = floats_to_act2(sU[(k0 + 2 * j) * T::row + T::slot(t)],
                                                 sU[(k0 + 2 * j + 1) * T::row + T::slot(t)]);
                }
                *reinterpret_cast<uint4*>(out + (r0 + t) * dInner + c) = raw;
            }
        } else {
            for (int i = threadIdx.x; i < T::tokens * CH; i += THREADS) {
                int t = i / CH, k = i % CH, c = c0 + k;
                if (t < len && c < dInner) st(out, (r0 + t) * dInner + c, sU[k * T::row + T::slot(t)]);
            }
        }
    }
    __syncthreads();
    const float* hFinal = sH + par * CH * states;
    for (int i = threadIdx.x; i < CH * states; i += THREADS) {
        int c = c0 + i / states, n = i % states;
        if (c < dInner && n < dState) state[((i64)b * dInner + c) * dState + n] = hFinal[i];
    }
}

// A decode step (one token per sequence) with Mamba-1's dt_proj folded in: delta[c] = dt . W[c] (+ bias[c]) over
// the rank, rounded to the activation type as the separate projection stores it, then the step of the scan above
// (step = softplus(delta); h_n = exp(step a_n) h_n + step u B_n; y = (C.h + D u) silu(z)). Half a warp per channel,
// CH channels a block, grid (ceil(dInner / CH), batch): lane s takes the rank's eight-element chunks s, s + 16, ...
// (single elements s, s + 16, ... where the rank is not a multiple of 8) and the states s, s + 16, ...; each sum is
// completed over the 16 lanes by shuffles. No shared memory, no block sync. The parameters (W's first chunk, the
// bias, A and D) do not change during a step, and the states were last written by an earlier step's kernel, which
// has completed (every kernel since waited for its predecessor), so all of them are loaded before
// grid_dependency_sync: in a recorded step the loads overlap the end of the kernel before.
#define STEP_STATES 8  // states per lane: dState <= SEGS * STEP_STATES

struct StepParameters {
    uint4 w;                // W[c]'s chunk `seg` (vectorised rank)
    float a[STEP_STATES];   // A[c, seg + SEGS i] * log2(e), 0 past dState
    float h[STEP_STATES];   // the states seg + SEGS i before this step (only earlier steps write them)
    float bias, d;
};

__device__ __forceinline__ StepParameters step_parameters(const act* w, const float* bias, const float* A,
                                                          const float* D, const float* state, int dInner, int dState,
                                                          int rank, int vectorRank) {
    int c = blockIdx.x * CH + threadIdx.x / SEGS, seg = threadIdx.x % SEGS;
    const float* h = state + ((i64)blockIdx.y * dInner + c) * dState;
    bool valid = c < dInner;
    StepParameters p;
    p.w = valid && vectorRank && seg * 8 < rank ? __ldg((const uint4*)(w + (i64)c * rank) + seg)
                                                : make_uint4(0, 0, 0, 0);
#pragma unroll
    for (int i = 0; i < STEP_STATES; i++) {
        int n = seg + SEGS * i;
        p.a[i] = valid && n < dState ? A[(i64)c * dState + n] * 1.4426950408889634f : 0.0f;  // log2 domain
        p.h[i] = valid && n < dState ? h[n] : 0.0f;
    }
    p.bias = valid && bias ? bias[c] : 0.0f;
    p.d = valid ? D[c] : 0.0f;
    return p;
}

__device__ __forceinline__ float dot8(uint4 w, const act* x) {
    float v[8], s = 0.0f;
    ld8(x, v);
    const act2* h = reinterpret_cast<const act2*>(&w);
#pragma unroll
    for (int e = 0; e < 4; e++) {
        float2 f = act2_to_float2(h[e]);
        s = fmaf(v[2 * e], f.x, s);
        s = fmaf(v[2 * e + 1], f.y, s);
    }
    return s;
}

__device__ __forceinline__ float half_warp_sum(float v) {
#pragma unroll
    for (int off = SEGS / 2; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

// vectorRank: rank % 8 == 0 with 16-byte aligned rows of dt and W.
__device__ __forceinline__ void step_with_delta_projection(const StepParameters& p, const act* u, const act* dt,
                                                           const act* w, const act* B, const act* C, const act* z,
                                                           float* state, act* out, int dInner, int dState, int rank,
                                                           int vectorRank) {
    int c = blockIdx.x * CH + threadIdx.x / SEGS, seg = threadIdx.x % SEGS, b = blockIdx.y;
    bool valid = c < dInner;
    const act* x = dt + (i64)b * rank;
    const act* row = w + (i64)c * rank;
    float delta = 0.0f;
    if (vectorRank) {
        if (valid && seg * 8 < rank) delta = dot8(p.w, x + seg * 8);
        for (int k = (seg + SEGS) * 8; valid && k < rank; k += SEGS * 8) {
            delta += dot8(__ldg((const uint4*)(row + k)), x + k);
        }
    } else {
        for (int k = seg; valid && k < rank; k += SEGS) delta = fmaf(ld(x, k), ld(row, k), delta);
    }
    delta = half_warp_sum(delta) + p.bias;
    float step = fast_softplus(act_to_float(float_to_act(delta)));  // as the separate projection stores it
    i64 at = (i64)b * dInner + c;
    float uc = valid ? ld(u, at) : 0.0f, du = uc * step, y = 0.0f;
    float* h = state + at * dState;
#pragma unroll
    for (int i = 0; i < STEP_STATES; i++) {
        int n = seg + SEGS * i;
        if (!valid || n >= dState) continue;
        float next = fmaf(ex2(step * p.a[i]), p.h[i], ld(B, (i64)b * dState + n) * du);
        h[n] = next;
        y = fmaf(ld(C, (i64)b * dState + n), next, y);
    }
    y = half_warp_sum(y);
    if (valid && seg == 0) st(out, at, fmaf(p.d, uc, y) * (z ? fast_silu(ld(z, at)) : 1.0f));
}

extern "C" __global__ void __launch_bounds__(THREADS) selective_step_dt(
    const act* u, const act* dt, const act* w, const float* bias, const float* A, const act* B, const act* C,
    const float* D, const act* z, float* state, act* out, int dInner, int dState, int rank, int vectorRank, int early) {
    // The out projection after it (a gemv block of 128 registers x 256 threads) fits beside this kernel's blocks (48
    // registers, about two per multiprocessor), so it may launch now and stream its weights during this step.
    if (early) grid_dependents_launch();
    StepParameters p = step_parameters(w, bias, A, D, state, dInner, dState, rank, vectorRank);
    grid_dependency_sync();
    step_with_delta_projection(p, u, dt, w, B, C, z, state, out, dInner, dState, rank, vectorRank);
}

// One kernel per segment length: 16 tokens per lane for prompts, 4 and 1 for short inputs and decode steps.
#define SCAN(ITEMS)                                                                                                 \
    extern "C" __global__ void __launch_bounds__(THREADS, 2) selective_scan_i##ITEMS(                             \
        const act* u, const act* delta, const float* A, const act* B, const act* C, const float* D,              \
        const act* z, float* state, act* out, int tokens, int dInner, int dState, int flags) {                    \
        grid_dependency_sync();                                                                                       \
        scan<ITEMS>(u, delta, A, B, C, D, z, state, out, tokens, dInner, dState, flags);                            \
    }

SCAN(1)
SCAN(4)
SCAN(16)
