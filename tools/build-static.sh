#!/usr/bin/env bash
# Builds the static measuring binary (no Swift runtime needed where it runs; CUDA libraries are dlopen'ed there),
# checks that it stays under 64 MiB and links only glibc, libstdc++, libm and libgcc_s, and copies it to dist/
# (git-ignored) so that it can travel to a GPU machine, e.g. with the device tool's `carry: ["dist"]`.
# Usage: tools/build-static.sh [--scratch-path DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
scratch=.build
if [[ "${1:-}" == "--scratch-path" ]]; then scratch="$2"; fi
swift build -c release --static-swift-stdlib --product ssm-scope-worker --scratch-path "$scratch"
binary="$scratch/release/ssm-scope-worker"
size=$(stat -c %s "$binary")
limit=$((64 * 1024 * 1024))
if (( size >= limit )); then
    echo "error: $binary is $size bytes, over the 64 MiB limit" >&2
    exit 1
fi
unexpected=$(ldd "$binary" | grep -vE 'linux-vdso|ld-linux|libc\.so|libm\.so|libstdc\+\+\.so|libgcc_s\.so|libdl\.so|libpthread\.so|librt\.so' || true)
if [[ -n "$unexpected" ]]; then
    echo "error: $binary links libraries beyond glibc, libstdc++, libm and libgcc_s:" >&2
    echo "$unexpected" >&2
    exit 1
fi
mkdir -p dist
cp "$binary" dist/ssm-scope-worker
echo "dist/ssm-scope-worker: $((size / 1024 / 1024)) MiB, links: $(ldd "$binary" | awk '{print $1}' | tr '\n' ' ')"
