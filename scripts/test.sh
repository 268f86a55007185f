#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs every test: pytest, then the lit IR tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
python -m pytest -q -p no:cacheprovider tests "$@"
lit -v lit_tests
