// Row normalisations: RMSNorm and the gated RMSNorm of Mamba-2 mixers. One block per row (or row group).
#include "common.cuh"

// out = x / sqrt(mean(x^2) + eps) * weight (weight may be null); out may alias x. Eight elements per thread with
// 16-byte loads where the row allows.
extern "C" __global__ void rmsnorm(const act* x, const float* weight, float eps, act* out, int cols) {
    grid_dependency_sync();
    const act* row = x + (i64)blockIdx.x * cols;
    act* dst = out + (i64)blockIdx.x * cols;
    bool vector = cols % 8 == 0 && aligned16(row) && aligned16(dst);
    float ss = 0.0f;
    if (vector) {
        for (int c = threadIdx.x * 8; c < cols; c += blockDim.x * 8) {
            float v[8];
            ld8(row + c, v);
            for (int e = 0; e < 8; e++) ss += v[e] * v[e];
        }
    } else {
        for (int c = threadIdx.x; c < cols; c += blockDim.x) { float v = ld(row, c); ss += v * v; }
    }
    float inverse = 1.0f / sqrtf(block_sum(ss) / cols + eps);
    if (vector) {
        for (int c = threadIdx.x * 8; c < cols; c += blockDim.x * 8) {
            float v[8];
            ld8(row + c, v);
            for (int e = 0; e < 8; e++) v[e] *= inverse * (weight ? weight[c + e] : 1.0f);
            st8(dst + c, v);
        }
        return;
    }
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        float v = ld(row, c) * inverse;
        st(dst, c, weight ? v * weight[c] : v);
    }
}

// Per row and group of cols/groups features: normBeforeGate 0: rmsnorm(x * silu(z)) * w;
// 1: rmsnorm(x) * w * silu(z). Grid (rows, groups); out may alias x. Eight elements per thread where aligned.
extern "C" __global__ void gated_rmsnorm(const act* x, const act* z, const float* weight, float eps,
                                         int normBeforeGate, act* out, int cols, int groups) {
    grid_dependency_sync();
    int size = cols / groups;
    i64 base = (i64)blockIdx.x * cols + (i64)blockIdx.y * size;
    const float* w = weight + blockIdx.y * size;
    bool vector = size % 8 == 0 && aligned16(x + base) && aligned16(z + base) && aligned16(out + base);
    float ss = 0.0f;
    if (vector) {
        for (int c = threadIdx.x * 8; c < size; c += blockDim.x * 8) {
            float v[8], g[8];
            ld8(x + base + c, v);
            ld8(z + base + c, g);
            for (int e = 0; e < 8; e++) {
                float h = normBeforeGate ? v[e] : v[e] * silu(g[e]);
                ss += h * h;
            }
        }
    } else {
        for (int c = threadIdx.x; c < size; c += blockDim.x) {
            float v = normBeforeGate ? ld(x, base + c) : ld(x, base + c) * silu(ld(z, base + c));
            ss += v * v;
        }
    }
    float inverse = 1.0f / sqrtf(block_sum(ss) / size + eps);
    if (vector) {
        for (int c = threadIdx.x * 8; c < size; c += blockDim.x * 8) {
            float v[8], g[8];
            ld8(x + base + c, v);
            ld8(z + base + c, g);
            for (int e = 0; e < 8; e++) v[e] = v[e] * silu(g[e]) * inverse * w[c + e];
            st8(out + base + c, v);
        }
        return;
    }
    for (int c = threadIdx.x; c < size; c += blockDim.x) {
        float g = silu(ld(z, base + c));
        float v = normBeforeGate ? ld(x, base + c) * inverse * w[c] * g : ld(x, base + c) * g * inverse * w[c];
        st(out, base + c, v);
    }
}
