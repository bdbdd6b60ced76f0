#!/usr/bin/env bash
# Regenerates every embedded-resource Swift file from its data files.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 tools/embed-resources.py Sources/ScopeModels/CatalogFiles.swift CatalogFiles Sources/ScopeModels/Catalog/*.json
python3 tools/embed-resources.py Sources/ScopeCost/DeviceFiles.swift DeviceFiles Sources/ScopeCost/Catalog/*.json
