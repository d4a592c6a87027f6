#!/usr/bin/env bash
# Reproduce the models bundled in src/srdistill/weights/ from ../shared/data/train-photos:
# an edsr-baseline teacher (with a bicubic skip) at x4 and x2, and edsr-lite students distilled
# from it with MiPKD (srdistill's defaults). CPU is enough; a GPU is picked automatically.
#
#   bash scripts/train-default-models.sh [WORK_DIR]      # default WORK_DIR: runs/default-models
#
# Budgets and seeds below are the ones used for the shipped files (2-core CPU, about 3 h of
# wall-clock in all when the stages marked "parallel" share the two cores). Results are
# bit-identical for the same torch version and thread counts (stage 1 ran with 2 threads, every
# other stage with one). Every stage is resumable: re-running the script continues unfinished
# runs (--resume auto) and skips finished ones. The last step evaluates the models, stores them
# in float16 with their scores and copies them into the package.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-runs/default-models}
photos=../shared/data/train-photos
bench=../shared/data/benchmarks
mkdir -p "$work"
S=(.venv/bin/srdistill)
[ -x "${S[0]}" ] || S=(srdistill)

data=(--data "$photos" --hr-downscale 2 --patch-size 48 --batch-size 16 --seed 0)

run() {  # run OUTPUT COMMAND...: skip a stage whose output exists, else run (or resume) it
  local out=$1; shift
  if [ -f "$out" ]; then echo "done already: $out"; else "$@" --resume auto -o "$out"; fi
}

# Stage 1: x4 teacher, 420 steps, lr 4e-4 (30 warm-up steps, cosine), 2 threads.
run "$work/teacher_stage1_x4.safetensors" "${S[@]}" train --arch edsr-baseline --arch-opt bicubic_skip=true \
  --scale 4 "${data[@]}" --steps 420 --lr 4e-4 --warmup 30 --schedule cosine --threads 2 \
  --val-data "$bench/Set5" --val-every 100 --checkpoint-every 100 --run-dir "$work/teacher-stage1-x4"

# Stage 2 (parallel): x4 continued for 700 steps; x2 from stage 1's weights for 450 steps
# (every tensor of x4 edsr-baseline fits x2 except none: the x2 upsampler is x4's first stage).
run "$work/teacher_x4.safetensors" "${S[@]}" train --arch edsr-baseline --arch-opt bicubic_skip=true \
  --scale 4 --init "$work/teacher_stage1_x4.safetensors" "${data[@]}" --steps 700 --lr 2e-4 --schedule cosine \
  --threads 1 --val-data "$bench/Set5" --val-every 100 --checkpoint-every 100 --run-dir "$work/teacher-x4" &
run "$work/teacher_x2.safetensors" "${S[@]}" train --arch edsr-baseline --arch-opt bicubic_skip=true \
  --scale 2 --init "$work/teacher_stage1_x4.safetensors" "${data[@]}" --steps 450 --lr 2e-4 --schedule cosine \
  --threads 1 --val-data "$bench/Set5" --val-every 100 --checkpoint-every 100 --run-dir "$work/teacher-x2" &
wait

# Stage 3 (parallel): the default students, mipkd-lite (the cheap MiPKD variant) at its defaults, 2400 steps
# of 8 patches of 32x32 LR pixels: on this CPU that recipe gave edsr-lite +0.5 dB over 600 steps
# of 16 x 48x48 in less time (benchmarks/RESULTS.md, "kd_quality").
for s in 4 2; do
  run "$work/student_x$s.safetensors" "${S[@]}" distill --teacher "$work/teacher_x$s.safetensors" \
    --student-arch edsr-lite --data "$photos" --hr-downscale 2 --patch-size 32 --batch-size 8 --seed 0 \
    --steps 2400 --lr 2e-4 --threads 1 --method mipkd-lite \
    --val-data "$bench/Set5" --val-every 0 --checkpoint-every 400 \
    --teacher-cache-dir "$work/teacher-cache" --run-dir "$work/student-x$s" &
done
wait

.venv/bin/python scripts/bundle_default_models.py \
  --teacher-x4 "$work/teacher_x4.safetensors" --teacher-x2 "$work/teacher_x2.safetensors" \
  --student-x4 "$work/student_x4.safetensors" --student-x2 "$work/student_x2.safetensors"
