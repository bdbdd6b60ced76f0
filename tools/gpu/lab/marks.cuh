// The decode lab's instrumentation: MARK(i) has thread 0 of each block write %globaltimer (ns) at point i (and its
// SM in slot 7) into marks[block * 8 + i] when marks is not null; compiled out where LAB_NO_MARKS is defined, so
// that the timed builds carry no marking code.
#pragma once
typedef unsigned long long u64;
__device__ __forceinline__ u64 globaltimer() {
    u64 t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}
#ifdef LAB_NO_MARKS
#define MARK(i) ((void)marks)
#else
#define MARK(i)                                                                    \
    do {                                                                           \
        if (marks && threadIdx.x == 0) {                                           \
            int blk = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z); \
            marks[blk * 8 + (i)] = globaltimer();                                  \
            if ((i) == 0) {                                                        \
                unsigned sm;                                                       \
                asm("mov.u32 %0, %%smid;" : "=r"(sm));                             \
                marks[blk * 8 + 7] = sm;                                           \
            }                                                                      \
        }                                                                          \
    } while (0)
#endif
