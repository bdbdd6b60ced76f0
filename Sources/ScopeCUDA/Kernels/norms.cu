// Row normalisations: RMSNorm and the gated RMSNorm of Mamba-2 mixers. One block per row (or row group).
#include "common.cuh"

// out = x / sqrt(mean(x^2) + eps) * weight (weight may be null); out may alias x.
extern "C" __global__ void rmsnorm(const bf16* x, const float* weight, float eps, bf16* out, int cols) {
    const bf16* row = x + (i64)blockIdx.x * cols;
    bf16* dst = out + (i64)blockIdx.x * cols;
    float ss = 0.0f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) { float v = ld(row, c); ss += v * v; }
    float inverse = 1.0f / sqrtf(block_sum(ss) / cols + eps);
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        float v = ld(row, c) * inverse;
        st(dst, c, weight ? v * weight[c] : v);
    }
}

// Per row and group of cols/groups features: normBeforeGate 0: rmsnorm(x * silu(z)) * w;
// 1: rmsnorm(x) * w * silu(z). Grid (rows, groups); out may alias x.
extern "C" __global__ void gated_rmsnorm(const bf16* x, const bf16* z, const float* weight, float eps,
                                         int normBeforeGate, bf16* out, int cols, int groups) {
    int size = cols / groups;
    i64 base = (i64)blockIdx.x * cols + (i64)blockIdx.y * size;
    const float* w = weight + blockIdx.y * size;
    float ss = 0.0f;
    for (int c = threadIdx.x; c < size; c += blockDim.x) {
        float v = normBeforeGate ? ld(x, base + c) : ld(x, base + c) * silu(ld(z, base + c));
        ss += v * v;
    }
    float inverse = 1.0f / sqrtf(block_sum(ss) / size + eps);
    for (int c = threadIdx.x; c < size; c += blockDim.x) {
        float g = silu(ld(z, base + c));
        float v = normBeforeGate ? ld(x, base + c) * inverse * w[c] * g : ld(x, base + c) * g * inverse * w[c];
        st(out, base + c, v);
    }
}
