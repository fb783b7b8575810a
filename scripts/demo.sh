#!/usr/bin/env bash
# The main job: the whole pipeline on the embedded SQLite store, end to end
# (see scripts/demo.py). Exits non-zero when any of its checks fails.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python scripts/demo.py "$@"
