"""Distil a teacher into a small student from Python: plan first (checks everything, reads no
data), then train, then look at what was written.

    python examples/distill_with_the_api.py --teacher swinir_x4.safetensors --student-arch edsr-lite \
        --data DIV2K/DIV2K_train_HR --val-data benchmark/Set5 --steps 20000 --batch-size 16 \
        --patch-size 48 --output edsr-lite-x4.safetensors

Without --teacher it builds a tiny untrained EDSR teacher, and without --data it writes a few
synthetic images, so the example always runs (the result then only shows the mechanics). The
default budget is a demonstration; real runs need thousands of steps (docs/distilling.md).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

import srdistill
from srdistill.distill.api import distill, plan_distillation
from srdistill.train.progress import TrainCallback


class PrintProgress(TrainCallback):
    """The engine reports through a callback (the CLI draws progress bars with one)."""

    def on_message(self, text: str) -> None:
        print(f"  note: {text}")

    def on_validation(self, step: int, result: dict) -> None:
        print(f"  step {step}: validation PSNR-Y {result['psnr_y']:.2f} dB")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", type=Path, help="teacher model file (default: a tiny untrained EDSR)")
    parser.add_argument("--student-arch", default="edsr-lite", help="student preset or arch id")
    parser.add_argument("--student-opt", action="append", default=[], metavar="KEY=VALUE",
                        help="student hyperparameter override, e.g. n_feats=16 (repeatable)")
    parser.add_argument("--method", default="mipkd", help="mipkd (the paper's method), mipkd-lite, logits, fitnet, fakd or scratch")
    parser.add_argument("--data", type=Path, help="folder of training images (default: synthetic images)")
    parser.add_argument("--val-data", type=Path, help="validation folder, e.g. a Set5 folder")
    parser.add_argument("--val-fraction", type=float, default=0.25,
                        help="without --val-data: hold out this share of --data for validation")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--patch-size", type=int, default=32, help="LR patch side in pixels")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: automatic)")
    parser.add_argument("--run-dir", type=Path, help="run folder (default: a temporary folder)")
    parser.add_argument("--output", type=Path, help="where to write the student (default: in the run folder)")
    return parser.parse_args()


def tiny_teacher(folder: Path) -> Path:
    teacher = srdistill.build_model("edsr", scale=4, hparams={"n_resblocks": 4, "n_feats": 16, "res_scale": 1.0})
    return srdistill.save_model(teacher, folder / "tiny-edsr-teacher-x4.safetensors")


def synthetic_images(folder: Path, count: int = 4) -> Path:
    """Gradients with noise: enough texture for the patches, nothing to learn from."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        ramp = np.linspace(0, 255, 160)[None, :, None] * np.ones((128, 1, 3))
        img = (ramp + rng.normal(0, 16, (128, 160, 3))).clip(0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"synthetic{i}.png")
    return folder


def main() -> None:
    args = parse_args()
    # A temporary folder only for what was not given (tiny teacher, images, run folder).
    needs_scratch = args.teacher is None or args.data is None or args.run_dir is None
    scratch = Path(tempfile.mkdtemp(prefix="srdistill-example-")) if needs_scratch else None
    teacher = args.teacher or tiny_teacher(scratch)
    data = args.data or synthetic_images(scratch / "images")
    student_options = dict(item.split("=", 1) for item in args.student_opt)

    # 1. The plan: teacher loaded and detected, student built, boundaries matched, method options
    #    typed and checked. Mistakes surface here, before any image is read.
    plan = plan_distillation(teacher, args.student_arch, method=args.method, student_options=student_options)
    print(f"teacher {plan.teacher.arch} x{plan.teacher.scale} ({plan.teacher.num_params:,} parameters) -> "
          f"student {args.student_arch} ({plan.student.num_params:,} parameters), method {plan.method.id}")
    for row in plan.summary(args.patch_size)["boundaries"]:
        print(f"  boundary {row['boundary']}: teacher {row['teacher_block']} ({row['teacher_channels']} ch) "
              f"<-> student {row['student_block']} ({row['student_channels']} ch)")

    # 2. Training: the engine options are those of `srdistill train`, as keyword arguments.
    result = distill(
        teacher,
        args.student_arch,
        data,
        method=args.method,
        student_options=student_options,
        steps=args.steps,
        batch_size=args.batch_size,
        patch_size=args.patch_size,
        threads=args.threads,
        val_data=str(args.val_data) if args.val_data else None,
        val_fraction=None if args.val_data else args.val_fraction,
        run_dir=str(args.run_dir or scratch / "run"),
        output=str(args.output) if args.output else None,
        callback=PrintProgress(),
    )
    val = result.last_val
    print(f"trained {result.steps} steps in {result.elapsed:.1f} s (stopped by {result.stopped}), "
          f"final loss {result.final_loss:.4f}"
          + (f", validation PSNR-Y {val['psnr_y']:.2f} dB" if val else ""))

    # 3. The output is the plain student: a fresh build of the preset loads it; the metadata
    #    records how it was distilled.
    student = srdistill.load_model(result.output)
    record = student.metadata["provenance"]
    print(f"wrote {result.output}: {student.arch} x{student.scale}, {student.num_params:,} parameters, "
          f"method {record['method']}, boundaries {record['boundaries']}")


if __name__ == "__main__":
    main()
