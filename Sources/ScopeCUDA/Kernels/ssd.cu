// Mamba-2 SSD (SSD.scan's contract) as the chunked algorithm over chunks of 64 tokens, fp32 throughout:
//   ssd_chunk_cb     G = C B^T of each chunk and group                          grid (chunks, groups, batch)
//   ssd_chunk_state  each chunk's own state B^T (decay-to-end * dt * x)         grid (chunks, heads, batch)
//   ssd_state_pass   states across chunks; leaves each chunk's incoming state  grid (P*N/256, heads, batch)
//   ssd_chunk_scan   y = (G o decay o dt) x + exp(cum) C h_in + D x            grid (chunks, heads, batch)
// and ssd_step, the plain recurrence of one token. Matrix products run on 64x64 shared-memory tiles with a 4x4
// register block per thread (256 threads). Workspaces: cb [batch, chunks, groups, 64, 64], states
// [batch, chunks, heads, P, N], decay [batch, heads, chunks]. The chunked kernels load rows 8 values at a time:
// P and N must be multiples of 8 (the host runs ssd_step over all tokens otherwise).
#include "common.cuh"

#define Q 64

// step = clamp(softplus(dt + bias), dtMin, dtMax) and the inclusive cumulative sum of step * A over the chunk.
__device__ void chunk_steps(const bf16* dt, const float* dtBias, const float* A, int b, int h, int c, int tokens,
                            int heads, float dtMin, float dtMax, int L, float* step, float* cum) {
    for (int t = threadIdx.x; t < Q; t += blockDim.x) {
        step[t] = t < L ? fminf(fmaxf(softplus(ld(dt, ((i64)b * tokens + c * Q + t) * heads + h) + dtBias[h]), dtMin), dtMax)
                        : 0.0f;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        float running = 0.0f, a = A[h];
        for (int t = 0; t < Q; t++) {
            if (t < L) running += step[t] * a;
            cum[t] = running;
        }
    }
    __syncthreads();
}

// acc += A[r.., 0..K) * B[0..K), c..] with r = (tid / 16) * 4, c = (tid % 16) * 4; ldb a multiple of 4.
__device__ __forceinline__ void tile_mm(float acc[4][4], const float* A, int lda, const float* B, int ldb, int K) {
    int r = (threadIdx.x >> 4) * 4, c = (threadIdx.x & 15) * 4;
    for (int k = 0; k < K; k++) {
        float4 bv = *(const float4*)(B + (i64)k * ldb + c);
        float bb[4] = {bv.x, bv.y, bv.z, bv.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            float a = A[(r + i) * lda + k];
#pragma unroll
            for (int j = 0; j < 4; j++) acc[i][j] += a * bb[j];
        }
    }
}

__device__ __forceinline__ void zero(float acc[4][4]) {
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) acc[i][j] = 0.0f;
}

__device__ __forceinline__ int round64(int n) { return (n + 63) / 64 * 64; }

// Eight consecutive bf16 values (16-byte aligned) as floats, or zeros when !ok.
__device__ __forceinline__ void load8(const bf16* p, bool ok, float* v) {
    uint4 raw = ok ? *(const uint4*)p : make_uint4(0, 0, 0, 0);
    const __nv_bfloat162* h = (const __nv_bfloat162*)&raw;
#pragma unroll
    for (int e = 0; e < 4; e++) {
        float2 f = __bfloat1622float2(h[e]);
        v[2 * e] = f.x;
        v[2 * e + 1] = f.y;
    }
}

extern "C" __global__ void ssd_chunk_cb(const bf16* B, const bf16* C, float* cb, int tokens, int groups, int N) {
    extern __shared__ float4 smem4[];
    float* sm = (float*)smem4;
    int c = blockIdx.x, g = blockIdx.y, b = blockIdx.z, chunks = gridDim.x;
    int L = min(Q, tokens - c * Q), Nr = round64(N), lda = Nr + 1, ldb = Q + 4;
    float* cs = sm;                     // [Q][Nr + 1]
    float* bt = sm + round64(Q * lda);  // [Nr][Q + 4]: padded against bank conflicts
    for (int i = threadIdx.x; i < Q * Nr / 8; i += blockDim.x) {
        int t = i / (Nr / 8), n = i % (Nr / 8) * 8;
        i64 src = ((i64)b * tokens + c * Q + t) * groups * N + (i64)g * N + n;
        bool ok = t < L && n < N;
        float cv[8], bv[8];
        load8(C + src, ok, cv);
        load8(B + src, ok, bv);
#pragma unroll
        for (int e = 0; e < 8; e++) {
            cs[t * lda + n + e] = cv[e];
            bt[(n + e) * ldb + t] = bv[e];
        }
    }
    __syncthreads();
    float acc[4][4];
    zero(acc);
    tile_mm(acc, cs, lda, bt, ldb, Nr);
    float* dst = cb + (((i64)b * chunks + c) * groups + g) * Q * Q;
    int r = (threadIdx.x >> 4) * 4, cc = (threadIdx.x & 15) * 4;
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) dst[(r + i) * Q + cc + j] = acc[i][j];
}

extern "C" __global__ void ssd_chunk_state(const bf16* x, const bf16* dt, const float* dtBias, const float* A,
                                           const bf16* B, float* states, float* decay, int tokens, int heads, int P,
                                           int groups, int N, float dtMin, float dtMax) {
    extern __shared__ float4 smem4[];
    float* sm = (float*)smem4;
    int c = blockIdx.x, h = blockIdx.y, b = blockIdx.z, chunks = gridDim.x;
    int L = min(Q, tokens - c * Q), Pr = round64(P), Nr = round64(N), g = h / (heads / groups);
    float* step = sm;
    float* cum = sm + Q;
    float* xt = sm + 2 * Q;              // [Pr][Q + 1]: x * dt * decay to the chunk end, transposed
    float* bs = xt + round64(Pr * (Q + 1));  // [Q][Nr]
    chunk_steps(dt, dtBias, A, b, h, c, tokens, heads, dtMin, dtMax, L, step, cum);
    float end = cum[Q - 1];
    for (int i = threadIdx.x; i < Q * Pr / 8; i += blockDim.x) {
        int t = i / (Pr / 8), p = i % (Pr / 8) * 8;
        float v[8];
        load8(x + ((i64)b * tokens + c * Q + t) * heads * P + (i64)h * P + p, t < L && p < P, v);
        float w = t < L ? step[t] * expf(end - cum[t]) : 0.0f;
#pragma unroll
        for (int e = 0; e < 8; e++) xt[(p + e) * (Q + 1) + t] = v[e] * w;
    }
    for (int i = threadIdx.x; i < Q * Nr / 8; i += blockDim.x) {
        int t = i / (Nr / 8), n = i % (Nr / 8) * 8;
        float v[8];
        load8(B + ((i64)b * tokens + c * Q + t) * groups * N + (i64)g * N + n, t < L && n < N, v);
#pragma unroll
        for (int e = 0; e < 8; e++) bs[t * Nr + n + e] = v[e];
    }
    __syncthreads();
    if (threadIdx.x == 0) decay[((i64)b * heads + h) * chunks + c] = expf(end);
    float* dst = states + (((i64)b * chunks + c) * heads + h) * P * N;
    int r = (threadIdx.x >> 4) * 4, cc = (threadIdx.x & 15) * 4;
    for (int p0 = 0; p0 < P; p0 += 64) {
        for (int n0 = 0; n0 < N; n0 += 64) {
            float acc[4][4];
            zero(acc);
            tile_mm(acc, xt + p0 * (Q + 1), Q + 1, bs + n0, Nr, Q);
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    int p = p0 + r + i, n = n0 + cc + j;
                    if (p < P && n < N) dst[(i64)p * N + n] = acc[i][j];
                }
        }
    }
}

// state runs through the chunks; each chunk's slot of `states` is replaced by the state entering it. The chunks'
// decay factors are staged in shared memory (chunks floats).
extern "C" __global__ void ssd_state_pass(float* __restrict__ states, const float* __restrict__ decay,
                                          float* __restrict__ state, int chunks, int heads, int size) {
    extern __shared__ float4 smem4[];
    float* factors = (float*)smem4;
    int i = blockIdx.x * blockDim.x + threadIdx.x, h = blockIdx.y, b = blockIdx.z;
    for (int c = threadIdx.x; c < chunks; c += blockDim.x) factors[c] = decay[((i64)b * heads + h) * chunks + c];
    __syncthreads();
    if (i >= size) return;
    float* s = state + ((i64)b * heads + h) * size + i;
    float* slot = states + ((i64)b * chunks * heads + h) * size + i;
    i64 stride = (i64)heads * size;
    // Sixteen chunks' slots are read ahead of the sequential update, so that the loads overlap.
    float run = *s;
    for (int c0 = 0; c0 < chunks; c0 += 16) {
        float own[16];
#pragma unroll
        for (int k = 0; k < 16; k++) own[k] = c0 + k < chunks ? slot[(c0 + k) * stride] : 0.0f;
#pragma unroll
        for (int k = 0; k < 16; k++) {
            if (c0 + k < chunks) {
                slot[(c0 + k) * stride] = run;
                run = run * factors[c0 + k] + own[k];
            }
        }
    }
    *s = run;
}

extern "C" __global__ void ssd_chunk_scan(const bf16* x, const bf16* dt, const float* dtBias, const float* A,
                                          const bf16* C, const float* D, const float* cb, const float* states,
                                          bf16* out, int tokens, int heads, int P, int groups, int N, float dtMin,
                                          float dtMax) {
    extern __shared__ float4 smem4[];
    float* sm = (float*)smem4;
    int c = blockIdx.x, h = blockIdx.y, b = blockIdx.z, chunks = gridDim.x;
    int L = min(Q, tokens - c * Q), Pr = round64(P), Nr = round64(N), g = h / (heads / groups);
    float* step = sm;
    float* cum = sm + Q;
    float* m = sm + 2 * Q;                      // [Q][Q + 1]: G o exp(segsum) o dt, lower triangle
    float* xs = m + round64(Q * (Q + 1));       // [Q][Pr]
    float* cs = xs + Q * Pr;                    // [Q][Nr + 1]: C * exp(cum)
    float* ht = cs + round64(Q * (Nr + 1));     // [Nr][Pr + 4]: incoming state, transposed and padded
    chunk_steps(dt, dtBias, A, b, h, c, tokens, heads, dtMin, dtMax, L, step, cum);
    const float* g0 = cb + (((i64)b * chunks + c) * groups + g) * Q * Q;
    for (int i = threadIdx.x; i < Q * Q; i += blockDim.x) {
        int t = i / Q, s = i % Q;
        m[t * (Q + 1) + s] = s <= t && t < L ? g0[i] * expf(cum[t] - cum[s]) * step[s] : 0.0f;
    }
    for (int i = threadIdx.x; i < Q * Pr / 8; i += blockDim.x) {
        int t = i / (Pr / 8), p = i % (Pr / 8) * 8;
        load8(x + ((i64)b * tokens + c * Q + t) * heads * P + (i64)h * P + p, t < L && p < P, xs + t * Pr + p);
    }
    for (int i = threadIdx.x; i < Q * Nr / 8; i += blockDim.x) {
        int t = i / (Nr / 8), n = i % (Nr / 8) * 8;
        float v[8];
        load8(C + ((i64)b * tokens + c * Q + t) * groups * N + (i64)g * N + n, t < L && n < N, v);
        float scale = expf(cum[t]);
#pragma unroll
        for (int e = 0; e < 8; e++) cs[t * (Nr + 1) + n + e] = v[e] * scale;
    }
    const float* hin = states + (((i64)b * chunks + c) * heads + h) * P * N;
    for (int i = threadIdx.x; i < Pr * Nr / 4; i += blockDim.x) {
        int p = i / (Nr / 4), n = i % (Nr / 4) * 4;  // consecutive threads read consecutive n
        float4 v = p < P && n < N ? *(const float4*)(hin + (i64)p * N + n) : make_float4(0, 0, 0, 0);
        ht[(n + 0) * (Pr + 4) + p] = v.x;
        ht[(n + 1) * (Pr + 4) + p] = v.y;
        ht[(n + 2) * (Pr + 4) + p] = v.z;
        ht[(n + 3) * (Pr + 4) + p] = v.w;
    }
    __syncthreads();
    float dh = D[h];
    int r = (threadIdx.x >> 4) * 4, cc = (threadIdx.x & 15) * 4;
    for (int p0 = 0; p0 < P; p0 += 64) {
        float acc[4][4];
        zero(acc);
        tile_mm(acc, m, Q + 1, xs + p0, Pr, Q);
        tile_mm(acc, cs, Nr + 1, ht + p0, Pr + 4, Nr);
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
            for (int j = 0; j < 4; j++) {
                int t = r + i, p = p0 + cc + j;
                if (t < L && p < P) {
                    st(out, ((i64)b * tokens + c * Q + t) * heads * P + (i64)h * P + p, acc[i][j] + dh * xs[t * Pr + p]);
                }
            }
    }
}

// The plain recurrence, token by token: h = exp(dt A) h + dt x B; y = C.h + D x. Used for one token (decode) and
// for head or state sizes the chunked kernels do not take. Grid (ceil(P / 8), heads, batch); 8 warps, one per p;
// lane holds n = lane + 32 k.
extern "C" __global__ void ssd_step(const bf16* x, const bf16* dt, const float* dtBias, const float* A,
                                    const bf16* B, const bf16* C, const float* D, float* state, bf16* out, int tokens,
                                    int heads, int P, int groups, int N, float dtMin, float dtMax) {
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int p = blockIdx.x * 8 + warp, h = blockIdx.y, b = blockIdx.z, g = h / (heads / groups);
    if (p >= P) return;
    float* hs = state + (((i64)b * heads + h) * P + p) * N;
    for (int t = 0; t < tokens; t++) {
        i64 row = (i64)b * tokens + t;
        float step = fminf(fmaxf(softplus(ld(dt, row * heads + h) + dtBias[h]), dtMin), dtMax);
        float dA = expf(step * A[h]);
        float xv = ld(x, row * heads * P + (i64)h * P + p);
        float coef = step * xv;
        const bf16* bRow = B + row * groups * N + (i64)g * N;
        const bf16* cRow = C + row * groups * N + (i64)g * N;
        float y = 0.0f;
        for (int n = lane; n < N; n += 32) {
            float v = dA * hs[n] + coef * ld(bRow, n);
            hs[n] = v;
            y += v * ld(cRow, n);
        }
        y = warp_sum(y);
        if (lane == 0) st(out, row * heads * P + (i64)h * P + p, y + D[h] * xv);
    }
}
