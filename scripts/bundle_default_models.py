"""Put trained default models into the package (``src/srdistill/weights/``), each with its scores.

    python scripts/bundle_default_models.py --teacher-x4 T4 --teacher-x3 T3 --student-x4 S4 ...

Any subset of the six files (teacher and student at x2, x3, x4) may be given. Each model is stored in float16 (half the size; the network still runs in float32 after loading),
then loaded back and evaluated on Set5, Set14 and McMaster (PSNR/SSIM on Y, border = scale) with
bicubic beside it; the scores, the source file's SHA-256 and the recipe go into the file's
provenance, which ``srdistill archs`` and ``srdistill inspect`` show. A bundled file is replaced
only when the new model beats it on all three sets (``--replace-anyway`` overrides). Run by
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
ROLES = ("teacher", "student")
SCALES = (4, 3, 2)


def bundled_scores(path: Path) -> dict | None:
    """The per-set scores recorded in a bundled file's provenance, or None (no such file)."""
    if not path.is_file():
        return None
    prov = json.loads(read_model_file(path).metadata.get(META_PREFIX + "provenance", "{}"))
    return prov.get("benchmarks")


def improves_everywhere(new: dict, old: dict | None) -> bool:
    """Whether PSNR-Y rises on every set the old file recorded (True when there is no old file)."""
    if not old:
        return True
    return all(s in new and new[s]["psnr_y"] > old[s]["psnr_y"] for s in SETS if s in old)


def bundle(role: str, scale: int, source: Path, dest: Path, benchmarks: Path, replace_anyway: bool = False) -> dict:
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
    target = dest / f"{role}_x{scale}.safetensors"
    old = bundled_scores(target)
    replaced = replace_anyway or improves_everywhere(table, old)
    if replaced:
        model.metadata = stored.metadata
        save_model(model, target, overwrite=True, provenance={"bundled": bundled, "benchmarks": table})
    return {"name": bundled["name"], "benchmarks": table, "old": old or {}, "replaced": replaced}


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
    for role in ROLES:
        for scale in SCALES:
            ap.add_argument(f"--{role}-x{scale}", type=Path)
    ap.add_argument("--replace-anyway", action="store_true",
                    help="replace a bundled file even where the new model does not beat it on every set")
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
    given = [(r, s) for r in ROLES for s in SCALES if getattr(args, f"{r}_x{s}") is not None]
    if not given:
        ap.error("give at least one model, e.g. --student-x4 FILE")
    args.dest.mkdir(parents=True, exist_ok=True)
    print("| model | set | bicubic PSNR/SSIM | bundled before | new PSNR/SSIM | gain over bicubic | bundled |")
    print("|---|---|---|---|---|---:|---|")
    for role, scale in given:
        info = bundle(role, scale, getattr(args, f"{role}_x{scale}"), args.dest, args.benchmarks, args.replace_anyway)
        for set_name, row in info["benchmarks"].items():
            old = info["old"].get(set_name)
            before = f"{old['psnr_y']:.3f}/{old['ssim_y']:.4f}" if old else "-"
            print(f"| {info['name']} | {set_name} | {row['bicubic_psnr_y']:.3f}/{row['bicubic_ssim_y']:.4f} | {before} | "
                  f"{row['psnr_y']:.3f}/{row['ssim_y']:.4f} | {row['psnr_y'] - row['bicubic_psnr_y']:+.3f} | "
                  f"{'new' if info['replaced'] else 'kept the old file'} |")

if __name__ == "__main__":
    main()
