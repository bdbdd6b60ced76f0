// Causal depthwise conv1d with a rolling [batch, kernel - 1, channels] state (Conv1d.causal's contract), kernel
// size up to 8. conv1d_forward_v{V}_k{KW}: one thread per (V adjacent channels, run of `chunk` tokens, sequence),
// reading the kernel - 1 inputs before its run from x or the old state; conv1d_roll then moves the newest inputs
// into the state (a second launch, so that no thread overwrites state another still reads); conv1d_step does both
// for one new token.
#include "common.cuh"

#define KMAX 8
#define RUN 8  // tokens whose loads conv1d_forward issues together

// One token's V adjacent channels in registers, as loaded: V = 8 by one 16-byte load (the address 16-byte aligned),
// V = 1 by one element.
template <int V> struct Row;

template <> struct Row<8> {
    uint4 bits;
    __device__ __forceinline__ void load(const act* p) { bits = *(const uint4*)p; }
    __device__ __forceinline__ void clear() { bits = make_uint4(0, 0, 0, 0); }
    __device__ __forceinline__ void unpack(float* v) const { unpack8(bits, v); }
    static __device__ __forceinline__ void store(act* p, const float* v) { st8(p, v); }
};

template <> struct Row<1> {
    act bits;
    __device__ __forceinline__ void load(const act* p) { bits = *p; }
    __device__ __forceinline__ void clear() { bits = float_to_act(0.0f); }
    __device__ __forceinline__ void unpack(float* v) const { v[0] = act_to_float(bits); }
    static __device__ __forceinline__ void store(act* p, const float* v) { st(p, 0, v[0]); }
};

// The output channels go to up to three tensors (Mamba-2's x, B and C, so that no split follows): channels
// [0, end0) to out0 (rows of end0), [end0, end1) to out1, [end1, channels) to out2; one tensor when
// end0 == channels. V = 8 needs channels, end0 and end1 multiples of 8 and x, state and the outputs 16-byte
// aligned, so that a thread's eight channels lie in one output and every row access is one aligned 16-byte access
// (the host checks); KW (4 or 8) is the largest kernel size the variant takes. Each thread walks its run RUN tokens
// at a time, the window of the last KW - 1 inputs kept in registers: the next RUN tokens' loads go out, then this
// RUN's outputs are computed and stored, so that loads stay in flight while the thread computes.
template <int V, int KW>
__device__ __forceinline__ void conv_forward(const act* x, const float* weight, const float* bias, const act* state,
                                             act* out0, act* out1, act* out2, int end0, int end1, int tokens,
                                             int channels, int kernel, int silu_out, int chunk) {
    int c = (blockIdx.x * blockDim.x + threadIdx.x) * V;
    if (c >= channels) return;
    act* out = c < end0 ? out0 : c < end1 ? out1 : out2;
    int first = c < end0 ? 0 : c < end1 ? end0 : end1;
    int width = (c < end0 ? end0 : c < end1 ? end1 : channels) - first;
    int b = blockIdx.z, t0 = blockIdx.y * chunk, t1 = min(tokens, t0 + chunk), history = kernel - 1;
    const act* xs = x + (i64)b * tokens * channels + c;
    act* os = out + (i64)b * tokens * width + c - first;
    // Right-aligned taps: w[KW - 1] multiplies the newest input, win[j] holds input t - (KW - 1 - j) before token t
    // (zero weights and inputs left of the kernel's first tap).
    float w[KW][V], win[KW - 1][V], bc[V];
#pragma unroll
    for (int j = 0; j < KW; j++) {
        int k = j - (KW - kernel);
#pragma unroll
        for (int v = 0; v < V; v++) w[j][v] = k >= 0 ? weight[(i64)(c + v) * kernel + k] : 0.0f;
    }
#pragma unroll
    for (int v = 0; v < V; v++) bc[v] = bias ? bias[c + v] : 0.0f;
#pragma unroll
    for (int j = 0; j < KW - 1; j++) {
        int index = t0 - (KW - 1 - j);
        Row<V> r;
        r.clear();
        if (j >= KW - kernel) {
            r.load(index >= 0 ? xs + (i64)index * channels
                              : state + ((i64)b * history + history + index) * channels + c);
        }
        r.unpack(win[j]);
    }
    Row<V> in[RUN], next[RUN];
#pragma unroll
    for (int u = 0; u < RUN; u++) {
        in[u].clear();
        if (t0 + u < t1) in[u].load(xs + (i64)(t0 + u) * channels);
    }
    for (int t = t0; t < t1; t += RUN) {
#pragma unroll
        for (int u = 0; u < RUN; u++) {
            next[u].clear();
            if (t + RUN + u < t1) next[u].load(xs + (i64)(t + RUN + u) * channels);
        }
#pragma unroll
        for (int u = 0; u < RUN; u++) {
            float newest[V], y[V];
            in[u].unpack(newest);
#pragma unroll
            for (int v = 0; v < V; v++) {
                float acc = bc[v];
#pragma unroll
                for (int j = 0; j < KW - 1; j++) acc += w[j][v] * win[j][v];
                acc += w[KW - 1][v] * newest[v];
                y[v] = silu_out ? fast_silu(acc) : acc;
#pragma unroll
                for (int j = 0; j < KW - 2; j++) win[j][v] = win[j + 1][v];
                win[KW - 2][v] = newest[v];
            }
            if (t + u < t1) Row<V>::store(os + (i64)(t + u) * width, y);
        }
#pragma unroll
        for (int u = 0; u < RUN; u++) in[u] = next[u];
    }
}

// The variants the host picks from: 16-byte rows or single channels, kernel sizes up to 4 or up to 8 (KMAX).
#define CONV_FORWARD(V, KW)                                                                                        \
    extern "C" __global__ void conv1d_forward_v##V##_k##KW(                                                        \
        const act* x, const float* weight, const float* bias, const act* state, act* out0, act* out1, act* out2,  \
        int end0, int end1, int tokens, int channels, int kernel, int silu_out, int chunk) {                       \
        grid_dependency_sync();                                                                                     \
        conv_forward<V, KW>(x, weight, bias, state, out0, out1, out2, end0, end1, tokens, channels, kernel,         \
                            silu_out, chunk);                                                                      \
    }

CONV_FORWARD(8, 4)
CONV_FORWARD(8, 8)
CONV_FORWARD(1, 4)
CONV_FORWARD(1, 8)

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
    st(out, (i64)b * channels + c, silu_out ? fast_silu(acc) : acc);
}
