#!/usr/bin/env bash
# The main job on what ships with srdistill, nothing downloaded: set up .venv, distil the bundled
# EDSR-baseline teacher into a fresh edsr-lite student on the bundled sample photos (a few
# minutes on a 2-core CPU), upscale a held-out crop with it, print an evaluation table (bicubic /
# this student / the bundled distilled student / the teacher) and write a side-by-side comparison PNG.
#
# Nothing is evaluated on what any of these models was trained on: the table is on Set5 when a
# shared data folder is beside the project (or at $SRDISTILL_SHARED), else on the bundled
# held-out crops (CC0 photos none of the models saw); its "set" column names the one used.
#
#   bash scripts/demo.sh [OUT_DIR]          # default OUT_DIR: demo-output/ (replaced each run)
#
# DEMO_STEPS / DEMO_TIME shorten or lengthen the distillation (defaults 1000 steps or 4 minutes,
# whichever comes first).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
out=${1:-demo-output}
rm -rf "$out" && mkdir -p "$out"
S=.venv/bin/srdistill
samples=$(.venv/bin/python -c "from srdistill.bundled import samples_dir; print(samples_dir())")
held_out=$(.venv/bin/python -c "from srdistill.bundled import held_out_dir; print(held_out_dir())")
set5=${SRDISTILL_SHARED:-../shared}/data/benchmarks/Set5

echo "== distil the bundled x4 teacher into edsr-lite on $samples"
$S distill --teacher teacher-x4 --student-arch edsr-lite --data "$samples" \
  --steps "${DEMO_STEPS:-1000}" --max-time "${DEMO_TIME:-4m}" --batch-size 8 --patch-size 32 \
  --run-dir "$out/run" -o "$out/demo-student.safetensors"

photo=$(ls "$held_out"/*.png | head -1)
echo "== upscale $(basename "$photo") x4 with it"
$S upscale "$photo" -s 4 --model "$out/demo-student.safetensors" -o "$out/$(basename "${photo%.png}")_x4.png"

models=(-m "$out/demo-student.safetensors" -m student-x4 -m teacher-x4)
if [ -d "$set5" ]; then
  eval_data=$set5
else
  eval_data=$held_out
  echo "(Set5 not found at $set5: evaluating on the bundled held-out crops, photos no model here was trained on)"
fi
echo "== evaluate on $(basename "$eval_data") ($eval_data; PSNR/SSIM on Y, border = scale)"
$S eval "${models[@]}" --bicubic --data "$eval_data" -s 4

echo "== side-by-side comparison"
$S compare "$photo" --from-hr "${models[@]}" -o "$out/compare.png"
echo "demo outputs in $out/: demo-student.safetensors, the upscaled sample, compare.png"
