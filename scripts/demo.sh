#!/usr/bin/env bash
# Set up and run srdistill on what ships with it: list the architectures, then inspect and
# convert an official-layout checkpoint. (Distillation joins here once `srdistill distill` lands.)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
out=$(mktemp -d)
.venv/bin/srdistill archs
.venv/bin/srdistill inspect ../shared/fixtures/official/swinir_lightweight_small_x2.pth
.venv/bin/srdistill convert ../shared/fixtures/official/swinir_lightweight_small_x2.pth "$out/swinir-s-small-x2.safetensors"
.venv/bin/srdistill inspect "$out/swinir-s-small-x2.safetensors"
