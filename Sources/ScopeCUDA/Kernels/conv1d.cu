// Causal depthwise conv1d with a rolling [batch, kernel - 1, channels] state (Conv1d.causal's contract), kernel
// size up to 8. conv1d_forward: one thread per (channel, run of `chunk` tokens, sequence), reading the kernel - 1
// inputs before its run from x or the old state; conv1d_roll then moves the newest inputs into the state (a second
// launch, so that no thread overwrites state another still reads); conv1d_step does both for one new token.
#include "common.cuh"

#define KMAX 8

// The output channels go to up to three tensors (Mamba-2's x, B and C, so that no split follows): channels
// [0, end0) to out0 (rows of end0), [end0, end1) to out1, [end1, channels) to out2; one tensor when
// end0 == channels.
extern "C" __global__ void conv1d_forward(const act* x, const float* weight, const float* bias, const act* state,
                                          act* out0, act* out1, act* out2, int end0, int end1, int tokens,
                                          int channels, int kernel, int silu_out, int chunk) {
    grid_dependency_sync();
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= channels) return;
    act* out = c < end0 ? out0 : c < end1 ? out1 : out2;
    int first = c < end0 ? 0 : c < end1 ? end0 : end1;
    int width = (c < end0 ? end0 : c < end1 ? end1 : channels) - first;
    int b = blockIdx.z, t0 = blockIdx.y * chunk, t1 = min(tokens, t0 + chunk), history = kernel - 1;
    // Right-aligned window: win[KMAX - 1] is the newest input, w the weights aligned with it.
    float w[KMAX], win[KMAX];
#pragma unroll
    for (int j = 0; j < KMAX; j++) {
        int k = j - (KMAX - kernel);
        w[j] = k >= 0 ? weight[(i64)c * kernel + k] : 0.0f;
        win[j] = 0.0f;
        // Slot j < KMAX - 1 holds input t0 - (KMAX - 1 - j).
        int index = t0 - (KMAX - 1 - j);
        if (j < KMAX - 1 && k >= 0) {
            win[j] = index >= 0 ? ld(x, ((i64)b * tokens + index) * channels + c)
                                : ld(state, ((i64)b * history + history + index) * channels + c);
        }
    }
    float bc = bias ? bias[c] : 0.0f;
    for (int t = t0; t < t1; t++) {
        win[KMAX - 1] = ld(x, ((i64)b * tokens + t) * channels + c);
        float acc = bc;
#pragma unroll
        for (int j = 0; j < KMAX; j++) acc += w[j] * win[j];
        st(out, ((i64)b * tokens + t) * width + c - first, silu_out ? silu(acc) : acc);
#pragma unroll
        for (int j = 0; j < KMAX - 1; j++) win[j] = win[j + 1];
    }
}

// state <- the last kernel - 1 inputs of (old state, x). One thread per (channel, sequence).
extern "C" __global__ void conv1d_roll(const act* x, act* state, int tokens, int channels, int kernel) {
    grid_dependency_sync();
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= channels) return;
    int b = blockIdx.y, history = kernel - 1;
    act* s = state + (i64)b * history * channels + c;
    const act* xb = x + (i64)b * tokens * channels + c;
    if (tokens >= history) {
        for (int i = 0; i < history; i++) s[(i64)i * channels] = xb[(i64)(tokens - history + i) * channels];
    } else {
        int kept = history - tokens;
        for (int i = 0; i < kept; i++) s[(i64)i * channels] = s[(i64)(i + tokens) * channels];
        for (int i = 0; i < tokens; i++) s[(i64)(kept + i) * channels] = xb[(i64)i * channels];
    }
}

// One decode step (a single new token per sequence): the output and the rolled state in one launch, since each
// thread owns its channel's whole history. One thread per (channel, sequence).
extern "C" __global__ void conv1d_step(const act* x, const float* weight, const float* bias, act* state, act* out,
                                       int channels, int kernel, int silu_out) {
    grid_dependency_sync();
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= channels) return;
    int b = blockIdx.y, history = kernel - 1;
    act* s = state + (i64)b * history * channels + c;
    float newest = ld(x, (i64)b * channels + c);
    float acc = (bias ? bias[c] : 0.0f) + weight[(i64)c * kernel + history] * newest;
    float old[KMAX];
#pragma unroll
    for (int i = 0; i < KMAX - 1; i++) old[i] = i < history ? ld(s, (i64)i * channels) : 0.0f;  // loads together
#pragma unroll
    for (int i = 0; i < KMAX - 1; i++) {
        if (i >= history) break;
        acc += weight[(i64)c * kernel + i] * old[i];
        if (i > 0) st(s, (i64)(i - 1) * channels, old[i]);
    }
    if (history > 0) st(s, (i64)(history - 1) * channels, newest);
    st(out, (i64)b * channels + c, silu_out ? silu(acc) : acc);
}
