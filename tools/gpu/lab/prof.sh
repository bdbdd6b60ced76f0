#!/usr/bin/env bash
# Runs on the GPU machine after tools/gpu/lab/run.sh: ncu over one in_proj and one out_proj gemv of each revision
# (caches flushed before each, clocks as they are): time, active and elapsed cycles, instructions per warp and the
# stall reasons per issued instruction, as CSV in $OUT/prof_REVISION.csv; prof_table.py prints them.
# Usage (from the repository root): tools/gpu/lab/prof.sh [REVISION...]   (default: base new)
set -euo pipefail
cd "$(dirname "$0")"
command -v ncu > /dev/null || PATH=$PATH:/usr/local/cuda/bin
command -v ncu > /dev/null || { echo "error: ncu is neither on PATH nor in /usr/local/cuda/bin" >&2; exit 1; }
[[ -x gen/lab ]] || { echo "error: gen/lab is missing; run tools/gpu/lab/run.sh first" >&2; exit 1; }
M=gpu__time_duration.sum,sm__cycles_active.avg,sm__cycles_elapsed.avg,smsp__inst_executed.sum,smsp__warps_launched.sum
for r in long_scoreboard short_scoreboard barrier lg_throttle mio_throttle math_pipe_throttle wait not_selected \
    selected no_instruction membar drain dispatch_stall tex_throttle branch_resolving sleeping imc_miss; do
    M=$M,smsp__average_warps_issue_stalled_${r}_per_issue_active.ratio
done
[[ $# -gt 0 ]] || set -- base new
for v in "$@"; do
    ncu --cache-control all --clock-control none -k regex:"^${v}_gemv_norm_r1_v[12]\$" --launch-skip 200 \
        --launch-count 2 --metrics "$M" --csv gen/lab 3 /tmp/prof-timeline.csv 2> /dev/null | grep -v "^==" \
        > "${OUT:-/tmp}/prof_$v.csv"
done
