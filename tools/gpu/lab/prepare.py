"""Writes the decode lab's generated sources into tools/gpu/lab/gen/ (git-ignored; carry it to the GPU machine):
the gemv.cu and ssd.cu of a base revision and of the working tree, each under its own kernel names, the gemvs with
and without timeline marks (marks.cuh), and variants.h, the table lab.cu runs.

Usage (from the repository root): python3 tools/gpu/lab/prepare.py BASE_REV   (e.g. main, or a commit)"""
import os, re, subprocess, sys

if len(sys.argv) != 2:
    sys.exit("usage: python3 tools/gpu/lab/prepare.py BASE_REV")
base_rev = sys.argv[1]
kernels = "Sources/ScopeCUDA/Kernels"
out = "tools/gpu/lab/gen"
os.makedirs(out + "/base", exist_ok=True)
for name in ("gemv.cu", "ssd.cu", "common.cuh"):
    text = subprocess.run(["git", "show", f"{base_rev}:{kernels}/{name}"], capture_output=True, text=True)
    if text.returncode != 0:
        sys.exit(f"error: git show {base_rev}:{kernels}/{name} failed: {text.stderr.strip()}")
    open(f"{out}/base/{name}", "w").write(text.stdout)
for name in ("gemv.cu", "ssd.cu", "common.cuh"):
    open(f"{out}/{name}", "w").write(open(f"{kernels}/{name}").read())


def with_marks(s, prefix):
    """gemv.cu with its one-row norm kernels renamed PREFIX_gemv_norm_r1_vV, taking a marks pointer last."""
    def sub(old, new):
        nonlocal s
        if old not in s:
            sys.exit(f"error: gemv.cu no longer contains {old!r}; update prepare.py")
        s = s.replace(old, new, 1)
    sub('#include "common.cuh"', '#include "common.cuh"\n#include "../marks.cuh"')
    sub("int rows, int n, int k, int accumulate, int tpc) {",
        "int rows, int n, int k, int accumulate, int tpc, u64* marks) {\n    MARK(0);")
    sub("    grid_dependency_sync();\n", "    grid_dependency_sync();\n    MARK(1);\n")
    sub("    prologue();\n    __syncthreads();", "    prologue();\n    __syncthreads();\n    MARK(2);")
    sub("        consume(b, even);\n", "        consume(b, even);\n        if (b == 0) MARK(3);\n")
    finish = "    prologue.finish();\n" if "    prologue.finish();\n" in s else ""  # since 611e36f
    sub("        consume(b + 1, odd);\n    }\n" + finish + "    __syncthreads();\n",
        "        consume(b + 1, odd);\n    }\n" + finish + "    MARK(4);\n    __syncthreads();\n    MARK(5);\n")
    s = s[:s.index("#define GEMV(ROWS, V)")] + s[s.index("\n\n", s.index("GEMV(8, 1) GEMV(8, 2)")):]
    end = s.index("\n}\n", s.index("void gemv_block("))
    s = s[:end] + "\n    MARK(6);" + s[end:]
    sub("gemv_norm_r##ROWS##_v##V(", prefix + "_gemv_norm_r##ROWS##_v##V(")
    sub("int groups, int normBeforeGate) {", "int groups, int normBeforeGate, u64* marks) {")
    s = re.sub(r"accumulate, tpc\);", "accumulate, tpc, marks);", s)
    s = re.sub(r"accumulate,\s*tpc\);", "accumulate, tpc, marks);", s)
    s = re.sub(r"GEMV_NORM\(1, 1\) GEMV_NORM\(1, 2\) GEMV_NORM\(1, 4\)\s*GEMV_NORM\(8, 1\) GEMV_NORM\(8, 2\) GEMV_NORM\(8, 4\)",
               "GEMV_NORM(1, 1) GEMV_NORM(1, 2)", s)
    s = re.sub(r"GEMV_MMA\(1, 1\) GEMV_MMA\(1, 2\) GEMV_MMA\(1, 4\)\s*GEMV_MMA\(8, 1\) GEMV_MMA\(8, 2\) GEMV_MMA\(8, 4\)",
               "", s)  # the tensor-core experiment's kernels would be defined in every translation unit
    s = s.replace("GEMV_PRESUMMED(1) GEMV_PRESUMMED(2) GEMV_PRESUMMED(4)", "")  # likewise (the lab's layer has none)
    return s


ssd_names = ["chunk_steps", "ssd_chunk_cb", "ssd_chunk_state", "ssd_state_pass", "ssd_chunk_scan", "ssd_step",
             "ssd_step_body", "ssd_step_gated"]
for side, folder in (("base", "base/"), ("new", "")):
    source = open(f"{out}/{folder}gemv.cu").read()
    for marked in (True, False):
        prefix = side + ("_m" if marked else "")
        text = ("" if marked else "#define LAB_NO_MARKS\n") + with_marks(source, prefix)
        open(f"{out}/v_{prefix}.cu", "w").write(text.replace('#include "common.cuh"', f'#include "{folder}common.cuh"'))
    open(f"{out}/s_{side}.cu", "w").write("".join(f"#define {n} {side}_{n}\n" for n in ssd_names)
                                          + f'#include "{folder}ssd.cu"\n')
with open(f"{out}/variants.h", "w") as f:
    for side in ("base", "new"):
        for p in (side, side + "_m"):
            for v in (1, 2):
                f.write(f'extern "C" __global__ void {p}_gemv_norm_r1_v{v}(NORM_ARGS, u64*);\n')
        f.write(f'extern "C" __global__ void {side}_ssd_step(SSD_ARGS);\n')
    f.write("static GemvVariant gemvVariants[] = {\n")
    for side in ("base", "new"):
        f.write(f'    {{"{side}", {side}_gemv_norm_r1_v1, {side}_gemv_norm_r1_v2, {side}_m_gemv_norm_r1_v1, '
                f'{side}_m_gemv_norm_r1_v2, {side}_ssd_step}},\n')
    f.write("};\n")
print(f"{out}: base = {base_rev}, new = the working tree")
