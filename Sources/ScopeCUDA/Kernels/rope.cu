// Rotary position embedding.
#include "common.cuh"

// Rotary embedding, HF rotate_half, in place on [tokens, heads * headDim]: one thread per (token, head, pair).
// Positions come from `positions` or, when it is null, are base + t % period.
extern "C" __global__ void rope(act* x, int heads, int headDim, int rotaryDim, const int* positions, int base,
                                int period, const float* invFreq, float scale, i64 tokens) {
    grid_dependency_sync();
    int half = rotaryDim / 2;
    i64 total = tokens * heads * half;
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (i64)gridDim.x * blockDim.x) {
        int k = i % half;
        i64 th = i / half;
        i64 t = th / heads;
        int h = th % heads;
        float position = positions ? (float)positions[t] : (float)(base + t % period);
        float angle = position * invFreq[k];
        float c = cosf(angle) * scale, s = sinf(angle) * scale;
        act* p = x + t * heads * headDim + (i64)h * headDim;
        float a = ld(p, k), b = ld(p, k + half);
        st(p, k, a * c - b * s);
        st(p, k + half, b * c + a * s);
    }
}
