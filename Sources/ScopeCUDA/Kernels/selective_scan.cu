// Mamba-1 selective scan (SelectiveScan.scan's contract), chunked along the sequence in three steps so that long
// prompts run thousands of independent recurrences instead of one per channel:
//   mode 0  each chunk's own final state from a zero start, and its sum of time steps      grid (.., batch, chunks)
//   scan_carry  chunk by chunk: the state entering each chunk, and the final state
//   mode 1  each chunk again from its entering state, writing the outputs                   grid (.., batch, chunks)
// (mode 2: one chunk from `state` to outputs and the new state, for short inputs and decode). Over a chunk the
// decay of state n is prod_t exp(step_t a_n) = exp(a_n sum_t step_t), which is all scan_carry needs.
// Each block stages 64 tokens of softplus(delta), u, silu(z), B and C in shared memory with coalesced loads; `lanes`
// threads (a power of two up to 32) share one channel, each holding S = 1, 2 or 4 of its states. Per step:
// dA = exp(step a); h = dA h + step B u; y = C.h + D u; y *= silu(z).
#include "common.cuh"

#define ST 64  // tokens staged per pass over shared memory

__device__ __forceinline__ float ex2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

// softplus and silu with the fast exponential and logarithm (relative error ~1e-6; log1p's series below 1e-4).
__device__ __forceinline__ float fast_softplus(float x) {
    float e = __expf(x);
    return x > 20.0f ? x : e < 1e-4f ? e * (1.0f - 0.5f * e) : __logf(1.0f + e);
}

__device__ __forceinline__ float fast_silu(float x) { return __fdividef(x, 1.0f + __expf(-x)); }

// carry: [batch, chunks, dInner, dState] fp32; stepSum: [batch, chunks, dInner] fp32 (modes 0 and 1). S states
// per thread (n = sub + k * lanes, k < S); the per-lane partial sums of y go to shared memory and are added up
// when the chunk's outputs are written, so the recurrence itself needs no shuffles.
template <int S>
__device__ void scan(const bf16* u, const bf16* delta, const float* A, const bf16* B, const bf16* C, const float* D,
                     const bf16* z, float* state, bf16* out, float* carry, float* stepSum, int tokens, int dInner,
                     int dState, int lanes, int chunkTokens, int mode) {
    extern __shared__ float4 smem4[];
    float* sm = (float*)smem4;
    int perBlock = blockDim.x / lanes, c0 = blockIdx.x * perBlock, b = blockIdx.y, chunk = blockIdx.z;
    int chunks = gridDim.z;
    int local = threadIdx.x / lanes, sub = threadIdx.x % lanes;
    bool valid = c0 + local < dInner;
    int ch = valid ? c0 + local : dInner - 1;
    float* sStep = sm;                         // [ST][perBlock]
    float* sU = sStep + ST * perBlock;
    float* sGate = sU + ST * perBlock;
    float* sB = sGate + ST * perBlock;         // [ST][dState]
    float* sC = sB + ST * dState;
    float* sY = sC + ST * dState;              // [ST][blockDim]: per-lane partial sums of y

    float h[S], a[S];
    bool live[S];
    i64 slot = (((i64)b * chunks + chunk) * dInner + ch) * dState;
    float* hs = state + ((i64)b * dInner + ch) * dState;
#pragma unroll
    for (int k = 0; k < S; k++) {
        int n = sub + k * lanes;
        live[k] = n < dState;
        h[k] = !live[k] || mode == 0 ? 0.0f : mode == 1 ? carry[slot + n] : hs[n];
        a[k] = live[k] ? A[(i64)ch * dState + n] * 1.4426950408889634f : 0.0f;  // log2 domain
    }
    float steps = 0.0f;
    int begin = chunk * chunkTokens, finish = min(tokens, begin + chunkTokens);
    for (int t0 = begin; t0 < finish; t0 += ST) {
        int len = min(ST, finish - t0);
        __syncthreads();
        for (int i = threadIdx.x; i < len * perBlock; i += blockDim.x) {
            int t = i / perBlock, c = min(c0 + i % perBlock, dInner - 1);
            i64 g = ((i64)b * tokens + t0 + t) * dInner + c;
            sStep[i] = fast_softplus(ld(delta, g));
            sU[i] = ld(u, g);
            if (mode != 0) sGate[i] = z ? fast_silu(ld(z, g)) : 1.0f;
        }
        for (int i = threadIdx.x; i < len * dState; i += blockDim.x) {
            i64 g = ((i64)b * tokens + t0) * dState + i;
            sB[i] = ld(B, g);
            if (mode != 0) sC[i] = ld(C, g);
        }
        __syncthreads();
        const float* bRow = sB + sub;
        const float* cRow = sC + sub;
        if (mode == 0) {
            for (int t = 0; t < len; t++) {
                float step = sStep[t * perBlock + local], du = step * sU[t * perBlock + local];
                steps += step;
#pragma unroll
                for (int k = 0; k < S; k++) h[k] = ex2(step * a[k]) * h[k] + du * bRow[t * dState + k * lanes];
            }
            continue;
        }
        // Eight tokens at a time with their partial outputs in registers: no shared-memory store inside a group,
        // so the loads and exponentials of later tokens overlap the recurrence of earlier ones.
        for (int g0 = 0; g0 < len; g0 += 8) {
            float yv[8];
#pragma unroll
            for (int tt = 0; tt < 8; tt++) {
                int t = min(g0 + tt, len - 1);
                bool on = g0 + tt < len;
                float step = on ? sStep[t * perBlock + local] : 0.0f;
                float du = step * sU[t * perBlock + local], y = 0.0f;
#pragma unroll
                for (int k = 0; k < S; k++) {
                    // A finished group (on == false) has step 0: dA = 1 and du = 0 leave h unchanged.
                    h[k] = ex2(step * a[k]) * h[k] + du * bRow[t * dState + k * lanes];
                    y += live[k] ? cRow[t * dState + k * lanes] * h[k] : 0.0f;
                }
                yv[tt] = y;
            }
#pragma unroll
            for (int tt = 0; tt < 8; tt++) {
                if (g0 + tt < len) sY[(g0 + tt) * blockDim.x + threadIdx.x] = yv[tt];
            }
        }
        __syncthreads();
        for (int i = threadIdx.x; i < len * perBlock; i += blockDim.x) {
            int t = i / perBlock, l = i % perBlock, c = c0 + l;
            if (c >= dInner) continue;
            float y = 0.0f;
            for (int j = 0; j < lanes; j++) y += sY[t * blockDim.x + l * lanes + j];
            st(out, ((i64)b * tokens + t0 + t) * dInner + c, (y + D[c] * sU[i]) * sGate[i]);
        }
    }
    if (!valid || mode == 1) return;
#pragma unroll
    for (int k = 0; k < S; k++) {
        if (live[k]) (mode == 0 ? carry + slot : hs)[sub + k * lanes] = h[k];
    }
    if (mode == 0 && sub == 0) stepSum[((i64)b * chunks + chunk) * dInner + ch] = steps;
}

#define SCAN(S)                                                                                                     \
    extern "C" __global__ void selective_scan_s##S(                                                                \
        const bf16* u, const bf16* delta, const float* A, const bf16* B, const bf16* C, const float* D,              \
        const bf16* z, float* state, bf16* out, float* carry, float* stepSum, int tokens, int dInner, int dState,   \
        int lanes, int chunkTokens, int mode) {                                                                     \
        scan<S>(u, delta, A, B, C, D, z, state, out, carry, stepSum, tokens, dInner, dState, lanes, chunkTokens,    \
                mode);                                                                                              \
    }

SCAN(1)
SCAN(2)
SCAN(4)

// Chunk by chunk, per (channel, state, sequence): the state entering each chunk replaces the chunk's own final
// state in `carry`, and `state` ends as the final state. Grid (ceil(dInner * dState / 256), batch); 256 threads.
extern "C" __global__ void scan_carry(const float* A, float* state, float* carry, const float* stepSum, int chunks,
                                      int dInner, int dState) {
    int i = blockIdx.x * blockDim.x + threadIdx.x, b = blockIdx.y;
    if (i >= dInner * dState) return;
    int ch = i / dState;
    float a = A[i], run = state[(i64)b * dInner * dState + i];
    for (int c = 0; c < chunks; c++) {
        i64 slot = ((i64)b * chunks + c) * dInner * dState + i;
        float own = carry[slot];
        carry[slot] = run;
        run = run * expf(a * stepSum[((i64)b * chunks + c) * dInner + ch]) + own;
    }
    state[(i64)b * dInner * dState + i] = run;
}
