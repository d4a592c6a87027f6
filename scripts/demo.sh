#!/usr/bin/env bash
# Set up .venv and run srdistill on what this checkout can reach without downloads: the
# architecture registry, an official-layout SwinIR checkpoint (inspect, convert, plan a
# cross-family distillation into edsr-lite) and the field-standard evaluation on Set5.
# (Bundled trained teacher/student models and a full distillation run join here with the
# default-models work.)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
out=$(mktemp -d)
shared=../shared
teacher=$shared/fixtures/official/swinir_lightweight_small_x2.pth
.venv/bin/srdistill archs
.venv/bin/srdistill inspect "$teacher"
.venv/bin/srdistill convert "$teacher" "$out/swinir-small-x2.safetensors"
.venv/bin/srdistill distill --teacher "$out/swinir-small-x2.safetensors" --student-arch edsr-lite --dry-run
.venv/bin/srdistill eval --bicubic --data "$shared/data/benchmarks/Set5" -s 2
echo "demo outputs in $out"
