"""Distil -> export -> run in ONNX Runtime: a student that ships without PyTorch.

    python examples/deploy_a_student.py --steps 600 --data ../shared/data/train-photos

1. Distil the bundled x4 teacher into ``span-s`` (the SPAN-style student): the output is written
   fused (the re-parameterised convolutions merged into plain 3x3 ones).
2. Export it to ONNX: dynamic batch/height/width, input ``input``, output ``output``, checked
   against PyTorch with ONNX Runtime on two sizes, metadata (arch, scale, provenance) inside.
3. Run the .onnx file with nothing but onnxruntime, numpy and Pillow, as a deployment would.

Without --data the bundled sample photos are the training images. The default budget (20 steps)
shows the mechanics in a minute; a useful student needs hundreds to thousands of steps.
Needs the extra: pip install 'srdistill[onnx]'.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

import srdistill
from srdistill.distill.api import distill
from srdistill.export import export_model

SAMPLES = Path(srdistill.__file__).parent / "samples"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default="teacher-x4", help="teacher model file or bundled name")
    parser.add_argument("--student-arch", default="span-s", help="student preset (span-s, span-m, edsr-lite, ...)")
    parser.add_argument("--data", type=Path, default=SAMPLES, help="folder of training photos")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", type=Path, help="folder for the student and its .onnx (default: a temporary folder)")
    return parser.parse_args()


def run_onnx(onnx_file: Path, image_file: Path, output_file: Path) -> tuple[int, int]:
    """The deployment side: onnxruntime + numpy + Pillow, no srdistill, no torch."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    scale = int(session.get_modelmeta().custom_metadata_map["srdistill.scale"])
    rgb = np.asarray(Image.open(image_file).convert("RGB"), dtype=np.float32) / 255.0
    batch = rgb.transpose(2, 0, 1)[None]  # N x 3 x H x W in [0, 1]
    (sr,) = session.run(["output"], {"input": batch})
    out = (sr[0].transpose(1, 2, 0).clip(0, 1) * 255.0 + 0.5).astype(np.uint8)
    Image.fromarray(out).save(output_file)
    assert out.shape[:2] == (rgb.shape[0] * scale, rgb.shape[1] * scale)
    return out.shape[1], out.shape[0]


def main() -> None:
    args = parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="srdistill-deploy-"))
    out.mkdir(parents=True, exist_ok=True)

    # 1. Distil. Small patches and batches keep the default run to about a minute on two cores.
    student_file = out / f"{args.student_arch}-x4.safetensors"
    result = distill(args.teacher, args.student_arch, args.data, method="logits", steps=args.steps, batch_size=4,
                     patch_size=32, threads=1, run_dir=str(out / "run"), output=str(student_file), overwrite=True)
    student = srdistill.load_model(result.output)
    print(f"distilled {args.student_arch} for {result.steps} steps: {student.num_params:,} parameters "
          f"(fused: {student.hparams.get('fused')}), {result.output}")

    # 2. Export, checked with ONNX Runtime against PyTorch before the file is written.
    exported = export_model(student, out / f"{args.student_arch}-x4.onnx", overwrite=True)
    for shape, diff in exported.checks:
        print(f"  check at input {'x'.join(map(str, shape))}: max |onnx - torch| = {diff:.1e}")
    print(f"exported {exported.path} (opset {exported.opset}, {exported.precision})")

    # 3. Run it the way an application would.
    photo = SAMPLES / "held-out" if (SAMPLES / "held-out").is_dir() else SAMPLES
    lr = Image.open(sorted(photo.glob("*.png"))[0]).convert("RGB")
    lr = lr.resize((lr.width // 4, lr.height // 4), Image.BICUBIC)
    lr.save(out / "lr.png")
    width, height = run_onnx(exported.path, out / "lr.png", out / "sr.png")
    print(f"onnxruntime upscaled {lr.width}x{lr.height} -> {width}x{height}: {out / 'sr.png'}")


if __name__ == "__main__":
    main()
