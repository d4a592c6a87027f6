#!/usr/bin/env python3
"""Regenerate src/srdistill/samples/: six 256x256 crops of CC0 / CC-BY-4.0 training photos.

    python scripts/make-samples.py              # write the PNGs and ATTRIBUTION.md
    python scripts/make-samples.py --check      # exit 1 if the files in the package differ

Each photo is first shrunk by 2 exactly as training does (``--hr-downscale 2``: srdistill's
MATLAB-style antialiased bicubic on uint8), which also cleans its JPEG artefacts, then cropped.
The author and licence written for each crop are read from the Debian copyright file the photo
came with, and anything other than CC0-1.0 or CC-BY-4.0 is refused (no share-alike, no GPL).
Photos: ../shared/data/train-photos, or ``apt-get install lomiri-wallpapers-16.04`` and
``--photos /usr/share/backgrounds/lomiri-wallpapers/16.04`` (or wherever the package puts them).
"""

from __future__ import annotations

import argparse
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


def crop_pixels(photos: Path, crop: Crop) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
    """The crop, and the photo's size (w, h) before and after downscaling."""
    full, _ = read_rgb(photos / crop.photo)
    half = bicubic_uint8(full, DOWNSCALE)
    if crop.y + SIZE > half.shape[0] or crop.x + SIZE > half.shape[1]:
        raise SystemExit(f"{crop.name}: {crop.x},{crop.y} + {SIZE} is outside {crop.photo} ({half.shape[1]}x{half.shape[0]} after downscaling)")
    pixels = np.ascontiguousarray(half[crop.y:crop.y + SIZE, crop.x:crop.x + SIZE])
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=PHOTOS, help="folder holding the source photos")
    parser.add_argument("--copyright", type=Path, default=None, help=f"Debian copyright file (default: PHOTOS/COPYRIGHT/{COPYRIGHT_FILE})")
    parser.add_argument("--out", type=Path, default=OUT, help="where to write the crops")
    parser.add_argument("--check", action="store_true", help="compare with the files in --out instead of writing")
    args = parser.parse_args()
    copyright_path = args.copyright or args.photos / "COPYRIGHT" / COPYRIGHT_FILE
    entries = copyright_entries(copyright_path.read_text(encoding="utf-8"))

    rows, problems = [], []
    for crop in CROPS:
        entry = entries.get(crop.photo)
        if entry is None or entry["license"] not in ALLOWED:
            raise SystemExit(f"{crop.photo}: licence {entry and entry['license']!r} in {copyright_path} is not one of {sorted(ALLOWED)}")
        pixels, full, half = crop_pixels(args.photos, crop)
        rows.append((crop, entry, full, half))
        target = args.out / crop.name
        if args.check:
            have = np.asarray(Image.open(target).convert("RGB")) if target.is_file() else None
            if have is None or have.shape != pixels.shape or not np.array_equal(have, pixels):
                problems.append(f"{target}: differs from a fresh crop")
        else:
            args.out.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(target, "PNG", optimize=True)
    text = attribution(rows)
    notes = args.out / "ATTRIBUTION.md"
    if args.check:
        if not notes.is_file() or notes.read_text(encoding="utf-8") != text:
            problems.append(f"{notes}: differs from what the script writes")
        extra = sorted({p.name for p in args.out.glob("*.png")} - {c.name for c in CROPS})
        problems += [f"{args.out / name}: not made by this script" for name in extra]
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    notes.write_text(text, encoding="utf-8")
    total = sum((args.out / c.name).stat().st_size for c in CROPS)
    print(f"wrote {len(CROPS)} crops ({total / 1e6:.2f} MB) and {notes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
