#!/usr/bin/env bash
# Runs on the GPU machine (nvcc there): builds the decode lab from tools/gpu/lab/gen/ (tools/gpu/lab/prepare.py
# wrote it here) and runs it; the per-block marks go to $OUT/timeline.csv (or /tmp). Extra arguments: the replays
# per measurement (default 20).
# Usage (from the repository root): tools/gpu/lab/run.sh [REPLAYS]
set -euo pipefail
cd "$(dirname "$0")"
[[ -f gen/variants.h ]] || { echo "error: tools/gpu/lab/gen/ is missing; run python3 tools/gpu/lab/prepare.py BASE_REV here and carry it" >&2; exit 1; }
command -v nvcc > /dev/null || PATH=$PATH:/usr/local/cuda/bin
command -v nvcc > /dev/null || { echo "error: nvcc is neither on PATH nor in /usr/local/cuda/bin" >&2; exit 1; }
nvcc -O3 -arch=sm_90a -std=c++17 -I. lab.cu gen/v_*.cu gen/s_*.cu -o gen/lab 2> gen/build.log \
    || { cat gen/build.log >&2; exit 1; }
gen/lab "${1:-20}" "${OUT:-/tmp}/timeline.csv"
