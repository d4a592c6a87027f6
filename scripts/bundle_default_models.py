"""Put trained default models into the package (``src/srdistill/weights/``), each with its scores.

    python scripts/bundle_default_models.py --teacher-x4 T4 --teacher-x2 T2 --student-x4 S4 --student-x2 S2

Each model is stored in float16 (half the size; the network still runs in float32 after loading),
then loaded back and evaluated on Set5, Set14 and McMaster (PSNR/SSIM on Y, border = scale) with
bicubic beside it; the scores, the source file's SHA-256 and the recipe go into the file's
provenance, which ``srdistill archs`` and ``srdistill inspect`` show. Run by
``scripts/train-default-models.sh`` as its last step.

    python scripts/bundle_default_models.py --rewrite-metadata [--data-root ../shared/data]

rewrites the bundled files' provenance into the current form (no local paths: data folders by
name, image count and content hash, files by name and SHA-256), every tensor byte unchanged.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch
from srdistill.bundled import bundled_models
from srdistill.data.folders import find_images
from srdistill.evaluate import evaluate, find_sets
from srdistill.io.model_files import read_model_file, replace_metadata
from srdistill.models import META_PREFIX, file_sha256, load_model, save_model
from srdistill.provenance import dataset_fingerprint, portable_provenance

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


def _find_folder(name: str, roots: list[Path]) -> Path | None:
    for root in roots:
        for candidate in (root / name, *root.glob(f"*/{name}")):
            if candidate.is_dir():
                return candidate
    return None


def _datasets_at_hand(prov: dict, roots: list[Path]) -> dict[str, dict]:
    """Fingerprints of the training and validation folders a file names, where a folder of that
    name with the recorded number of images is found under ``roots`` (else none: sha256 null)."""
    config, data = prov.get("config") or {}, prov.get("data") or {}
    scale = int(config.get("scale") or 4)
    found = {}
    for key, recorded in (("data", data.get("images")), ("val_data", data.get("validation_images"))):
        if not isinstance(config.get(key), str):
            continue
        name = Path(config[key]).name
        folder = _find_folder(name, roots)
        if folder is None:
            continue
        if key == "data":
            pairs = find_images(folder, scale).pairs
        else:
            pairs = [p for eval_set in find_sets(folder, scale) for p in eval_set.pairs]
        skipped = (data.get("skipped") or 0) if key == "data" else 0
        if recorded is None or len(pairs) == recorded + skipped:
            found[name] = dataset_fingerprint(folder, pairs)
    return found


def rewrite_metadata(path: Path, roots: list[Path]) -> tuple[dict, dict]:
    """Bring one bundled file's provenance into the current form; returns (before, after)."""
    before = read_model_file(path)
    prov = json.loads(before.metadata[META_PREFIX + "provenance"])
    new = portable_provenance(prov, datasets=_datasets_at_hand(prov, roots))
    metadata = {**before.metadata, META_PREFIX + "provenance": json.dumps(new, sort_keys=True)}
    data_before = _data_section(path)
    replace_metadata(path, metadata)
    after = read_model_file(path)
    if _data_section(path) != data_before or before.tensors.keys() != after.tensors.keys() or not all(
        torch.equal(before.tensors[k], after.tensors[k]) and before.tensors[k].dtype == after.tensors[k].dtype
        for k in before.tensors
    ):
        sys.exit(f"{path}: tensors changed while rewriting the metadata")  # cannot happen; say so loudly if it does
    return prov, new


def _data_section(path: Path) -> bytes:
    raw = path.read_bytes()
    return raw[8 + int.from_bytes(raw[:8], "little"):]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for role in ("teacher", "student"):
        for scale in (4, 2):
            ap.add_argument(f"--{role}-x{scale}", type=Path)
    ap.add_argument("--benchmarks", type=Path, default=ROOT.parent / "shared" / "data" / "benchmarks")
    ap.add_argument("--dest", type=Path, default=ROOT / "src" / "srdistill" / "weights")
    ap.add_argument("--rewrite-metadata", action="store_true",
                    help="rewrite the bundled files' provenance into the current form (weights unchanged) and stop")
    ap.add_argument("--data-root", type=Path, action="append",
                    help="where to look for the data folders the files name, to hash them (default ../shared/data)")
    args = ap.parse_args()
    if args.rewrite_metadata:
        roots = args.data_root or [ROOT.parent / "shared" / "data"]
        for model in bundled_models():
            _, after = rewrite_metadata(model.path, roots)
            data = after.get("data", {})
            print(f"{model.name}: data {data.get('data')}, validation {data.get('validation_data')}, init {after.get('init')}")
        return
    missing = [f"--{r}-x{s}" for r in ("teacher", "student") for s in (4, 2) if getattr(args, f"{r}_x{s}") is None]
    if missing:
        ap.error(f"the following arguments are required: {', '.join(missing)}")
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
