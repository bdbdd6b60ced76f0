// Mamba-2 SSD (SSD.scan's contract) as the chunked algorithm over chunks of SQ = 256 tokens, every product on tensor
// cores (mma.sync m16n8k16, bf16 operands, fp32 accumulation). The host runs the four chunked kernels once per
// super-chunk: tokens [t0, t0 + span) of every sequence, `tokens` being a sequence's row count.
//   ssd_chunk_cb     CB = C B^T per chunk and group (activation type), 64 x 64 tiles on or below the diagonal
//                    grid (chunks * 10, groups, batch), 128 threads
//   ssd_chunk_state  each chunk's own state S[p][n] = sum_s w_s x[s][p] B[s][n], w = dt * decay to the chunk end;
//                    x w is split into bf16 high and low parts, so S keeps fp32 accuracy
//                    grid (chunks * P/64 tiles * N/128 tiles, heads, batch)
//   ssd_state_pass   the fp32 state runs through the chunks; each chunk's incoming state in bf16
//                    grid (P*N/1024, heads, batch)
//   ssd_chunk_scan   y = (CB o exp(segsum) o dt) x + exp(cum) C h_in + D x, a whole chunk a block
//                    grid (chunks * P/64 tiles, heads, batch)
// and ssd_step, the plain recurrence of one token (ssd_step_gated: the same for a decode step, with Mamba-2's gated
// norm applied up to its scale, see below). P and N are padded to whole tiles (zeros); rows are loaded 8
// values at a time, so P and N must be multiples of 8 (the host runs ssd_step otherwise).
// Workspaces of one super-chunk: cb (activation type) [batch, chunks, groups, SQ, SQ], states fp32 and incoming
// states (activation type) [batch, chunks, heads, P, N], decay fp32 [batch, heads, chunks].
#include "common.cuh"

#define SQ 256       // tokens per chunk; chunk_state and chunk_scan run SQ threads
#define XP 72        // shared-memory pitch (bf16) of 64-wide tiles: 144 bytes, so ldmatrix rows hit distinct banks
#define CB_PAIRS 10  // (row tile, column tile) pairs of 64 x 64 on or below the diagonal of SQ x SQ
#define QT 64        // tokens chunk_state stages at a time (in two alternating stages)
#define NP 136       // chunk_state's pitch of 128-wide B tiles

__device__ __forceinline__ int round64(int n) { return (n + 63) / 64 * 64; }

// 16 bytes from base + offset (bf16 elements) into shared memory, asynchronously; zeros when !ok.
__device__ __forceinline__ void copy16(act* dst, const act* base, i64 offset, bool ok) {
    const act* src = ok ? base + offset : base;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(smem_address(dst)), "l"(src),
                 "r"(ok ? 16 : 0));
}

__device__ __forceinline__ void copies_wait() {
    asm volatile("cp.async.commit_group;\n\tcp.async.wait_group 0;" ::: "memory");
}

__device__ __forceinline__ float2 unpack(unsigned u) { return act2_to_float2(*(act2*)&u); }

// The bf16 pair u scaled by w, as bf16 high parts and the bf16 remainders: hi + lo = u * w to ~2^-16.
__device__ __forceinline__ void split(unsigned u, float w, unsigned& hi, unsigned& lo) {
    float2 f = unpack(u);
    float v0 = f.x * w, v1 = f.y * w;
    hi = pack_act(v0, v1);
    float2 h = unpack(hi);
    lo = pack_act(v0 - h.x, v1 - h.y);
}

// step[t] = clamp(softplus(dt + bias), dtMin, dtMax) for the chunk's len tokens (0 past them) and the inclusive sum
// cum[t] = sum over s <= t of step[s] * A. One thread per token: blockDim.x must be SQ.
__device__ void chunk_steps(const act* dt, const float* dtBias, const float* A, i64 row0, int heads, int h, int len,
                            float dtMin, float dtMax, float* step, float* cum) {
    __shared__ float warpTotals[SQ / 32];
    int t = threadIdx.x, lane = t & 31, warp = t >> 5;
    float s = t < len ? fminf(fmaxf(softplus(ld(dt, (row0 + t) * heads + h) + dtBias[h]), dtMin), dtMax) : 0.0f;
    float v = s * A[h];
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        float u = __shfl_up_sync(0xffffffffu, v, o);
        if (lane >= o) v += u;
    }
    if (lane == 31) warpTotals[warp] = v;
    step[t] = s;
    __syncthreads();
    for (int w = 0; w < warp; w++) v += warpTotals[w];
    cum[t] = v;
    __syncthreads();
}

// 128 threads: warp w computes rows 16w..16w+15 of the 64 x 64 tile (ti, si), si <= ti, over all of N.
extern "C" __global__ void __launch_bounds__(128) ssd_chunk_cb(const act* B, const act* C, act* cb, int tokens,
                                                                int t0, int span, int groups, int N) {
    grid_dependency_sync();
    extern __shared__ __align__(16) unsigned char raw[];
    int pitch = round64(N) + 8, vecs = round64(N) / 8;
    act* cs = (act*)raw;       // [64][pitch]: C rows of tile ti
    act* bs = cs + 64 * pitch;  // [64][pitch]: B rows of tile si
    int c = blockIdx.x / CB_PAIRS, pair = blockIdx.x % CB_PAIRS, g = blockIdx.y, b = blockIdx.z;
    int chunks = gridDim.x / CB_PAIRS, len = min(SQ, span - c * SQ);
    int ti = 0;
    while ((ti + 1) * (ti + 2) / 2 <= pair) ti++;
    int si = pair - ti * (ti + 1) / 2;
    i64 row0 = (i64)b * tokens + t0 + c * SQ;
    for (int i = threadIdx.x; i < 64 * vecs; i += blockDim.x) {
        int r = i / vecs, n = i % vecs * 8, tc = ti * 64 + r, tb = si * 64 + r;
        copy16(cs + r * pitch + n, C, ((row0 + tc) * groups + g) * N + n, tc < len && n < N);
        copy16(bs + r * pitch + n, B, ((row0 + tb) * groups + g) * N + n, tb < len && n < N);
    }
    copies_wait();
    __syncthreads();
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    float acc[8][4] = {};
    for (int k = 0; k < vecs * 8; k += 16) {
        unsigned a[4];
        ldmatrix(a, cs + (warp * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * pitch + k + (lane >> 4) * 8);
#pragma unroll
        for (int j = 0; j < 4; j++) {
            unsigned f[4];
            ldmatrix(f, bs + (j * 16 + (lane & 7) + (lane >> 4) * 8) * pitch + k + ((lane >> 3) & 1) * 8);
            mma(acc[2 * j], a, f[0], f[1]);
            mma(acc[2 * j + 1], a, f[2], f[3]);
        }
    }
    act* dst = cb + (((i64)b * chunks + c) * groups + g) * SQ * SQ;
    int r = ti * 64 + warp * 16 + (lane >> 2);
#pragma unroll
    for (int j = 0; j < 8; j++) {
        int s = si * 64 + j * 8 + 2 * (lane & 3);
        *(unsigned*)(dst + r * SQ + s) = pack_act(acc[j][0], acc[j][1]);
        *(unsigned*)(dst + (r + 8) * SQ + s) = pack_act(acc[j][2], acc[j][3]);
    }
}

// One 64 x 128 tile (p tile, n tile) of a chunk's state; warp w computes p 32 (w / 4).., n 32 (w % 4)... The chunk
// is taken in steps of QT tokens through two stages of shared memory: while the warps multiply one stage, the next
// step's B tile is copied asynchronously into the other and its x values are loaded into registers, then split
// (x w into bf16 high and low parts, once per element) into that stage.
extern "C" __global__ void __launch_bounds__(SQ, 3) ssd_chunk_state(const act* x, const act* dt, const float* dtBias,
                                                                 const float* A, const act* B, float* states,
                                                                 float* decay, int tokens, int t0, int span,
                                                                 int heads, int P, int groups, int N, float dtMin,
                                                                 float dtMax) {
    grid_dependency_sync();
    extern __shared__ __align__(16) unsigned char raw[];
    float* step = (float*)raw;
    float* cum = step + SQ;
    float* w = cum + SQ;                 // dt * exp(cum[end] - cum[s])
    act* stages = (act*)(w + SQ);        // two stages of hi [QT][XP] (bf16(x w) of the p tile), lo [QT][XP]
    const int stageSize = QT * (2 * XP + NP);  // (bf16(x w - hi)) and B [QT][NP] (B of the n tile)
    int nTiles = (N + 127) / 128, tiles = round64(P) / 64 * nTiles;
    int c = blockIdx.x / tiles, pt = blockIdx.x % tiles / nTiles, nt = blockIdx.x % nTiles;
    int h = blockIdx.y, b = blockIdx.z, g = h / (heads / groups), chunks = gridDim.x / tiles;
    int len = min(SQ, span - c * SQ), steps = (len + QT - 1) / QT;
    i64 row0 = (i64)b * tokens + t0 + c * SQ;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, tq = lane & 3;
    int pw = (warp >> 2) * 32, nw = (warp & 3) * 32;
    bool busy = nt * 128 + nw < N;  // warp-uniform: this warp's columns hold state
    uint4 xv[QT * 8 / SQ];
    // Step q's B tile into its stage (asynchronous; committed by the next copies_wait) and its x values into xv.
    auto load = [&](int q) {
        act* bs = stages + (q & 1) * stageSize + 2 * QT * XP;
        for (int i = threadIdx.x; i < QT * 16; i += blockDim.x) {
            int s = q * QT + (i >> 4), v = (i & 15) * 8, n = nt * 128 + v;
            copy16(bs + (i >> 4) * NP + v, B, ((row0 + s) * groups + g) * N + n, s < len && n < N);
        }
#pragma unroll
        for (int k = 0; k < QT * 8 / SQ; k++) {
            int i = threadIdx.x + k * SQ, s = q * QT + (i >> 3), p = pt * 64 + (i & 7) * 8;
            xv[k] = s < len && p < P ? *(const uint4*)(x + ((row0 + s) * heads + h) * P + p) : make_uint4(0, 0, 0, 0);
        }
    };
    // xv (step q's x) scaled by w, split into the stage's high and low tiles.
    auto split_x = [&](int q) {
        act* hi = stages + (q & 1) * stageSize;
        act* lo = hi + QT * XP;
#pragma unroll
        for (int k = 0; k < QT * 8 / SQ; k++) {
            int i = threadIdx.x + k * SQ, r = i >> 3, v = (i & 7) * 8;
            float ws = w[q * QT + r];
            uint4 h4, l4;
            split(xv[k].x, ws, h4.x, l4.x);
            split(xv[k].y, ws, h4.y, l4.y);
            split(xv[k].z, ws, h4.z, l4.z);
            split(xv[k].w, ws, h4.w, l4.w);
            *(uint4*)(hi + r * XP + v) = h4;
            *(uint4*)(lo + r * XP + v) = l4;
        }
    };
    load(0);
    chunk_steps(dt, dtBias, A, row0, heads, h, len, dtMin, dtMax, step, cum);
    float end = cum[SQ - 1];
    w[threadIdx.x] = step[threadIdx.x] * expf(end - cum[threadIdx.x]);
    if (threadIdx.x == 0 && blockIdx.x % tiles == 0) decay[((i64)b * heads + h) * chunks + c] = expf(end);
    __syncthreads();
    split_x(0);
    float acc[2][4][4] = {};
    for (int q = 0; q < steps; q++) {
        copies_wait();
        __syncthreads();  // stage q is complete, and every warp is done with stage q - 1 (the next one to fill)
        if (q + 1 < steps) load(q + 1);
        const act* hi = stages + (q & 1) * stageSize;
        const act* lo = hi + QT * XP;
        const act* bs = lo + QT * XP;
        for (int s0 = 0; busy && s0 < min(QT, len - q * QT); s0 += 16) {
            unsigned f[2][4];
#pragma unroll
            for (int j = 0; j < 2; j++)
                ldmatrix_trans(f[j], bs + (s0 + (lane & 7) + ((lane >> 3) & 1) * 8) * NP + nw + j * 16 + (lane >> 4) * 8);
#pragma unroll
            for (int m = 0; m < 2; m++) {
                unsigned ah[4], al[4];
                int offset = (s0 + (lane & 7) + (lane >> 4) * 8) * XP + pw + m * 16 + ((lane >> 3) & 1) * 8;
                ldmatrix_trans(ah, hi + offset);
                ldmatrix_trans(al, lo + offset);
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    mma(acc[m][j], ah, f[j >> 1][2 * (j & 1)], f[j >> 1][2 * (j & 1) + 1]);
                    mma(acc[m][j], al, f[j >> 1][2 * (j & 1)], f[j >> 1][2 * (j & 1) + 1]);
                }
            }
        }
        if (q + 1 < steps) split_x(q + 1);
    }
    float* dst = states + (((i64)b * chunks + c) * heads + h) * P * N;
#pragma unroll
    for (int m = 0; m < 2; m++)
#pragma unroll
        for (int j = 0; j < 4; j++) {
            int p = pt * 64 + pw + m * 16 + (lane >> 2), n = nt * 128 + nw + j * 8 + 2 * tq;
            if (n >= N) continue;
            if (p < P) *(float2*)(dst + (i64)p * N + n) = make_float2(acc[m][j][0], acc[m][j][1]);
            if (p + 8 < P) *(float2*)(dst + (i64)(p + 8) * N + n) = make_float2(acc[m][j][2], acc[m][j][3]);
        }
}

// The fp32 state runs through the chunks: each chunk's incoming state is written to hin (bf16, the scan's operand),
// then state = state * decay + the chunk's own state. Four consecutive elements a thread; sixteen chunks' states
// are read ahead of the sequential update, so that the loads overlap.
extern "C" __global__ void ssd_state_pass(const float* __restrict__ states, const float* __restrict__ decay,
                                          float* __restrict__ state, act* __restrict__ hin, int chunks, int heads,
                                          int size) {
    grid_dependency_sync();
    int i = (blockIdx.x * blockDim.x + threadIdx.x) * 4, h = blockIdx.y, b = blockIdx.z;
    if (i >= size) return;
    const float* factors = decay + ((i64)b * heads + h) * chunks;
    float4* s = (float4*)(state + ((i64)b * heads + h) * size + i);
    i64 first = ((i64)b * chunks * heads + h) * size + i, stride = (i64)heads * size;
    float4 run = *s;
    for (int c0 = 0; c0 < chunks; c0 += 16) {
        float4 own[16];
#pragma unroll
        for (int k = 0; k < 16; k++) {
            own[k] = c0 + k < chunks ? *(const float4*)(states + first + (c0 + k) * stride) : make_float4(0, 0, 0, 0);
        }
#pragma unroll
        for (int k = 0; k < 16; k++) {
            if (c0 + k < chunks) {
                *(uint2*)(hin + first + (c0 + k) * stride) = make_uint2(pack_act(run.x, run.y), pack_act(run.z, run.w));
                float f = factors[c0 + k];
                run = make_float4(run.x * f + own[k].x, run.y * f + own[k].y, run.z * f + own[k].z,
                                  run.w * f + own[k].w);
            }
        }
    }
    *s = run;
}

// Offset of x[r][col] in chunk_scan's x tile: rows of 64 values (8 units of 16 bytes), unit u of row r stored at
// u ^ f(r) with f distinct over the rows {0, 1, 4, 5, 8, 9, 12, 13} (and {2, 3, 6, 7, ...}) that one permuted
// ldmatrix reads, so that those rows hit distinct banks.
__device__ __forceinline__ int xo(int r, int col) {
    return r * 64 + ((((col >> 3) ^ (((r >> 1) & 6) | (r & 1)))) << 3) + (col & 7);
}

// One chunk, p tile pt, of one head. The chunk's 16 row tiles are paired so that every warp has the same work: warp
// w computes row tiles 15 - w, then w (the intra-chunk product of tile r spans r + 1 column tiles). Per row tile:
// first the inter-chunk term C h_in^T scaled by exp(cum[t]), then the intra-chunk term M x over the columns s <= t,
// M[t][s] = CB[t][s] exp(cum[t] - cum[s]) step[s] = CB[t][s] 2^(cum2[t] - v[s]) with cum2 = cum log2(e) and
// v[s] = cum2[s] - log2(step[s]) precomputed per column (v = +inf where step = 0, past the chunk's end), then D x.
// Operands that each warp uses alone (its C rows, its CB rows) come straight from global memory (L2: every head of a
// group reads them) in a permuted k order, so that a thread's fragment values are contiguous: in a 16-wide k step,
// the mma's k = 2q, 2q + 1, 2q + 8, 2q + 9 of lane quad position q are the physical columns 4q .. 4q + 3 (CB), or,
// over two k steps of C, 8q .. 8q + 3 and 8q + 4 .. 8q + 7. The shared operands (x, the incoming state) are read with
// the same permutation: x by ldmatrix with permuted row addresses, the state by 16-byte loads.
extern "C" __global__ void __launch_bounds__(SQ, 3) ssd_chunk_scan(const act* x, const act* dt, const float* dtBias,
                                                                const float* A, const act* C, const float* D,
                                                                const act* cb, const act* hin, act* out,
                                                                int tokens, int t0, int span, int heads, int P,
                                                                int groups, int N, float dtMin, float dtMax) {
    grid_dependency_sync();
    extern __shared__ __align__(16) unsigned char raw[];
    int pitch = round64(N) + 32, vecs = round64(N) / 8, pTiles = round64(P) / 64;
    float* v = (float*)raw;       // step, then cum2 - log2(step)
    float* cum = v + SQ;          // cum, then cum2 = cum log2(e)
    act* xs = (act*)(cum + SQ);   // [SQ][64], swizzled (xo): x of the p tile
    act* hs = xs + SQ * 64;       // [64][pitch]: incoming state, rows p of the tile; pitch = 16 words mod 32 banks
    int c = blockIdx.x / pTiles, pt = blockIdx.x % pTiles;
    int h = blockIdx.y, b = blockIdx.z, g = h / (heads / groups), chunks = gridDim.x / pTiles;
    int len = min(SQ, span - c * SQ);
    i64 row0 = (i64)b * tokens + t0 + c * SQ;
    for (int i = threadIdx.x; i < SQ * 8; i += blockDim.x) {
        int s = i >> 3, u = (i & 7) * 8, p = pt * 64 + u;
        copy16(xs + xo(s, u), x, ((row0 + s) * heads + h) * P + p, s < len && p < P);
    }
    i64 h0 = (((i64)b * chunks + c) * heads + h) * P * N;
    for (int i = threadIdx.x; i < 64 * vecs; i += blockDim.x) {
        int r = i / vecs, n = i % vecs * 8, p = pt * 64 + r;
        copy16(hs + r * pitch + n, hin, h0 + (i64)p * N + n, p < P && n < N);
    }
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, tq = lane & 3;
    // This warp's C rows (those of row tile r0 / 16), 32 columns at a time.
    const act* cChunk = C + (row0 * groups + g) * N + 8 * tq;
    i64 cPitch = (i64)groups * N;
    auto loadC = [&](int r0, int n0, uint4& ua, uint4& ub) {
        int ta = r0 + (lane >> 2), tb = ta + 8;
        bool inN = n0 + 8 * tq < N;
        ua = ta < len && inN ? *(const uint4*)(cChunk + ta * cPitch + n0) : make_uint4(0, 0, 0, 0);
        ub = tb < len && inN ? *(const uint4*)(cChunk + tb * cPitch + n0) : make_uint4(0, 0, 0, 0);
    };
    int r0 = (15 - warp) * 16;
    uint4 ua, ub;
    loadC(r0, 0, ua, ub);  // the first tile's first loads run while the tiles are staged
    chunk_steps(dt, dtBias, A, row0, heads, h, len, dtMin, dtMax, v, cum);
    float cum2 = cum[threadIdx.x] * 1.4426950408889634f;
    cum[threadIdx.x] = cum2;
    v[threadIdx.x] = cum2 - __log2f(v[threadIdx.x]);
    copies_wait();
    __syncthreads();
    const act* cbChunk = cb + (((i64)b * chunks + c) * groups + g) * SQ * SQ + 4 * tq;
    // x rows s0 + 4q + {0, 1} give the mma's k = 2q, 2q + 1 (matrices 0 and 2), s0 + 4q + {2, 3} its k = 2q + 8, 2q + 9.
    int xRow = ((lane & 7) >> 1) * 4 + (lane & 1) + ((lane >> 3) & 1) * 2, xCol = (lane >> 4) * 8;
    float d = D[h];
    for (int pass = 0; pass < 2; pass++, r0 = warp * 16) {
        if (r0 >= len) continue;
        if (pass == 1) loadC(r0, 0, ua, ub);
        int ta = r0 + (lane >> 2), tb = ta + 8;
        float acc[8][4] = {};
        for (int n0 = 0; n0 < vecs * 8; n0 += 32) {
            uint4 na, nb;
            loadC(r0, n0 + 32 < vecs * 8 ? n0 + 32 : n0, na, nb);
            unsigned a0[4] = {ua.x, ub.x, ua.y, ub.y}, a1[4] = {ua.z, ub.z, ua.w, ub.w};
#pragma unroll
            for (int j = 0; j < 8; j++) {
                uint4 f = *(const uint4*)(hs + (j * 8 + (lane >> 2)) * pitch + n0 + 8 * tq);
                mma(acc[j], a0, f.x, f.y);
                mma(acc[j], a1, f.z, f.w);
            }
            ua = na;
            ub = nb;
        }
        float cumA = cum[ta], cumB = cum[tb], ea = exp2f(cumA), eb = exp2f(cumB);
#pragma unroll
        for (int j = 0; j < 8; j++) {
            acc[j][0] *= ea;
            acc[j][1] *= ea;
            acc[j][2] *= eb;
            acc[j][3] *= eb;
        }
        const act* rowA = cbChunk + ta * SQ;
        const act* rowB = rowA + 8 * SQ;
        uint2 ga = *(const uint2*)rowA, gb = *(const uint2*)rowB;
        for (int s0 = 0; s0 <= r0; s0 += 16) {
            uint2 ca = ga, cbv = gb;
            if (s0 + 16 <= r0) {
                ga = *(const uint2*)(rowA + s0 + 16);
                gb = *(const uint2*)(rowB + s0 + 16);
            }
            int s = s0 + 4 * tq;
            float4 vs = *(const float4*)(v + s);
            float2 a01 = unpack(ca.x), a23 = unpack(ca.y), b01 = unpack(cbv.x), b23 = unpack(cbv.y);
            float m[8] = {a01.x * ex2(cumA - vs.x), a01.y * ex2(cumA - vs.y),
                          b01.x * ex2(cumB - vs.x), b01.y * ex2(cumB - vs.y),
                          a23.x * ex2(cumA - vs.z), a23.y * ex2(cumA - vs.w),
                          b23.x * ex2(cumB - vs.z), b23.y * ex2(cumB - vs.w)};
            if (s0 == r0) {  // the diagonal tile: only s <= t (above it the exponent may be +inf)
#pragma unroll
                for (int e = 0; e < 8; e++) {
                    int col = s + (e & 1) + (e >> 2) * 2, row = e & 2 ? tb : ta;
                    if (col > row) m[e] = 0.0f;
                }
            }
            unsigned a[4] = {pack_act(m[0], m[1]), pack_act(m[2], m[3]), pack_act(m[4], m[5]), pack_act(m[6], m[7])};
#pragma unroll
            for (int j = 0; j < 4; j++) {
                unsigned f[4];
                ldmatrix_trans(f, xs + xo(s0 + xRow, j * 16 + xCol));
                mma(acc[2 * j], a, f[0], f[1]);
                mma(acc[2 * j + 1], a, f[2], f[3]);
            }
        }
#pragma unroll
        for (int j = 0; j < 8; j++) {
            int pl = j * 8 + 2 * tq, p = pt * 64 + pl;
            if (p >= P) continue;
            if (ta < len) {
                float2 xv = unpack(*(const unsigned*)(xs + xo(ta, pl)));
                *(unsigned*)(out + ((row0 + ta) * heads + h) * P + p) = pack_act(acc[j][0] + d * xv.x, acc[j][1] + d * xv.y);
            }
            if (tb < len) {
                float2 xv = unpack(*(const unsigned*)(xs + xo(tb, pl)));
                *(unsigned*)(out + ((row0 + tb) * heads + h) * P + p) = pack_act(acc[j][2] + d * xv.x, acc[j][3] + d * xv.y);
            }
        }
    }
}

// The plain recurrence, token by token: h = exp(dt A) h + dt x B; y = C.h + D x. Used for one token (decode) and
// for head or state sizes the chunked kernels do not take. Grid (ceil(P / 8), heads, batch); 8 warps, one per p;
// lane holds n = lane + 32 k, four at a time. The parameters and the first four states of each lane are loaded
// before grid_dependency_sync (the states were last written by an earlier step's kernel, which has completed), so
// that in a recorded step those loads overlap the end of the kernel before.
//
// GATED (ssd_step_gated, one token): the output is Mamba-2's gated RMSNorm of one group up to its scale, y *
// silu(gate) * normWeight, and each block stores the sum of the squares the norm takes (of y * silu(gate), or of y
// when normBeforeGate) of its 8 p, in a fixed order, as squares[b][block] (blocks numbered x + gridDim.x y); the out
// projection (gemv.cu's gemv_presummed) applies the scale, so that it needs no pass over the row before its product.
template <bool GATED>
__device__ __forceinline__ void ssd_step_body(const act* x, const act* dt, const float* dtBias, const float* A,
                                              const act* B, const act* C, const float* D, float* state, act* out,
                                              int tokens, int heads, int P, int groups, int N, float dtMin,
                                              float dtMax, const act* gate, const float* normWeight,
                                              int normBeforeGate, float* squares) {
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int p = blockIdx.x * 8 + warp, h = blockIdx.y, b = blockIdx.z, g = h / (heads / groups);
    bool valid = p < P;
    float* hs = state + (((i64)b * heads + h) * P + min(p, P - 1)) * N;
    float early[4];
#pragma unroll
    for (int i = 0; i < 4; i++) early[i] = valid && lane + 32 * i < N ? hs[lane + 32 * i] : 0.0f;
    float a = A[h], bias = dtBias[h], d = D[h];
    float weight = GATED && valid ? normWeight[h * P + p] : 0.0f;
    grid_dependency_sync();
    if (!GATED && !valid) return;
    __shared__ float blockSquares[8];
    for (int t = 0; t < tokens; t++) {
        if (GATED && !valid) break;
        i64 row = (i64)b * tokens + t;
        const act* bRow = B + row * groups * N + (i64)g * N;
        const act* cRow = C + row * groups * N + (i64)g * N;
        // B, C and the state of four n (n0 + 32 i) at a time, all loaded before any is used or stored, and the
        // first four together with dt and x: one round trip per token rather than one per n behind each store.
        float bv[4], cv[4], old[4];
        auto load = [&](int n0) {
#pragma unroll
            for (int i = 0; i < 4; i++) {
                int n = n0 + 32 * i;
                bool ok = n < N;
                bv[i] = ok ? ld(bRow, n) : 0.0f;
                cv[i] = ok ? ld(cRow, n) : 0.0f;
                old[i] = !ok ? 0.0f : t == 0 && n0 == lane ? early[i] : hs[n];
            }
        };
        i64 at = row * heads * P + (i64)h * P + p;
        float rawStep = ld(dt, row * heads + h), xv = ld(x, at);
        float gv = GATED ? ld(gate, at) : 0.0f;
        load(lane);
        float step = fminf(fmaxf(softplus(rawStep + bias), dtMin), dtMax);
        float dA = expf(step * a), coef = step * xv, y = 0.0f;
        for (int n0 = lane;;) {
#pragma unroll
            for (int i = 0; i < 4; i++) {
                int n = n0 + 32 * i;
                if (n >= N) break;
                float v = dA * old[i] + coef * bv[i];
                hs[n] = v;
                y += v * cv[i];
            }
            n0 += 128;
            if (n0 >= N) break;
            load(n0);
        }
        y = warp_sum(y);
        if (GATED) {
            float full = y + d * xv, gated = full * fast_silu(gv), normed = normBeforeGate ? full : gated;
            if (lane == 0) {
                st(out, at, gated * weight);
                blockSquares[warp] = normed * normed;
            }
        } else if (lane == 0) {
            st(out, at, y + d * xv);
        }
    }
    if (GATED) {  // one token; warps past P add nothing
        if (!valid && lane == 0) blockSquares[warp] = 0.0f;
        __syncthreads();
        if (threadIdx.x == 0) {
            float total = 0.0f;
#pragma unroll
            for (int w = 0; w < 8; w++) total += blockSquares[w];
            squares[(i64)b * gridDim.x * gridDim.y + blockIdx.y * gridDim.x + blockIdx.x] = total;
        }
    }
}

extern "C" __global__ void ssd_step(const act* x, const act* dt, const float* dtBias, const float* A,
                                    const act* B, const act* C, const float* D, float* state, act* out, int tokens,
                                    int heads, int P, int groups, int N, float dtMin, float dtMax) {
    ssd_step_body<false>(x, dt, dtBias, A, B, C, D, state, out, tokens, heads, P, groups, N, dtMin, dtMax, nullptr,
                         nullptr, 0, nullptr);
}

// One token per sequence; gate [batch, heads P] (the activation type), normWeight [heads P], squares [batch,
// ceil(P / 8) heads] fp32.
extern "C" __global__ void ssd_step_gated(const act* x, const act* dt, const float* dtBias, const float* A,
                                          const act* B, const act* C, const float* D, float* state, act* out,
                                          int heads, int P, int groups, int N, float dtMin, float dtMax,
                                          const act* gate, const float* normWeight, int normBeforeGate,
                                          float* squares) {
    ssd_step_body<true>(x, dt, dtBias, A, B, C, D, state, out, 1, heads, P, groups, N, dtMin, dtMax, gate,
                        normWeight, normBeforeGate, squares);
}
