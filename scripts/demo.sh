#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs the main job: compile the bundled demo model with fastc,
# check it against eager and print what was done and how fast.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
fastc demo "$@"
