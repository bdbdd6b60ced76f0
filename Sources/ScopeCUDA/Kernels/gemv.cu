// Linear layers of decode steps (a few rows): out[r, n] = sum_k x[r, k] w[n, k] (+ bias[n]) with bf16 weights read
// once in 16-byte loads, one warp per output column, fp32 accumulation; memory bound on the weights. k a multiple
// of 8 and 16-byte aligned rows; rows <= 8. Grid ceil(n / 8); 256 threads.
#include "common.cuh"

#define MAX_ROWS 8
#define UNROLL 4

extern "C" __global__ void gemv_bf16(const bf16* x, const bf16* w, const float* bias, bf16* out, int rows, int n,
                                     int k) {
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int col = blockIdx.x * 8 + warp;
    if (col >= n) return;
    const bf16* wr = w + (i64)col * k;
    float acc[MAX_ROWS];
#pragma unroll
    for (int r = 0; r < MAX_ROWS; r++) acc[r] = 0.0f;
    // Four 16-byte weight loads in flight per lane before any is used: a decode step is bound by how many bytes
    // are in flight, not by the arithmetic.
    for (int c0 = lane * 8; c0 < k; c0 += 256 * UNROLL) {
        uint4 wv[UNROLL];
#pragma unroll
        for (int u = 0; u < UNROLL; u++) {
            int c = c0 + u * 256;
            wv[u] = c < k ? __ldg((const uint4*)(wr + c)) : make_uint4(0, 0, 0, 0);
        }
#pragma unroll
        for (int u = 0; u < UNROLL; u++) {
            int c = c0 + u * 256;
            if (c >= k) break;
            const __nv_bfloat162* wp = (const __nv_bfloat162*)&wv[u];
            float2 wf[4];
#pragma unroll
            for (int e = 0; e < 4; e++) wf[e] = __bfloat1622float2(wp[e]);
#pragma unroll
            for (int r = 0; r < MAX_ROWS; r++) {
                if (r < rows) {
                    uint4 xv = *(const uint4*)(x + (i64)r * k + c);
                    const __nv_bfloat162* xp = (const __nv_bfloat162*)&xv;
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        float2 xf = __bfloat1622float2(xp[e]);
                        acc[r] += xf.x * wf[e].x + xf.y * wf[e].y;
                    }
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < MAX_ROWS; r++) {
        if (r < rows) {
            float v = warp_sum(acc[r]);
            if (lane == 0) st(out, (i64)r * n + col, bias ? v + bias[col] : v);
        }
    }
}
