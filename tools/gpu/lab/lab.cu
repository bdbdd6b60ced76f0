// Decode lab: the 48 mixers of a Mamba-2 1.3B decode step (in_proj gemv with the RMSNorm and the conv step, the SSD
// step, out_proj gemv with the gated norm and the residual sum; random weights, one row) recorded as a CUDA graph of
// programmatic launches, as ssm-scope records a step, for two revisions of gemv.cu and ssd.cu side by side: the
// graph's time per layer for every pairing of the gemvs and SSD steps (three rounds), then a per-block timeline of
// layer 24 of each revision from %globaltimer marks (marks.cuh): when blocks enter, pass the grid wait, finish the
// norm prologue, consume their first batch, end their loop, and end. It records the mixer as ssm-scope ran it before
// 611e36f (the gated norm in the out projection's prologue, gemv_norm_r1_v2, after the plain ssd_step); ssm-scope now
// runs ssd_step_gated and gemv_presummed there (SSM_SCOPE_CUDA_GATED_STEP=0 runs the lab's layout), so the lab
// compares revisions of the in projection, the norm-folding gemvs and the plain SSD step.
//
// Here:  python3 tools/gpu/lab/prepare.py BASE_REV     (writes tools/gpu/lab/gen/, git-ignored)
// There: tools/gpu/lab/run.sh                          (device tool: run(carry: ["tools/gpu/lab/gen"]))
#include <cuda_runtime.h>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>
#include "gen/common.cuh"
#include "marks.cuh"

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        cudaError_t e = (x);                                                                       \
        if (e != cudaSuccess) {                                                                    \
            fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e));       \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

// gemv.cu's kernel arguments, as the kernels declare them.
struct Segments {
    const act *w0, *w1, *w2;
    const float *bias0, *bias1, *bias2;
    act *out0, *out1, *out2;
    int end0, end1;
};
struct ConvEpilogue {
    const float* weight;
    const float* bias;
    act* state;
    act* out;
    int first, channels, kernel, silu;
};

#define NORM_ARGS const act*, Segments, ConvEpilogue, int, int, int, int, int, int, const float*, float, const act*, int, int
#define SSD_ARGS const act*, const act*, const float*, const float*, const act*, const act*, const float*, float*, \
    act*, int, int, int, int, int, float, float
typedef void (*GemvKernel)(NORM_ARGS, u64*);
typedef void (*SsdKernel)(SSD_ARGS);
// One revision: its in_proj (v1) and out_proj (v2) gemv kernels without and with marks, and its SSD step.
struct GemvVariant {
    const char* name;
    GemvKernel in, out, inMarked, outMarked;
    SsdKernel ssd;
};
#include "gen/variants.h"

__global__ void fill_act(act* p, long long n, unsigned seed, float scale) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        unsigned h = (unsigned)i * 2654435761u ^ seed;
        h ^= h >> 13; h *= 0x5bd1e995u; h ^= h >> 15;
        p[i] = float_to_act(((h & 0xffff) / 65536.0f - 0.5f) * scale);
    }
}
__global__ void fill_f32(float* p, long long n, unsigned seed, float scale, float offset) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        unsigned h = (unsigned)i * 2654435761u ^ seed;
        h ^= h >> 13; h *= 0x5bd1e995u; h ^= h >> 15;
        p[i] = ((h & 0xffff) / 65536.0f - 0.5f) * scale + offset;
    }
}

template <typename T>
T* alloc(long long n) {
    T* p;
    CHECK(cudaMalloc(&p, n * sizeof(T)));
    return p;
}
static unsigned seed = 1;
act* random_act(long long n, float scale) {
    act* p = alloc<act>(n);
    fill_act<<<1024, 256>>>(p, n, seed++ * 7919u, scale);
    return p;
}
float* random_f32(long long n, float scale, float offset = 0.0f) {
    float* p = alloc<float>(n);
    fill_f32<<<1024, 256>>>(p, n, seed++ * 7919u, scale, offset);
    return p;
}

// Mamba-2 1.3B: d_model 2048, d_inner 4096, heads 64 x 64, N 128, 1 group, conv 4; in_proj 8512 columns.
constexpr int LAYERS = 48, D = 2048, DI = 4096, H = 64, P = 64, N = 128, CONV = DI + 2 * N, NIN = DI + CONV + H;
constexpr int TRACED = 24;

struct Layer {
    act *win, *wout, *convState;
    float *convW, *convB, *normIn, *normOut, *state, *A, *dtBias, *Dp;
};
struct Activations {
    act *residual, *zxbcdt, *xbc, *y;
};

template <typename... Exp, typename... Act>
void launch(void (*kernel)(Exp...), dim3 grid, int shared, cudaStream_t s, Act... args) {
    cudaLaunchAttribute attribute;
    attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attribute.val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t config = {};
    config.gridDim = grid;
    config.blockDim = dim3(256);
    config.dynamicSmemBytes = shared;
    config.stream = s;
    config.attrs = &attribute;
    config.numAttrs = 1;
    CHECK(cudaLaunchKernelEx(&config, kernel, args...));
}

// The grid of GemvShape (CUDABackend+Dense.swift) at 256 threads a column: about two blocks per multiprocessor.
int gemv_blocks(int n, int sms, int* per) {
    int target = std::max(1, std::min(n, 2 * sms));
    *per = (n + target - 1) / target;
    return (n + *per - 1) / *per;
}

// Dynamic shared memory enough for either revision's layout: 8 warps' shares of the sums, the norm's partial sums,
// the staged row.
int gemv_shared(int per, int k) { return (8 * per + 3) / 4 * 16 + 256 + 4 * k; }

struct Config {
    const GemvVariant* gemv;
    const GemvVariant* ssd;  // whose SSD step, or null: none
    bool marked;
};

void record_layer(const Layer& L, const Activations& a, Config c, cudaStream_t s, int sms, u64* inMarks,
                  u64* outMarks) {
    int perIn, perOut;
    int blocksIn = gemv_blocks(NIN, sms, &perIn), blocksOut = gemv_blocks(D, sms, &perOut);
    Segments in = {L.win, nullptr, nullptr, nullptr, nullptr, nullptr, a.zxbcdt, nullptr, nullptr, NIN, NIN};
    ConvEpilogue conv = {L.convW, L.convB, L.convState, a.xbc, DI, CONV, 4, 1};
    Segments out = {L.wout, nullptr, nullptr, nullptr, nullptr, nullptr, a.residual, nullptr, nullptr, D, D};
    ConvEpilogue none = {nullptr, nullptr, nullptr, nullptr, 0, 0, 0, 0};
    const act *x = a.xbc, *B = a.xbc + DI, *C = a.xbc + DI + N, *dt = a.zxbcdt + DI + CONV;
    launch(c.marked ? c.gemv->inMarked : c.gemv->in, dim3(blocksIn), gemv_shared(perIn, D), s, (const act*)a.residual,
           in, conv, 1, NIN, D, 0, 256, 1, (const float*)L.normIn, 1e-5f, (const act*)nullptr, 1, 0, inMarks);
    if (c.ssd)
        launch(c.ssd->ssd, dim3(P / 8, H, 1), 0, s, x, dt, (const float*)L.dtBias, (const float*)L.A, B, C,
               (const float*)L.Dp, L.state, a.y, 1, H, P, 1, N, 0.0f, 1e30f);
    launch(c.marked ? c.gemv->outMarked : c.gemv->out, dim3(blocksOut), gemv_shared(perOut, DI), s, (const act*)a.y,
           out, none, 1, D, DI, 1, 256, 2, (const float*)L.normOut, 1e-5f, (const act*)a.zxbcdt, 1, 0, outMarks);
}

int main(int argc, char** argv) {
    int replays = argc > 1 ? atoi(argv[1]) : 20;
    const char* csv = argc > 2 ? argv[2] : "timeline.csv";
    cudaDeviceProp prop;
    CHECK(cudaGetDeviceProperties(&prop, 0));
    int sms = prop.multiProcessorCount;
    printf("device %s, %d SMs; %d layers, %d replays per measurement\n", prop.name, sms, LAYERS, replays);
    int variants = sizeof(gemvVariants) / sizeof(gemvVariants[0]);
    for (int i = 0; i < variants; i++)
        for (GemvKernel k : {gemvVariants[i].in, gemvVariants[i].out, gemvVariants[i].inMarked, gemvVariants[i].outMarked})
            CHECK(cudaFuncSetAttribute((const void*)k, cudaFuncAttributeMaxDynamicSharedMemorySize, 96 * 1024));
    std::vector<Layer> layers(LAYERS);
    for (auto& L : layers) {
        L.win = random_act((long long)NIN * D, 0.04f);
        L.wout = random_act((long long)D * DI, 0.03f);
        L.convState = random_act(3 * CONV, 1.0f);
        L.convW = random_f32(CONV * 4, 0.5f);
        L.convB = random_f32(CONV, 0.1f);
        L.normIn = random_f32(D, 0.2f, 1.0f);
        L.normOut = random_f32(DI, 0.2f, 1.0f);
        L.state = random_f32((long long)H * P * N, 0.1f);
        L.A = random_f32(H, 1.0f, -1.0f);
        L.dtBias = random_f32(H, 1.0f, -2.0f);
        L.Dp = random_f32(H, 1.0f);
    }
    Activations a = {random_act(D, 1.0f), random_act(NIN, 1.0f), random_act(CONV, 1.0f), random_act(DI, 1.0f)};
    CHECK(cudaDeviceSynchronize());
    cudaStream_t s;
    CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    cudaEvent_t e0, e1;
    CHECK(cudaEventCreate(&e0));
    CHECK(cudaEventCreate(&e1));
    int perIn, perOut;
    int blocksIn = gemv_blocks(NIN, sms, &perIn), blocksOut = gemv_blocks(D, sms, &perOut);
    u64 *inMarks = alloc<u64>(blocksIn * 8), *outMarks = alloc<u64>(blocksOut * 8);

    // The graph's median time over `replays` replays (after three), in us per layer.
    auto run = [&](Config c) {
        cudaGraph_t graph;
        cudaGraphExec_t exec;
        CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
        for (int l = 0; l < LAYERS; l++)
            record_layer(layers[l], a, c, s, sms, c.marked && l == TRACED ? inMarks : nullptr,
                         c.marked && l == TRACED ? outMarks : nullptr);
        CHECK(cudaStreamEndCapture(s, &graph));
        CHECK(cudaGraphInstantiate(&exec, graph, 0));
        for (int i = 0; i < 3; i++) CHECK(cudaGraphLaunch(exec, s));
        std::vector<float> times;
        for (int i = 0; i < replays; i++) {
            CHECK(cudaEventRecord(e0, s));
            CHECK(cudaGraphLaunch(exec, s));
            CHECK(cudaEventRecord(e1, s));
            CHECK(cudaEventSynchronize(e1));
            float ms;
            CHECK(cudaEventElapsedTime(&ms, e0, e1));
            times.push_back(ms);
        }
        CHECK(cudaGraphExecDestroy(exec));
        CHECK(cudaGraphDestroy(graph));
        std::sort(times.begin(), times.end());
        return times[times.size() / 2] * 1000 / LAYERS;
    };

    std::vector<Config> configs;
    for (int g = 0; g < variants; g++) {
        for (int t = 0; t < variants; t++) configs.push_back({&gemvVariants[g], &gemvVariants[t], false});
        configs.push_back({&gemvVariants[g], nullptr, false});
    }
    std::vector<std::vector<float>> results(configs.size());
    for (int round = 0; round < 3; round++)
        for (size_t i = 0; i < configs.size(); i++) results[i].push_back(run(configs[i]));
    printf("\n| gemvs | SSD step | us per layer, rounds 1-3 |\n|---|---|---|\n");
    for (size_t i = 0; i < configs.size(); i++) {
        printf("| %s | %s |", configs[i].gemv->name, configs[i].ssd ? configs[i].ssd->name : "none");
        for (float v : results[i]) printf(" %.2f", v);
        printf(" |\n");
    }

    const char* point[] = {"entry", "wait", "prologue", "batch0", "loop end", "sync", "end"};
    FILE* f = fopen(csv, "w");
    if (!f) {
        fprintf(stderr, "error: cannot write %s\n", csv);
        return 1;
    }
    fprintf(f, "variant,kernel,block,sm,entry,wait,prologue,batch0,loopend,sync,end\n");
    printf("\nlayer %d, medians over blocks, us from the in_proj's first entry:\n| revision | kernel |", TRACED);
    for (const char* p : point) printf(" %s |", p);
    printf("\n|---|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < variants; i++) {
        run({&gemvVariants[i], &gemvVariants[i], true});
        std::vector<u64> in(blocksIn * 8), out(blocksOut * 8);
        CHECK(cudaMemcpy(in.data(), inMarks, in.size() * 8, cudaMemcpyDeviceToHost));
        CHECK(cudaMemcpy(out.data(), outMarks, out.size() * 8, cudaMemcpyDeviceToHost));
        u64 origin = ~0ull;
        for (int b = 0; b < blocksIn; b++) origin = std::min(origin, in[b * 8]);
        for (int kind = 0; kind < 2; kind++) {
            auto& m = kind == 0 ? in : out;
            int blocks = m.size() / 8;
            printf("| %s | %s |", gemvVariants[i].name, kind == 0 ? "in_proj" : "out_proj");
            for (int pt = 0; pt < 7; pt++) {
                std::vector<double> v;
                for (int b = 0; b < blocks; b++) v.push_back((double)(long long)(m[b * 8 + pt] - origin) / 1000.0);
                std::sort(v.begin(), v.end());
                printf(" %.2f |", v[v.size() / 2]);
            }
            printf("\n");
            for (int b = 0; b < blocks; b++) {
                fprintf(f, "%s,%s,%d,%llu", gemvVariants[i].name, kind == 0 ? "in_proj" : "out_proj", b, m[b * 8 + 7]);
                for (int pt = 0; pt < 7; pt++) fprintf(f, ",%.3f", (double)(long long)(m[b * 8 + pt] - origin) / 1000.0);
                fprintf(f, "\n");
            }
        }
    }
    fclose(f);
    printf("\nper-block marks: %s\n", csv);
    return 0;
}
