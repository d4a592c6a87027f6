#!/usr/bin/env python3
"""Regenerate src/srdistill/samples/: six 256x256 crops of CC0 / CC-BY-4.0 training photos, and
samples/held-out/: three 144x144 crops of CC0 photos that no bundled model was trained on.

    python scripts/make-samples.py              # write the PNGs and ATTRIBUTION.md
    python scripts/make-samples.py --check      # exit 1 if the files in the package differ
    python scripts/make-samples.py --held-out [--check] [--photos SKIMAGE_DATA]

Each photo is first shrunk by 2 exactly as training does (``--hr-downscale 2``: srdistill's
MATLAB-style antialiased bicubic on uint8), which also cleans its JPEG artefacts, then cropped.
The author and licence written for each crop are read from the Debian copyright file the photo
came with, and anything other than CC0-1.0 or CC-BY-4.0 is refused (no share-alike, no GPL).
Photos: ../shared/data/train-photos, or ``apt-get install lomiri-wallpapers-16.04`` and
``--photos /usr/share/backgrounds/lomiri-wallpapers/16.04`` (or wherever the package puts them).

Held-out photos are what the demo evaluates on where no benchmark set is at hand, so they must
not be training photos: ``--held-out`` refuses any whose name, bytes or thumbnail matches one in
``--train-photos``. The newer Lomiri wallpapers (``lomiri-wallpapers-20.04``) would be the natural
source, but all four of its photos are CC-BY-SA-3.0; the two colour photos scikit-image ships
(``apt-get install python3-skimage``, or ``pip download scikit-image`` unpacked: folder
``skimage/data``) are CC0, which the package states in its loaders' docstrings, read from there.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from srdistill.data.dataset import bicubic_uint8, read_rgb

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT / ".." / "shared" / "data" / "train-photos"
OUT = ROOT / "src" / "srdistill" / "samples"
SIZE = 256
DOWNSCALE = 2.0

ALLOWED = {
    "CC0-1.0": "https://creativecommons.org/publicdomain/zero/1.0/",
    "CC-BY-4.0": "https://creativecommons.org/licenses/by/4.0/",
}
PACKAGE = "lomiri-wallpapers-16.04"  # Debian binary package; source package lomiri-wallpapers
COPYRIGHT_FILE = "lomiri-wallpapers-16.04.txt"
UPSTREAM = "https://gitlab.com/ubports/development/core/lomiri-wallpapers"


@dataclass(frozen=True)
class Crop:
    name: str
    photo: str
    x: int  # top-left corner in the photo after downscaling by 2
    y: int
    content: str


CROPS = (
    Crop("dog.png", "friends_by_Aitzol_Berasategi.jpg", 301, 347, "a spaniel's curly fur, weathered wood, fabric"),
    Crop("brushes.png", "Picture_1A_by_freespace.jpg", 230, 130, "paint-brush bristles in saturated colours"),
    Crop("rocks.png", "picosdeeuropa_by_Aitzol_Berasategi.jpg", 914, 261, "limestone edges, snow patches, a strip of sky"),
    Crop("dandelion.png", "seeding_by_Clements_Engelhardt.jpg", 600, 300, "fine dandelion seed filaments against the light"),
    Crop("stream.png", "life_by_Aitzol_Berasategi.jpg", 618, 355, "rocks, running water and foliage"),
    Crop("sundial.png", "sunset_by_Aitzol_Berasategi.jpg", 1530, 900, "engraved markings and lettering on a stone sundial"),
)


HELD_OUT = OUT / "held-out"
HELD_OUT_SIZE = 144  # the scikit-image photos are 600x400 and 451x300 before halving
SKIMAGE_DATA = Path("/usr/lib/python3/dist-packages/skimage/data")  # where python3-skimage puts them
SKIMAGE_UPSTREAM = "https://github.com/scikit-image/scikit-image"

HELD_OUT_CROPS = (
    Crop("cat.png", "chelsea.png", 40, 3, "a tabby cat's eyes, whiskers and fur"),
    Crop("cup.png", "coffee.png", 0, 20, "a glazed espresso cup and saucer on grained wood"),
    Crop("spoon.png", "coffee.png", 156, 56, "a steel spoon's highlights, saucer rim, wood grain"),
)


def copyright_entries(text: str) -> dict[str, dict[str, str]]:
    """``Files:`` stanzas of a Debian machine-readable copyright file, keyed by file name."""
    entries = {}
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for line in stanza.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if "Files" in fields and "License" in fields:
            for pattern in fields["Files"].split():
                entries[Path(pattern).name] = {"copyright": fields.get("Copyright", ""), "license": fields["License"]}
    return entries


def skimage_licences(data: Path) -> dict[str, dict[str, str]]:
    """``{file: {"copyright", "license"}}`` for the data files whose loader's docstring in
    scikit-image's source (``data/*.py``) says ``CC0 by the photographer (Name)``; nothing else
    counts, so a photo whose licence changes upstream is refused rather than shipped."""
    entries = {}
    for source in sorted(data.glob("*.py")):
        for loader in re.split(r"\ndef ", source.read_text(encoding="utf-8")):
            owner = re.search(r"CC0 by the photographer \(([^)]+)\)", loader)
            for name in re.findall(r"""_load\(['"]data/([^'"]+)['"]\)""", loader):
                if owner:
                    entries[name] = {"copyright": owner.group(1), "license": "CC0-1.0"}
    return entries


def thumbnail(path: Path) -> np.ndarray:
    """16x16 gray: the same photo re-encoded or resized still matches its thumbnail."""
    with Image.open(path) as im:
        im.draft("RGB", (64, 64))  # JPEGs decode at 1/8 size: fast for 200 MP of training photos
        return np.asarray(im.convert("L").resize((16, 16), Image.BILINEAR), dtype=np.float32)


def training_matches(photo: Path, train_photos: Path) -> list[str]:
    """Training photos that are ``photo`` by name, by bytes or by look (thumbnails within 4 gray levels)."""
    digest = hashlib.sha256(photo.read_bytes()).hexdigest()
    thumb = thumbnail(photo)
    found = []
    for other in sorted(train_photos.iterdir()):
        if not other.is_file() or other.suffix.lower() not in {".jpg", ".jpeg", ".png"}:
            continue
        if (other.stem.lower() == photo.stem.lower() or hashlib.sha256(other.read_bytes()).hexdigest() == digest
                or np.abs(thumbnail(other) - thumb).mean() < 4):
            found.append(other.name)
    return found


def crop_pixels(photos: Path, crop: Crop, size: int = SIZE) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
    """The crop, and the photo's size (w, h) before and after downscaling."""
    full, _ = read_rgb(photos / crop.photo)
    half = bicubic_uint8(full, DOWNSCALE)
    if crop.y + size > half.shape[0] or crop.x + size > half.shape[1]:
        raise SystemExit(f"{crop.name}: {crop.x},{crop.y} + {size} is outside {crop.photo} ({half.shape[1]}x{half.shape[0]} after downscaling)")
    pixels = np.ascontiguousarray(half[crop.y:crop.y + size, crop.x:crop.x + size])
    return pixels, (full.shape[1], full.shape[0]), (half.shape[1], half.shape[0])


def attribution(rows: list[tuple[Crop, dict[str, str], tuple[int, int], tuple[int, int]]]) -> str:
    lines = [
        "# Sample images",
        "",
        f"Six {SIZE}x{SIZE} PNG crops of photographs shipped with the Debian package `{PACKAGE}`",
        f"(source package `lomiri-wallpapers`, upstream {UPSTREAM}, directory `16.04/`),",
        "used only where their licence is CC0-1.0 or CC-BY-4.0. Each photo was downscaled by 2",
        "(MATLAB-style antialiased bicubic, as `srdistill train --hr-downscale 2` does) and then cropped;",
        "nothing else was changed. `scripts/make-samples.py` regenerates exactly these files.",
        "",
        "The photos are provided as-is, without warranties of any kind (see the licences linked below).",
        "The crops are modified versions of the originals and are offered under the same licence as",
        "the photo each comes from.",
        "",
    ]
    for crop, entry, full, half in rows:
        licence = entry["license"]
        lines += [
            f"## {crop.name}",
            "",
            f"- Source photo: `{crop.photo}` ({UPSTREAM}, `16.04/{crop.photo}`)",
            f"- Author / copyright: {entry['copyright']}",
            f"- Licence: {licence} ({ALLOWED[licence]})",
            f"- Debian package: `{PACKAGE}`",
            f"- Changes: downscaled by 2 from {full[0]}x{full[1]} to {half[0]}x{half[1]} (bicubic, antialiased), "
            f"then cropped to {SIZE}x{SIZE} at x={crop.x}, y={crop.y}",
            f"- Shows: {crop.content}",
            "",
        ]
    return "\n".join(lines)


def held_out_attribution(rows: list[tuple[Crop, dict[str, str], tuple[int, int], tuple[int, int]]]) -> str:
    lines = [
        "# Held-out images",
        "",
        f"{len(rows)} {HELD_OUT_SIZE}x{HELD_OUT_SIZE} PNG crops of CC0 photographs that scikit-image ships",
        f"(`skimage/data/`, upstream {SKIMAGE_UPSTREAM}; Debian package `python3-skimage`, PyPI `scikit-image`).",
        "None of them is among the photos the bundled models were trained on: `scripts/demo.sh` evaluates",
        "on them where no benchmark set is at hand. Each photo was downscaled by 2 (MATLAB-style",
        "antialiased bicubic, as for the training samples) and then cropped; nothing else was changed.",
        "`scripts/make-samples.py --held-out` regenerates exactly these files.",
        "",
        "The photographers dedicated the photos to the public domain (CC0-1.0), as scikit-image records",
        "in the docstrings of its data loaders (`skimage/data/_fetchers.py`); the crops are offered the",
        "same way, as-is and without warranties of any kind.",
        "",
    ]
    for crop, entry, full, half in rows:
        lines += [
            f"## {crop.name}",
            "",
            f"- Source photo: `{crop.photo}` ({SKIMAGE_UPSTREAM}, `skimage/data/{crop.photo}`)",
            f"- Author / copyright: {entry['copyright']}",
            f"- Licence: {entry['license']} ({ALLOWED[entry['license']]})",
            "- Source package: `python3-skimage` (Debian), `scikit-image` (PyPI)",
            f"- Changes: downscaled by 2 from {full[0]}x{full[1]} to {half[0]}x{half[1]} (bicubic, antialiased), "
            f"then cropped to {HELD_OUT_SIZE}x{HELD_OUT_SIZE} at x={crop.x}, y={crop.y}",
            f"- Shows: {crop.content}",
            "",
        ]
    return "\n".join(lines)


def render(crops, photos: Path, size: int, entries: dict, licence_source: Path, out: Path, check: bool):
    """Each crop's rows for the attribution; written to ``out``, or compared with it under ``check``
    (returns the differences found)."""
    rows, problems = [], []
    for crop in crops:
        entry = entries.get(crop.photo)
        if entry is None or entry["license"] not in ALLOWED:
            raise SystemExit(f"{crop.photo}: licence {entry and entry['license']!r} in {licence_source} is not one of {sorted(ALLOWED)}")
        pixels, full, half = crop_pixels(photos, crop, size)
        rows.append((crop, entry, full, half))
        target = out / crop.name
        if check:
            have = np.asarray(Image.open(target).convert("RGB")) if target.is_file() else None
            if have is None or have.shape != pixels.shape or not np.array_equal(have, pixels):
                problems.append(f"{target}: differs from a fresh crop")
        else:
            out.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(target, "PNG", optimize=True)
    return rows, problems


def finish(crops, rows, problems: list[str], text: str, out: Path, check: bool) -> int:
    notes = out / "ATTRIBUTION.md"
    if check:
        if not notes.is_file() or notes.read_text(encoding="utf-8") != text:
            problems.append(f"{notes}: differs from what the script writes")
        extra = sorted({p.name for p in out.glob("*.png")} - {c.name for c in crops})
        problems += [f"{out / name}: not made by this script" for name in extra]
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    notes.write_text(text, encoding="utf-8")
    total = sum((out / c.name).stat().st_size for c in crops)
    print(f"wrote {len(crops)} crops ({total / 1e6:.2f} MB) and {notes}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--held-out", action="store_true", help="make samples/held-out/ from scikit-image's CC0 photos instead")
    parser.add_argument("--photos", type=Path, default=None,
                        help=f"folder holding the source photos (default {PHOTOS}; with --held-out {SKIMAGE_DATA})")
    parser.add_argument("--copyright", type=Path, default=None, help=f"Debian copyright file (default: PHOTOS/COPYRIGHT/{COPYRIGHT_FILE})")
    parser.add_argument("--train-photos", type=Path, default=PHOTOS, help="the training photos held-out ones must not be among")
    parser.add_argument("--out", type=Path, default=None, help=f"where to write the crops (default {OUT}, with --held-out {HELD_OUT})")
    parser.add_argument("--check", action="store_true", help="compare with the files in --out instead of writing")
    args = parser.parse_args()
    if args.held_out:
        photos, out = args.photos or SKIMAGE_DATA, args.out or HELD_OUT
        if not (args.train_photos / "COPYRIGHT").is_dir():
            raise SystemExit(f"--train-photos {args.train_photos}: not the training photos folder (no COPYRIGHT/); "
                             "held-out photos are only checked against the real one")
        for photo in sorted({c.photo for c in HELD_OUT_CROPS}):
            if matches := training_matches(photos / photo, args.train_photos):
                raise SystemExit(f"{photos / photo} is a training photo ({', '.join(matches)} in {args.train_photos}): not held out")
        rows, problems = render(HELD_OUT_CROPS, photos, HELD_OUT_SIZE, skimage_licences(photos), photos, out, args.check)
        return finish(HELD_OUT_CROPS, rows, problems, held_out_attribution(rows), out, args.check)

    photos, out = args.photos or PHOTOS, args.out or OUT
    copyright_path = args.copyright or photos / "COPYRIGHT" / COPYRIGHT_FILE
    entries = copyright_entries(copyright_path.read_text(encoding="utf-8"))
    rows, problems = render(CROPS, photos, SIZE, entries, copyright_path, out, args.check)
    return finish(CROPS, rows, problems, attribution(rows), out, args.check)


if __name__ == "__main__":
    sys.exit(main())
