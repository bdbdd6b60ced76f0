// Mamba-1 selective scan (SelectiveScan.scan's contract): the state stays in registers while the tokens run.
// `lanes` threads (a power of two up to 32) share one channel, each holding up to 4 of its dState states
// (n = sub + k * lanes); y is reduced across them with shuffles. Grid (ceil(dInner * lanes / 128), batch); 128
// threads. Per step: dA = exp(softplus(delta) A); h = dA h + softplus(delta) B u; y = C.h + D u; y *= silu(z).
#include "common.cuh"

extern "C" __global__ void selective_scan(const bf16* u, const bf16* delta, const float* A, const bf16* B,
                                          const bf16* C, const float* D, const bf16* z, float* state, bf16* out,
                                          int tokens, int dInner, int dState, int lanes) {
    int id = blockIdx.x * blockDim.x + threadIdx.x;
    int channel = id / lanes, sub = id % lanes, b = blockIdx.y;
    bool valid = channel < dInner;
    int ch = valid ? channel : dInner - 1;  // idle threads still take part in the shuffles
    float h[4], a[4];
    float* hs = state + ((i64)b * dInner + ch) * dState;
#pragma unroll
    for (int k = 0; k < 4; k++) {
        int n = sub + k * lanes;
        h[k] = n < dState ? hs[n] : 0.0f;
        a[k] = n < dState ? A[(i64)ch * dState + n] : 0.0f;
    }
    float dskip = D[ch];
    for (int t = 0; t < tokens; t++) {
        i64 row = (i64)b * tokens + t;
        float step = softplus(ld(delta, row * dInner + ch));
        float uu = ld(u, row * dInner + ch);
        float du = step * uu;
        float y = 0.0f;
#pragma unroll
        for (int k = 0; k < 4; k++) {
            int n = sub + k * lanes;
            if (n < dState) {
                h[k] = expf(step * a[k]) * h[k] + du * ld(B, row * dState + n);
                y += ld(C, row * dState + n) * h[k];
            }
        }
        for (int o = lanes / 2; o > 0; o >>= 1) y += __shfl_xor_sync(0xffffffffu, y, o);
        if (valid && sub == 0) {
            y += dskip * uu;
            if (z) y *= silu(ld(z, row * dInner + ch));
            st(out, row * dInner + ch, y);
        }
    }
    if (valid) {
#pragma unroll
        for (int k = 0; k < 4; k++) {
            int n = sub + k * lanes;
            if (n < dState) hs[n] = h[k];
        }
    }
}
