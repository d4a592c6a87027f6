"""Put trained default models into the package (``src/srdistill/weights/``), each with its scores.

    python scripts/bundle_default_models.py --teacher-x4 T4 --teacher-x2 T2 --student-x4 S4 --student-x2 S2

Each model is stored in float16 (half the size; the network still runs in float32 after loading),
then loaded back and evaluated on Set5, Set14 and McMaster (PSNR/SSIM on Y, border = scale) with
bicubic beside it; the scores, the source file's SHA-256 and the recipe go into the file's
provenance, which ``srdistill archs`` and ``srdistill inspect`` show. Run by
``scripts/train-default-models.sh`` as its last step.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from srdistill.evaluate import evaluate
from srdistill.models import file_sha256, load_model, save_model

ROOT = Path(__file__).resolve().parents[1]
SETS = ("Set5", "Set14", "McMaster")


def bundle(role: str, scale: int, source: Path, dest: Path, benchmarks: Path) -> dict:
    model = load_model(source)
    if model.scale != scale:
        sys.exit(f"{source} is x{model.scale}, expected x{scale} for {role}_x{scale}")
    model.net.half()
    with tempfile.TemporaryDirectory() as tmp:
        half = save_model(model, Path(tmp) / "half.safetensors")
        stored = load_model(half)  # what users will get: float16 weights in a float32 network
        scores = evaluate({role: stored}, [benchmarks / s for s in SETS], scale, bicubic=True)
    table = {}  # set -> this model's scores and bicubic's (what `archs` and the tests read)
    for r in scores.rows:
        key = "" if r.method == role else "bicubic_"
        table.setdefault(r.set, {}).update({f"{key}psnr_y": round(r.psnr, 3), f"{key}ssim_y": round(r.ssim, 4)})
    bundled = {
        "name": f"{role}-x{scale}",
        "source_sha256": file_sha256(source),
        "recipe": "scripts/train-default-models.sh",
        "stored_dtype": "float16",
    }
    model.metadata = stored.metadata
    save_model(model, dest / f"{role}_x{scale}.safetensors", overwrite=True,
               provenance={"bundled": bundled, "benchmarks": table})
    return {"name": bundled["name"], "benchmarks": table}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for role in ("teacher", "student"):
        for scale in (4, 2):
            ap.add_argument(f"--{role}-x{scale}", type=Path, required=True)
    ap.add_argument("--benchmarks", type=Path, default=ROOT.parent / "shared" / "data" / "benchmarks")
    ap.add_argument("--dest", type=Path, default=ROOT / "src" / "srdistill" / "weights")
    args = ap.parse_args()
    args.dest.mkdir(parents=True, exist_ok=True)
    print("| model | set | bicubic PSNR/SSIM | model PSNR/SSIM | gain dB |")
    print("|---|---|---|---|---:|")
    for role in ("teacher", "student"):
        for scale in (4, 2):
            info = bundle(role, scale, getattr(args, f"{role}_x{scale}"), args.dest, args.benchmarks)
            for set_name, row in info["benchmarks"].items():
                print(f"| {info['name']} | {set_name} | {row['bicubic_psnr_y']:.3f}/{row['bicubic_ssim_y']:.4f} | "
                      f"{row['psnr_y']:.3f}/{row['ssim_y']:.4f} | {row['psnr_y'] - row['bicubic_psnr_y']:+.3f} |")


if __name__ == "__main__":
    main()
