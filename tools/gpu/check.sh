#!/usr/bin/env bash
# Runs on the GPU machine, builds nothing: the carried static worker (dist/ssm-scope-worker, made by
# tools/build-static.sh) reports the CUDA libraries and GPUs, then checks the CUDA backend against the CPU engine,
# the golden fixtures and prefill/step parity. Exits non-zero on any failure. Logs go to $OUT when it is set.
# Usage (from the repository root): tools/gpu/check.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
worker=dist/ssm-scope-worker
log=${OUT:-/tmp}
if [[ ! -x "$worker" ]]; then
    echo "error: $worker is missing; build it here with tools/build-static.sh and carry dist/" >&2
    exit 1
fi
"$worker" doctor 2>&1 | tee "$log/doctor.txt"
"$worker" selftest --fixtures Tests/ScopeEngineTests/Fixtures 2>&1 | tee "$log/selftest.txt"
exit "${PIPESTATUS[0]}"
