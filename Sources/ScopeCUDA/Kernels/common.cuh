// Shared helpers of every kernel module: element access, reductions, pointwise functions.
// Activations and caches have the type `act`: bf16, or fp16 when the module is compiled with SCOPE_FP16 (the host
// compiles each module once per activation type); parameters, biases and SSM states are fp32; accumulation is fp32.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

typedef long long i64;

#ifdef SCOPE_FP16
typedef __half act;
typedef __half2 act2;
#define ACT_PTX "f16"  // the operand type of mma.sync
__device__ __forceinline__ float act_to_float(act v) { return __half2float(v); }
__device__ __forceinline__ act float_to_act(float v) { return __float2half(v); }
__device__ __forceinline__ float2 act2_to_float2(act2 v) { return __half22float2(v); }
__device__ __forceinline__ act2 floats_to_act2(float a, float b) { return __floats2half2_rn(a, b); }
#else
typedef __nv_bfloat16 act;
typedef __nv_bfloat162 act2;
#define ACT_PTX "bf16"
__device__ __forceinline__ float act_to_float(act v) { return __bfloat162float(v); }
__device__ __forceinline__ act float_to_act(float v) { return __float2bfloat16(v); }
__device__ __forceinline__ float2 act2_to_float2(act2 v) { return __bfloat1622float2(v); }
__device__ __forceinline__ act2 floats_to_act2(float a, float b) { return __floats2bfloat162_rn(a, b); }
#endif

#define NEG_INF (__int_as_float(0xff800000))

// Element type codes shared with the host (ElementType: fp32 0, bf16 1, fp16 2).
__device__ __forceinline__ float load_any(const void* p, int type, i64 i) {
    if (type == 1) return __bfloat162float(((const __nv_bfloat16*)p)[i]);
    if (type == 2) return __half2float(((const __half*)p)[i]);
    return ((const float*)p)[i];
}

__device__ __forceinline__ void store_any(void* p, int type, i64 i, float v) {
    if (type == 1) ((__nv_bfloat16*)p)[i] = __float2bfloat16(v);
    else if (type == 2) ((__half*)p)[i] = __float2half(v);
    else ((float*)p)[i] = v;
}

__device__ __forceinline__ float ld(const act* p, i64 i) { return act_to_float(p[i]); }
__device__ __forceinline__ void st(act* p, i64 i, float v) { p[i] = float_to_act(v); }

__device__ __forceinline__ bool aligned16(const void* p) { return ((unsigned long long)p & 15) == 0; }

// Eight activations packed in 16 bytes, as floats.
__device__ __forceinline__ void unpack8(uint4 raw, float* v) {
    const act2* h = (const act2*)&raw;
#pragma unroll
    for (int e = 0; e < 4; e++) {
        float2 f = act2_to_float2(h[e]);
        v[2 * e] = f.x;
        v[2 * e + 1] = f.y;
    }
}

// Eight consecutive activations as floats (16-byte aligned).
__device__ __forceinline__ void ld8(const act* p, float* v) { unpack8(*(const uint4*)p, v); }

__device__ __forceinline__ void st8(act* p, const float* v) {
    uint4 raw;
    act2* h = (act2*)&raw;
#pragma unroll
    for (int e = 0; e < 4; e++) h[e] = floats_to_act2(v[2 * e], v[2 * e + 1]);
    *(uint4*)p = raw;
}

// Programmatic dependent launch (sm_90+). Decode steps recorded as CUDA graphs launch every kernel allowed to start
// before the previous one ends; a kernel must therefore call this before it reads or writes anything the kernels
// before it touch (and before any early return, so that a grid never completes ahead of its predecessor). It waits
// for the previous grid to complete and flush, then lets the next grid launch. Without such a launch it returns at
// once. The gemv kernels issue their weight loads (constant during a step) first, so that they overlap the tail of
// the kernel before.
__device__ __forceinline__ void grid_dependency_sync() {
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Lets the next grid launch before this one's blocks have waited (grid_dependency_sync still waits for the previous
// grid, and the next grid's own wait for this one): for kernels whose blocks leave room on a multiprocessor (Mamba-1's
// decode step), so that the next kernel's blocks start sooner and issue their loads before their wait. Every block
// has started by the time the launch happens (it takes every block's signal), so the next grid never takes room
// this one's blocks need.
__device__ __forceinline__ void grid_dependents_launch() {
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Reduces over the block with a warp reduction and its identity (blockDim.x a multiple of 32, at most 1024); every
// thread gets the result.
template <float (*warp_reduce)(float)>
__device__ __forceinline__ float block_reduce(float v, float identity) {
    __shared__ float partial[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_reduce(v);
    __syncthreads();
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    return warp_reduce(lane < warps ? partial[lane] : identity);
}

__device__ __forceinline__ float block_sum(float v) { return block_reduce<warp_sum>(v, 0.0f); }

__device__ __forceinline__ float block_max(float v) { return block_reduce<warp_max>(v, NEG_INF); }

// Tensor-core helpers (attention prefill and the SSD).

__device__ __forceinline__ unsigned smem_address(const void* p) { return (unsigned)__cvta_generic_to_shared(p); }

// Two consecutive activation-type values as one register (an mma operand), loaded from global memory.
__device__ __forceinline__ unsigned pair(const act* p) { return *(const unsigned*)p; }

// The prefill attention kernels' online softmax: a row's running maximum (log2 domain) is raised only when a tile's
// scores exceed it by more than 2^RESCALE_SLACK; until then p = 2^(s - m) stays at most 2^8, harmless in fp32 sums
// and bf16 P, and the accumulators keep their scale (the rescale pass over them is skipped for most tiles).
#define RESCALE_SLACK 8.0f

// Copies 16 bytes from global to shared memory asynchronously (cp.async, bypassing L1); completes by group.
__device__ __forceinline__ void cp_async16(void* dst, const void* src) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(smem_address(dst)), "l"(src));
}

// The key and value tiles of a causal prefill (Attention.causal's contract: key j >= past is new row j - past, key
// j < past lies in the ring-buffer cache at slot j % capacity), KT rows of one KV head's D elements copied into
// shared memory by cp.async. THREADS threads move 16 bytes each per pass: this thread column `column` of rows
// `row` + ROWS_PER_PASS u, to its place for row 0 + DEST_STEP u. Rows past `last` are zero-filled. Tiles wholly
// among the new rows, and tiles in one unwrapped stretch of the cache, take short paths with this thread's row
// addresses precomputed; the few others (at `past`, at the wrap, at `last`) go row by row. Tiles are requested in
// order (keys lo, lo + KT, ...), so the cache slot is carried from tile to tile: an integer division per tile would
// cost the special-function unit the softmax's exponentials run on (three of its operations against 32 ex2 per
// thread and tile in the warpgroup kernel).
template <int D, int KT, int THREADS, int DEST_STEP>
struct PrefillTiles {
    static constexpr int ROWS_PER_PASS = THREADS / (D / 8);
    static_assert(KT % ROWS_PER_PASS == 0, "a tile is whole passes of rows");
    int row, column;
    const act *kRows, *vRows, *kSlots, *vSlots;  // this thread's row and column of key 0 (new rows), of slot 0 (cache)
    i64 kvStride;
    int past, last, capacity, slot;  // slot: the next tile's first key's

    __device__ PrefillTiles(const act* kNew, const act* vNew, const act* kCache, const act* vCache, int b,
                            int newTokens, int past_, int last_, int capacity_, i64 kvStride_, int kvOffset, int lo)
        : row(threadIdx.x / (D / 8)), column((threadIdx.x % (D / 8)) * 8), kvStride(kvStride_), past(past_),
          last(last_), capacity(capacity_), slot(capacity_ > 0 ? lo % capacity_ : 0) {
        i64 newRow = ((i64)b * newTokens - past + row) * kvStride + kvOffset + column;
        i64 cacheRow = ((i64)b * capacity + row) * kvStride + kvOffset + column;
        kRows = kNew + newRow;
        vRows = vNew + newRow;
        kSlots = kCache + cacheRow;
        vSlots = vCache + cacheRow;
    }

    // Issues the copies of keys j0 .. j0 + KT - 1 to kd and vd (this thread's places of the tile's row 0).
    __device__ __forceinline__ void load(int j0, act* kd, act* vd) {
        int here = slot;
        if (capacity >= KT) {
            slot = here + KT;
            if (slot >= capacity) slot -= capacity;
        }
        if (j0 >= past && j0 + KT - 1 <= last) {
            i64 offset = (i64)j0 * kvStride;
#pragma unroll
            for (int u = 0; u < KT / ROWS_PER_PASS; u++) {
                cp_async16(kd + DEST_STEP * u, kRows + offset + ROWS_PER_PASS * u * kvStride);
                cp_async16(vd + DEST_STEP * u, vRows + offset + ROWS_PER_PASS * u * kvStride);
            }
        } else if (j0 + KT <= past && capacity >= KT && here + KT <= capacity) {
            i64 offset = (i64)here * kvStride;
#pragma unroll
            for (int u = 0; u < KT / ROWS_PER_PASS; u++) {
                cp_async16(kd + DEST_STEP * u, kSlots + offset + ROWS_PER_PASS * u * kvStride);
                cp_async16(vd + DEST_STEP * u, vSlots + offset + ROWS_PER_PASS * u * kvStride);
            }
        } else {
#pragma unroll
            for (int u = 0; u < KT / ROWS_PER_PASS; u++) {
                int j = j0 + row + ROWS_PER_PASS * u;
                if (j <= last) {
                    bool cached = j < past;
                    i64 offset = (i64)((cached ? j % capacity : j) - row) * kvStride;
                    cp_async16(kd + DEST_STEP * u, (cached ? kSlots : kRows) + offset);
                    cp_async16(vd + DEST_STEP * u, (cached ? vSlots : vRows) + offset);
                } else {
                    *(uint4*)(kd + DEST_STEP * u) = make_uint4(0, 0, 0, 0);
                    *(uint4*)(vd + DEST_STEP * u) = make_uint4(0, 0, 0, 0);
                }
            }
        }
    }
};

// Four 8x8 16-bit matrices; lanes 8i..8i+7 give the row addresses of matrix i. Thread T receives row T / 4,
// columns 2 (T % 4) and 2 (T % 4) + 1 of each.
__device__ __forceinline__ void ldmatrix(unsigned* r, const act* row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_address(row)));
}

// As ldmatrix, transposed: thread T receives rows 2 (T % 4) and 2 (T % 4) + 1 of column T / 4.
__device__ __forceinline__ void ldmatrix_trans(unsigned* r, const act* row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_address(row)));
}

// c += a (16x16, row major) * b (16x8, column major), activation-type operands, fp32 accumulators.
__device__ __forceinline__ void mma(float* c, const unsigned* a, unsigned b0, unsigned b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32." ACT_PTX "." ACT_PTX ".f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// 2^x by the special-function unit (ex2.approx, 2 ulp; 2^-inf = 0).
__device__ __forceinline__ float ex2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

// Two floats as an activation-type pair in one register (an mma operand).
__device__ __forceinline__ unsigned pack_act(float lo, float hi) {
    act2 v = floats_to_act2(lo, hi);
    return *(unsigned*)&v;
}

// PyTorch softplus (beta 1, threshold 20).
__device__ __forceinline__ float softplus(float x) { return x > 20.0f ? x : log1pf(expf(x)); }

__device__ __forceinline__ float silu(float x) { return x / (1.0f + expf(-x)); }

// silu by the fast exponential and division (MUFU ex2 and rcp), for the causal convolutions (conv1d and the conv
// step folded into the decode gemv) and the gated norm the decode gemv folds in: their few-ulp fp32 errors vanish in
// the output's bf16 or fp16 rounding, and they take a fifth of the instructions of expf and an IEEE division, which
// would otherwise leave conv1d_forward as much issue bound as memory bound (and every decode gemv block runs its
// norm over the whole row). x / inf is 0 for the most negative inputs.
__device__ __forceinline__ float fast_silu(float x) { return __fdividef(x, 1.0f + __expf(-x)); }

// Activation codes shared with the host: silu 0, gelu 1, gelu_tanh 2, relu 3, relu2 4.
__device__ __forceinline__ float activate(int kind, float x) {
    switch (kind) {
    case 0: return silu(x);
    case 1: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    case 2: return 0.5f * x * (1.0f + tanhf(0.79788456080286536f * (x + 0.044715f * x * x * x)));
    case 3: return fmaxf(x, 0.0f);
    default: { float r = fmaxf(x, 0.0f); return r * r; }
    }
}

// Writes a warp's share of two rows of a prefill attention output divided by the rows' softmax sums: o in the MMA
// accumulator layout (o[4 n + e]: row r0 for e < 2, else r0 + 8; column 8 n + 2 tq + e % 2, n < D / 8) and l the
// lane's shares of the two sums, which its quad (lanes of equal lane / 4) adds up. Rows from `rows` on are not
// written; out points at row 0 of the head, rows `stride` apart.
template <int D>
__device__ __forceinline__ void store_attention_rows(act* out, i64 stride, int r0, int rows, const float* o,
                                                     const float* l, int tq) {
    float inv[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
        float sum = l[r];
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        sum += __shfl_xor_sync(0xffffffffu, sum, 2);
        inv[r] = 1.0f / sum;
    }
    int r1 = r0 + 8;
#pragma unroll
    for (int n = 0; n < D / 8; n++) {
        int col = n * 8 + tq * 2;
        if (r0 < rows) *(act2*)(out + r0 * stride + col) = floats_to_act2(o[4 * n] * inv[0], o[4 * n + 1] * inv[0]);
        if (r1 < rows)
            *(act2*)(out + r1 * stride + col) = floats_to_act2(o[4 * n + 2] * inv[1], o[4 * n + 3] * inv[1]);
    }
}
