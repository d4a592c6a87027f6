#!/usr/bin/env bash
# Reproduce the models bundled in src/srdistill/weights/ from ../shared/data/train-photos:
# edsr-baseline teachers (with a bicubic skip) at x4, x3 and x2, and the students distilled from
# them with logits-KD (srdistill's default method). CPU is enough; a GPU is picked automatically.
#
#   bash scripts/train-default-models.sh [WORK_DIR]      # default WORK_DIR: runs/default-models
#
# Budgets and seeds below are the ones used for the shipped files (a 2-core CPU; wall-clock and
# CPU time per stage are noted at each stage, about 4 h 50 min of wall-clock and 7 h 40 min of
# CPU time in all when the stages marked "parallel" share the two cores). Stages bounded by steps
# are bit-identical for the same torch version and thread counts; stages bounded by --max-time
# (the long teachers) stop where the time runs out and their learning rate follows the clock, so
# they reproduce the recipe, not the bytes. Every stage is resumable: re-running the script
# continues unfinished runs (--resume auto) and skips finished ones. The last step evaluates the
# models, stores them in float16 with their scores and copies into the package only those that
# beat the bundled file on Set5, Set14 and McMaster.
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

# Stage 1 (7 min, 2 threads): x4 teacher, 420 steps, lr 4e-4 (30 warm-up steps, cosine), 2 threads.
run "$work/teacher_stage1_x4.safetensors" "${S[@]}" train --arch edsr-baseline --arch-opt bicubic_skip=true \
  --scale 4 "${data[@]}" --steps 420 --lr 4e-4 --warmup 30 --schedule cosine --threads 2 \
  --val-data "$bench/Set5" --val-every 100 --checkpoint-every 100 --run-dir "$work/teacher-stage1-x4"

# Stage 2 (parallel, 20 min): x4 continued for 700 steps (the v1 bundled teacher-x4); x2 from
# stage 1's weights for 450 steps (the v1 teacher-x2; the x2 upsampler is x4's first stage).
run "$work/teacher_x4.safetensors" "${S[@]}" train --arch edsr-baseline --arch-opt bicubic_skip=true \
  --scale 4 --init "$work/teacher_stage1_x4.safetensors" "${data[@]}" --steps 700 --lr 2e-4 --schedule cosine \
  --threads 1 --val-data "$bench/Set5" --val-every 100 --checkpoint-every 100 --run-dir "$work/teacher-x4" &
run "$work/teacher_x2.safetensors" "${S[@]}" train --arch edsr-baseline --arch-opt bicubic_skip=true \
  --scale 2 --init "$work/teacher_stage1_x4.safetensors" "${data[@]}" --steps 450 --lr 2e-4 --schedule cosine \
  --threads 1 --val-data "$bench/Set5" --val-every 100 --checkpoint-every 100 --run-dir "$work/teacher-x2" &
wait

# Stage 3 (63 min, 2 threads): teacher-x4-long (../shared/models/teacher-x4-long.safetensors),
# 3600 steps of 8 x 32x32 LR patches, lr 2e-4, time-bounded.
run "$work/teacher_x4_long.safetensors" "${S[@]}" train --arch edsr-baseline --arch-opt bicubic_skip=true \
  --scale 4 --init "$work/teacher_x4.safetensors" --data "$photos" --hr-downscale 2 --patch-size 32 --batch-size 8 \
  --steps 3600 --max-time 63m --lr 2e-4 --warmup 50 --schedule cosine --threads 2 --seed 1 \
  --val-data "$bench/Set5" --val-every 600 --run-dir "$work/teacher-x4-long"

# Stage 4 (115 min, 1 thread): teacher-x4-v2, the bundled teacher-x4 (benchmarks/teachers/README.md):
# 48x48 patches, lr 1e-4, EMA 0.999.
run "$work/teacher_x4_v2.safetensors" "${S[@]}" train --arch edsr-baseline --arch-opt bicubic_skip=true \
  --scale 4 --init "$work/teacher_x4_long.safetensors" --data "$photos" --hr-downscale 2 --patch-size 48 --batch-size 8 \
  --steps 4000 --max-time 115m --lr 1e-4 --warmup 50 --schedule cosine --ema 0.999 --threads 1 --seed 2 \
  --val-data "$bench/Set5" --val-every 1000 --run-dir "$work/teacher-x4-v2"

# Stage 5 (parallel, 60 min): x3 and x2 teachers from teacher-x4-v2's body (x3 gets a fresh
# upsampler; the x2 upsampler is x4's first stage), the same recipe for an hour each.
for s in 3 2; do
  run "$work/teacher_x${s}_v2.safetensors" "${S[@]}" train --arch edsr-baseline --arch-opt bicubic_skip=true \
    --scale $s --init "$work/teacher_x4_v2.safetensors" --data "$photos" --hr-downscale 2 --patch-size 48 --batch-size 8 \
    --steps 4000 --max-time 60m --lr 1e-4 --warmup 50 --schedule cosine --ema 0.999 --threads 1 --seed $s \
    --val-data "$bench/Set5" --val-every 1000 --run-dir "$work/teacher-x$s-v2" &
done
wait


# Stage 6 (parallel, about 25 min): the default students, edsr-lite distilled with logits-KD (the
# default method) from the v2 teachers, 8 patches of 32x32 LR pixels per step (on this CPU that
# recipe gave edsr-lite +0.5 dB over 600 steps of 16 x 48x48 in less time): x4 for 7200 steps;
# x3 and x2 for 4800 (one after the other on the second core). benchmarks/RESULTS.md ("frontier")
# says why edsr-lite: at this budget no student is both faster and better.
student() {  # student SCALE STEPS
  run "$work/student_x$1.safetensors" "${S[@]}" distill --teacher "$work/teacher_x$1_v2.safetensors" \
    --student-arch edsr-lite --data "$photos" --hr-downscale 2 --patch-size 32 --batch-size 8 --seed 0 \
    --steps "$2" --lr 2e-4 --threads 1 --method logits --val-data "$bench/Set5" --val-every 0 --checkpoint-every 400 \
    --teacher-cache-dir "$work/teacher-cache" --run-dir "$work/student-x$1"
}
student 4 7200 &
{ student 3 4800; student 2 4800; } &
wait

.venv/bin/python scripts/bundle_default_models.py \
  --teacher-x4 "$work/teacher_x4_v2.safetensors" --teacher-x3 "$work/teacher_x3_v2.safetensors" \
  --teacher-x2 "$work/teacher_x2_v2.safetensors" --student-x4 "$work/student_x4.safetensors" \
  --student-x3 "$work/student_x3.safetensors" --student-x2 "$work/student_x2.safetensors"
