"""Checks gemv_mma_block's fragment layout (gemv.cu) without a GPU: one block's dot products built lane by lane
as the kernel builds its mma.sync m16n8k16 operands, with the PTX fragment layouts emulated in numpy, against X @ W^T.
Usage: python3 tools/gpu/lab/mma_layout_check.py   (prints the largest error; ~1e-14 when the layout is right)"""
import numpy as np
rng = np.random.default_rng(1)
rows, k, owned = 3, 600, 13          # k not a multiple of 256, a partial last tile
W = rng.standard_normal((owned, k)); X = rng.standard_normal((rows, k))
chunks, slices = k // 8, (k + 255) // 256
items = (owned + 7) // 8 * slices
out = np.zeros((rows, owned))
def mma(acc, a, b):  # a[lane] = 4 regs of 2 values; b[lane] = 2 regs of 2; acc[lane] = 4
    A = np.zeros((16, 16)); B = np.zeros((16, 8))
    for lane in range(32):
        g, q = lane >> 2, lane & 3
        A[g, 2*q:2*q+2] = a[lane][0]; A[g+8, 2*q:2*q+2] = a[lane][1]
        A[g, 2*q+8:2*q+10] = a[lane][2]; A[g+8, 2*q+8:2*q+10] = a[lane][3]
        B[2*q:2*q+2, g] = b[lane][0]; B[2*q+8:2*q+10, g] = b[lane][1]
    D = A @ B
    for lane in range(32):
        g, q = lane >> 2, lane & 3
        acc[lane] += np.array([D[g, 2*q], D[g, 2*q+1], D[g+8, 2*q], D[g+8, 2*q+1]])
for item in range(items):
    tile, sl = item // slices, item % slices
    acc = [np.zeros(4) for _ in range(32)]
    wv = {}
    for lane in range(32):
        g, q = lane >> 2, lane & 3
        local = tile * 8 + g
        for r in range(8):
            c = sl * 32 + q + 4 * r
            wv[lane, r] = W[local, 8*c:8*c+8] if local < owned and c < chunks else np.zeros(8)
    for r in range(8):
        for h in range(2):
            a, b = [], []
            for lane in range(32):
                g, q = lane >> 2, lane & 3
                c = sl * 32 + q + 4 * r
                xs = X[g, 8*c+4*h:8*c+4*h+4] if g < rows and c < chunks else np.zeros(4)
                a.append([xs[0:2], np.zeros(2), xs[2:4], np.zeros(2)])
                w = wv[lane, r]
                b.append([w[4*h:4*h+2], w[4*h+2:4*h+4]])
            mma(acc, a, b)
    for lane in range(32):
        g, q = lane >> 2, lane & 3
        for e in range(2):
            local = tile * 8 + 2*q + e
            if g < rows and local < owned: out[g, local] += acc[lane][e]
print("max error", np.abs(out - X @ W.T).max())
