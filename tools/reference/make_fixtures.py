#!/usr/bin/env python3
"""Generate (or verify) the golden logits fixtures for ssm-scope from tiny random Hugging Face models.

A thin wrapper: the reference code lives in the PyTorch worker, tools/torch_worker/ssm_scope_worker.py, so that
the fixtures and the ``torch`` backend come from one script. Same options as ``ssm_scope_worker.py fixtures``:

    python tools/reference/make_fixtures.py                 # all families
    python tools/reference/make_fixtures.py --only mamba2   # some families
    python tools/reference/make_fixtures.py --check         # verify saved fixtures
    python tools/reference/make_fixtures.py --independent   # verify without transformers (float64)
    python tools/reference/make_fixtures.py --print-tensors # also print {name: shape} per fixture

See tools/reference/README.md and tools/reference/NOTES.md.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "torch_worker"))
import ssm_scope_worker  # noqa: E402

if __name__ == "__main__":
    sys.exit(ssm_scope_worker.fixtures_main(sys.argv[1:]))
