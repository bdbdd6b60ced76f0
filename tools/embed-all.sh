#!/usr/bin/env bash
# Regenerates every embedded-resource Swift file from its data files.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 tools/embed-resources.py Sources/ScopeModels/CatalogFiles.swift CatalogFiles Sources/ScopeModels/Catalog/*.json
python3 tools/embed-resources.py Sources/ScopeCost/DeviceFiles.swift DeviceFiles Sources/ScopeCost/Catalog/*.json
python3 tools/embed-resources.py Sources/ScopeTorch/WorkerScript.swift WorkerScript tools/torch_worker/ssm_scope_worker.py
python3 tools/embed-resources.py Sources/ScopeCUDA/KernelSources.swift KernelSources \
    Sources/ScopeCUDA/Kernels/*.cu Sources/ScopeCUDA/Kernels/*.cuh
