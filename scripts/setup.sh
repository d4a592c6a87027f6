#!/usr/bin/env bash
# Create .venv (if needed) and install srdistill, its test extra and the example plugin.
# torch is pinned to the CPU build: a plain `torch` requirement would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".[test,codecs16,tensorboard,onnx]" -e plugins/srdistill-rfdn \
  -e "plugins/srdistill-spandrel[test]"
