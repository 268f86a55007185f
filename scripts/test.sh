#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs every test: pytest, then the lit IR tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
# No GPU in CI: generated Triton runs in Triton's interpreter, which must be chosen before triton
# is first imported.
export TRITON_INTERPRET=1
python -m pytest -q -p no:cacheprovider tests "$@"
lit -sv lit_tests
