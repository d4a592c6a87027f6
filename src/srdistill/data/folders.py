"""Find the training or validation images in a folder, and their low-resolution partners if any.

Layouts understood (``s`` is the scale):

* a folder of HR images (``DIV2K_train_HR/*.png``, a folder of photos): LR is generated;
* ``DIR/HR/*`` with ``DIR/LR_bicubic/X{s}/*`` (the benchmark layout: Set5, Set14);
* ``..._HR/`` with a sibling ``..._LR_bicubic/X{s}/`` (DIV2K as downloaded).

LR partners are matched by name: ``baby.png`` pairs with ``babyx4.png`` or ``baby.png`` (any
image extension). Only the top level of a folder is read; sub-folders (e.g. ``COPYRIGHT/``) and
files that are not images by extension are ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError, param

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm"})


@dataclass(frozen=True)
class ImagePair:
    hr: Path
    lr: Path | None  # None: generate LR from HR with the MATLAB-compatible bicubic


@dataclass
class FolderContents:
    root: Path
    hr_dir: Path
    lr_dir: Path | None
    pairs: list[ImagePair]
    ignored: list[Path] = field(default_factory=list)  # top-level files that are not images

    @property
    def paired(self) -> bool:
        return self.lr_dir is not None

    def describe(self) -> str:
        lr = f"LR from {self.lr_dir}" if self.lr_dir else "LR generated (MATLAB bicubic)"
        return f"{len(self.pairs)} image(s) in {self.hr_dir}, {lr}"


def _images_in(folder: Path) -> tuple[list[Path], list[Path]]:
    images, others = [], []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        (images if path.suffix.lower() in IMAGE_SUFFIXES else others).append(path)
    return images, others


def _lr_root(data: Path) -> tuple[Path, Path | None]:
    """(HR folder, LR_bicubic root or None)."""
    if (data / "HR").is_dir():
        root = data / "LR_bicubic"
        return data / "HR", root if root.is_dir() else None
    if data.name.endswith("_HR"):
        sibling = data.parent / (data.name[: -len("_HR")] + "_LR_bicubic")
        if sibling.is_dir():
            return data, sibling
    return data, None


def _scale_dir(lr_root: Path, scale: int) -> Path:
    wanted = lr_root / f"X{scale}"
    if wanted.is_dir():
        return wanted
    present = sorted(d.name for d in lr_root.iterdir() if d.is_dir() and re.fullmatch(r"[Xx]\d+", d.name))
    raise DataError(
        f"scale mismatch: {lr_root} holds {', '.join(present) or 'no X<s> folders'} but {param('scale')} is {scale}; "
        f"pass the matching {param('scale')}, or remove {lr_root.name} to generate x{scale} LR on the fly"
    )


def _partner(hr: Path, lr_files: dict[str, Path], scale: int) -> Path | None:
    for stem in (f"{hr.stem}x{scale}", hr.stem, f"{hr.stem}_x{scale}"):
        if stem in lr_files:
            return lr_files[stem]
    return None


def find_images(data: str | Path, scale: int, *, what: str = "data") -> FolderContents:
    """The images of a dataset folder; raises DataError for a missing, empty or mismatched one.
    ``what`` is the parameter the caller took ``data`` as, for messages."""
    data = Path(data).expanduser()
    if not data.exists():
        raise DataError(f"{param(what)} folder {data} does not exist (check the path)")
    if not data.is_dir():
        raise DataError(f"{param(what)} {data} is a file; give the folder that holds the images")
    hr_dir, lr_root = _lr_root(data)
    images, others = _images_in(hr_dir)
    if not images:
        seen = f" ({len(others)} other file(s), e.g. {others[0].name}, are not images)" if others else ""
        raise DataError(
            f"{param(what)} folder {hr_dir} holds no images{seen}; give a folder of .png/.jpg HR images "
            f"or one with HR/ and LR_bicubic/X{scale}/"
        )
    if lr_root is None:
        return FolderContents(data, hr_dir, None, [ImagePair(p, None) for p in images], others)
    lr_dir = _scale_dir(lr_root, scale)
    lr_images, _ = _images_in(lr_dir)
    by_stem = {p.stem: p for p in lr_images}
    pairs = []
    for hr in images:
        lr = _partner(hr, by_stem, scale)
        if lr is None:
            raise DataError(
                f"{hr.name} in {hr_dir} has no LR partner in {lr_dir} (expected {hr.stem}x{scale}{hr.suffix}); "
                f"add it, or remove {lr_root.name} to generate LR on the fly"
            )
        pairs.append(ImagePair(hr, lr))
    return FolderContents(data, hr_dir, lr_dir, pairs, others)
