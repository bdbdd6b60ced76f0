// Memory-bound elementwise kernels: embedding lookup, sums, scaling, activations, column and row copies, type
// conversion and bias. Grid-stride loops over 64-bit element counts.
#include "common.cuh"

#define GRID_STRIDE(i, n) for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (i64)gridDim.x * blockDim.x)

// out[r, c] = table[ids[r], c] (table of any element type).
extern "C" __global__ void embedding(const void* table, int type, const int* ids, act* out, int width, i64 rows) {
    grid_dependency_sync();
    GRID_STRIDE(i, rows * width) {
        i64 r = i / width, c = i % width;
        st(out, i, load_any(table, type, (i64)ids[r] * width + c));
    }
}

// Runs `vector` on every eighth index (eight elements, 16-byte loads) where every pointer is 16-byte aligned and n
// is a multiple of 8 (activation tensors always are), else `scalar` on every index.
template <typename Vector, typename Scalar>
__device__ __forceinline__ void elementwise(i64 n, bool aligned, Vector vector, Scalar scalar) {
    if (aligned && n % 8 == 0) {
        GRID_STRIDE(i8, n / 8) vector(i8 * 8);
    } else {
        GRID_STRIDE(i, n) scalar(i);
    }
}

extern "C" __global__ void add(const act* a, const act* b, act* out, i64 n) {
    grid_dependency_sync();
    elementwise(n, aligned16(a) && aligned16(b) && aligned16(out), [&](i64 i) {
        float x[8], y[8];
        ld8(a + i, x);
        ld8(b + i, y);
        for (int e = 0; e < 8; e++) x[e] += y[e];
        st8(out + i, x);
    }, [&](i64 i) { st(out, i, ld(a, i) + ld(b, i)); });
}

extern "C" __global__ void scale(const act* x, float factor, act* out, i64 n) {
    grid_dependency_sync();
    elementwise(n, aligned16(x) && aligned16(out), [&](i64 i) {
        float v[8];
        ld8(x + i, v);
        for (int e = 0; e < 8; e++) v[e] *= factor;
        st8(out + i, v);
    }, [&](i64 i) { st(out, i, ld(x, i) * factor); });
}

extern "C" __global__ void activation(int kind, const act* x, act* out, i64 n) {
    grid_dependency_sync();
    elementwise(n, aligned16(x) && aligned16(out), [&](i64 i) {
        float v[8];
        ld8(x + i, v);
        for (int e = 0; e < 8; e++) v[e] = activate(kind, v[e]);
        st8(out + i, v);
    }, [&](i64 i) { st(out, i, activate(kind, ld(x, i))); });
}

// out = act(gate) * up.
extern "C" __global__ void gated_activation(int kind, const act* gate, const act* up, act* out, i64 n) {
    grid_dependency_sync();
    elementwise(n, aligned16(gate) && aligned16(up) && aligned16(out), [&](i64 i) {
        float g[8], u[8];
        ld8(gate + i, g);
        ld8(up + i, u);
        for (int e = 0; e < 8; e++) g[e] = activate(kind, g[e]) * u[e];
        st8(out + i, g);
    }, [&](i64 i) { st(out, i, activate(kind, ld(gate, i)) * ld(up, i)); });
}

// dst[r, dstOffset + c] = src[r, srcOffset + c] for c < count (split and concatenation of column blocks).
extern "C" __global__ void copy_columns(const act* src, int srcWidth, int srcOffset, act* dst, int dstWidth,
                                        int dstOffset, int count, i64 rows) {
    grid_dependency_sync();
    GRID_STRIDE(i, rows * count) {
        i64 r = i / count, c = i % count;
        dst[r * dstWidth + dstOffset + c] = src[r * srcWidth + srcOffset + c];
    }
}

// out[i, c] = src[rows[i], c].
extern "C" __global__ void gather_rows(const act* src, const int* rows, act* out, int width, i64 n) {
    grid_dependency_sync();
    GRID_STRIDE(i, n * width) {
        i64 r = i / width, c = i % width;
        out[i] = src[(i64)rows[r] * width + c];
    }
}

// out[rows[i], c] += weights[i] * src[i, c] (rows distinct).
extern "C" __global__ void scatter_add_rows(const act* src, const int* rows, const float* weights, act* out,
                                            int width, i64 n) {
    grid_dependency_sync();
    GRID_STRIDE(i, n * width) {
        i64 r = i / width, c = i % width;
        i64 o = (i64)rows[r] * width + c;
        st(out, o, ld(out, o) + weights[r] * ld(src, i));
    }
}

// dst = src converted between element types.
extern "C" __global__ void convert(const void* src, int srcType, void* dst, int dstType, i64 n) {
    grid_dependency_sync();
    GRID_STRIDE(i, n) store_any(dst, dstType, i, load_any(src, srcType, i));
}

// out[r, c] = src[r, c] + bias[c] (bias may be null; src of any type, may alias out).
extern "C" __global__ void bias_store(const void* src, int srcType, const float* bias, act* out, int cols,
                                      i64 rows, int accumulate) {
    grid_dependency_sync();
    GRID_STRIDE(i, rows * cols) {
        float v = load_any(src, srcType, i);
        if (bias) v += bias[i % cols];
        if (accumulate) v += ld(out, i);
        st(out, i, v);
    }
}

// Row-wise argmax of x [rows, columns] into out[rows]: the first index of the largest value, NaN never winning, 0
// when no value exceeds -inf (Greedy.argmax's rule). One block of 1024 threads per row; each thread scans columns
// t, t + 1024, ... keeping its first maximum, then the block merges (value, index) pairs, ties to the lower index.
extern "C" __global__ void __launch_bounds__(1024) argmax_rows(const act* x, int columns, int* out) {
    __shared__ float values[32];
    __shared__ int indices[32];
    grid_dependency_sync();
    const act* row = x + (i64)blockIdx.x * columns;
    const int none = 0x7fffffff;
    float best = NEG_INF;
    int index = none;
    for (int c = threadIdx.x; c < columns; c += blockDim.x) {
        float v = ld(row, c);
        if (v > best) {
            best = v;
            index = c;
        }
    }
    auto merge = [&](float v, int i) {
        if (v > best || (v == best && i < index)) {
            best = v;
            index = i;
        }
    };
    for (int o = 16; o > 0; o >>= 1) merge(__shfl_xor_sync(0xffffffffu, best, o), __shfl_xor_sync(0xffffffffu, index, o));
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) {
        values[warp] = best;
        indices[warp] = index;
    }
    __syncthreads();
    if (warp == 0) {
        int warps = blockDim.x >> 5;
        best = lane < warps ? values[lane] : NEG_INF;
        index = lane < warps ? indices[lane] : none;
        for (int o = 16; o > 0; o >>= 1)
            merge(__shfl_xor_sync(0xffffffffu, best, o), __shfl_xor_sync(0xffffffffu, index, o));
        if (lane == 0) out[blockIdx.x] = index == none ? 0 : index;
    }
}
