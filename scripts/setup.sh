#!/usr/bin/env bash
# Create .venv (if needed) and install srdistill with its test, codec, TensorBoard and ONNX extras,
# the example plugin and the spandrel plugin.
# torch is pinned to the CPU build: a plain `torch` requirement would pull a multi-GB CUDA build.
# The pin is repeated in the second install so that nothing it pulls in (spandrel needs torchvision)
# can upgrade torch: pip then picks the torchvision release made for torch 2.13.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH="torch==2.13.0"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "$TORCH"
.venv/bin/python -m pip install --quiet "$TORCH" -e ".[test,codecs16,tensorboard,onnx]" -e plugins/srdistill-rfdn \
  -e "plugins/srdistill-spandrel[test]"
# A check, not an install: fail here, in one line, if anything replaced the CPU build.
.venv/bin/python -c "import torch, sys; v = torch.__version__; sys.exit(0 if v.startswith('2.13.0') and not torch.version.cuda else f'torch {v} (CUDA {torch.version.cuda}) replaced the pinned CPU build 2.13.0')"
