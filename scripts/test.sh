#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite, slow and distributed tests included.
# Works on a fresh clone: tests that need the shared data folder (../shared, or $SRDISTILL_SHARED)
# skip without it, and fail instead under SRDISTILL_REQUIRE_SHARED=1 (what .ci/run sets).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# pytest exits 5 when it collects no test: set -e turns that into a failure too.
exec .venv/bin/python -m pytest -q "$@"
