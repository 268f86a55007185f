#!/usr/bin/env bash
# Sets up a virtual environment in .venv with fastc and everything its tests need.
# torch==2.13.0 is installed first: it is a CPU wheel on this machine's disk, and installing
# anything that depends on torch before it would pull a multi-GB CUDA build from the registry.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip 2>/dev/null || true
python -m pip install -q "torch==2.13.0" 2>&1 | grep -v "^WARNING: Location" || true
python -m pip install -q -e ".[test,bench]" 2>&1 | grep -v "^WARNING: Location" || true
python -c "import torch, fastc, torch_mlir; assert torch.__version__.startswith('2.13.0'), torch.__version__"
