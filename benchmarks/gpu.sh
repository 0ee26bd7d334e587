#!/usr/bin/env bash
# Every GPU measurement of docs/performance.md in one run (under 8 minutes on one H100/H200),
# written to one JSON file:
#
#   bash benchmarks/gpu.sh [--out gpu.json]   # on a CUDA machine, from the repository root
#   bash benchmarks/gpu.sh --smoke --out x.json   # the same steps on the CPU at toy sizes
#
# On a GPU machine with torch, torchvision, timm, pluggy, typer, rich and safetensors installed
# (no network needed), it first installs zoo and zoo-timm in place without dependencies;
# --smoke uses the environment as it is. PYTHON picks the interpreter (default: python3, or
# the repository's .venv when there is one).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
smoke=0
for arg in "$@"; do [[ "$arg" == "--smoke" ]] && smoke=1; done
if [[ $smoke == 0 ]]; then
    "$PYTHON" -m pip install --quiet --no-deps --no-build-isolation -e . -e plugins/zoo-timm
fi
exec "$PYTHON" benchmarks/gpu.py "$@"
