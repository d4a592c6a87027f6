#!/usr/bin/env bash
# The one command to run on a GPU machine (see benchmarks/gpu_check.py for the parts).
#
#   scripts/gpu-check.sh                     # install srdistill into python3, run the check (480 s)
#   scripts/gpu-check.sh --budget-s 300      # any benchmarks/gpu_check.py option passes through
#   scripts/gpu-check.sh --smoke             # the tiny CPU run the test suite does
#   scripts/gpu-check.sh --stage-data [SRC]  # here, before: copy the photos + Set5/Set14 the GPU box
#                                            # needs into .gpu-data/ (gitignored; SRC default ../shared/data)
#
# The GPU machine has no network and a python3 with torch (CUDA) and srdistill's dependencies, so
# srdistill is installed from this tree without dependencies or an index; entry points (the
# architectures, methods and the rfdn plugin) need the installed metadata.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"

if [[ "${1:-}" == "--stage-data" ]]; then
    src="${2:-../shared/data}"
    for need in train-photos benchmarks/Set5 benchmarks/Set14; do
        [[ -d "$src/$need" ]] || { echo "stage-data: $src/$need is missing; pass the data folder: --stage-data DIR" >&2; exit 2; }
    done
    rm -rf .gpu-data.partial
    mkdir -p .gpu-data.partial/benchmarks
    cp -r "$src/train-photos" .gpu-data.partial/
    cp -r "$src/benchmarks/Set5" "$src/benchmarks/Set14" .gpu-data.partial/benchmarks/
    rm -rf .gpu-data && mv .gpu-data.partial .gpu-data
    echo "staged $(du -sh .gpu-data | cut -f1) in .gpu-data/ (carry it to the GPU machine with the tree)"
    exit 0
fi

if [[ " $* " != *" --smoke "* ]]; then
    if ! "$PYTHON" -c "import srdistill, srdistill_rfdn" 2>/dev/null; then
        "$PYTHON" -m pip install -q --no-deps --no-index --no-build-isolation -e . -e plugins/srdistill-rfdn
    fi
    "$PYTHON" - <<'PY' || { echo "torch in $PYTHON has no CUDA (torch.cuda.is_available() is False); nothing to check" >&2; exit 2; }
import sys, torch
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, available: {torch.cuda.is_available()}")
sys.exit(0 if torch.cuda.is_available() else 1)
PY
fi
exec "$PYTHON" -u benchmarks/gpu_check.py "$@"
