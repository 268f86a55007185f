#!/usr/bin/env bash
# The long edge-value sweep: the property-based test of tests/reliability with many more examples
# per target and dtype (CI runs 30). FASTC_SWEEP_LOG=<file> records each example before it runs.
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
export TRITON_INTERPRET=1
FASTC_SWEEP_EXAMPLES=${FASTC_SWEEP_EXAMPLES:-400} python -m pytest -q -p no:cacheprovider \
    tests/reliability/test_edge_value_sweep.py "$@"
