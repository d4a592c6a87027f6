"""Samples whose only label is the teacher's output: unlabeled images, zoom-in and zoom-out.

Four kinds of training sample, chosen per sample:

* ``paired``: an LR patch and its HR patch (the ordinary stream, :class:`~.dataset.PatchDataset`);
* ``unlabeled``: a crop of an image from a folder of images at the resolution the student
  receives (no HR exists);
* ``zoom-in``: a patch-sized crop of a paired image's *HR* image, fed to the student as if it
  were LR (DUKD's zoom-in: the teacher says what its x-times magnification looks like);
* ``zoom-out``: a crop of a paired image's LR image shrunk once more by the scale with the same
  MATLAB bicubic that made the LR.

Everything but ``paired`` is labelled by the teacher alone; those samples may also get a
*consistency* transform (a flip or transpose the student's input goes through and its output is
taken back through, distill/methods/base.py).

Like the paired stream, every choice is a pure function of ``(seed, i)`` for global sample ``i``,
each on its own sub-stream: kind, image, crop, flip and consistency draw. A paired sample ``i``
is exactly the paired stream's sample ``i``; only the samples that became another kind differ.

Which images may be unlabeled: the folder must hold images of one resolution only. An image
whose size is the scale times another's (each side ``s*h <= H < s*h + s``, how an LR image's size
follows from its HR) is taken for an HR image next to its LR copy, and the folder is refused.

Memory: every unlabeled image is decoded once to be checked, but the decoded pixels are kept only
under the paired images' policy (data/dataset.py, the engine's ``cache`` setting): ``memory``
keeps them, ``none`` keeps none, ``auto`` keeps them while they fit in what is left of
``CACHE_MEMORY_SHARE`` of the available memory once the paired images are cached. One mode for
the whole folder: over the budget, none are kept and each sample decodes its image again (slow,
but a folder of thousands of frames then needs no more memory than one). Samples are the same
either way, since they depend on the image sizes alone, which are always kept.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from ..errors import DataError, ImageError, UsageError, param
from .dataset import DataWarning, PatchDataset, PatchPlan, apply_transform, bicubic_uint8, cache_budget, read_rgb
from .folders import IMAGE_SUFFIXES

PAIRED, UNLABELED, ZOOM_IN, ZOOM_OUT = "paired", "unlabeled", "zoom-in", "zoom-out"
KINDS = (PAIRED, UNLABELED, ZOOM_IN, ZOOM_OUT)
TEACHER_ONLY_KINDS = (UNLABELED, ZOOM_IN, ZOOM_OUT)
# New sub-streams of the seed (data/dataset.py uses 1..3): adding kinds changes none of the old ones.
_KIND_STREAM, _UNLABELED_ORDER_STREAM, _UNLABELED_PATCH_STREAM, _ZOOM_ORDER_STREAM, _ZOOM_PATCH_STREAM, _CONSISTENCY_STREAM = (
    11, 12, 13, 14, 15, 16)
# Share of samples drawn from the unlabeled folder when paired data is given too and no ratio is.
DEFAULT_UNLABELED_RATIO = 0.5


@dataclass(frozen=True)
class TeacherLabelled:
    """What a run adds to its paired data: all zero/None is the plain paired stream."""

    unlabeled: str | Path | None = None  # folder of images at the student's input resolution
    unlabeled_ratio: float | None = None  # share of samples from it (None: 0.5 with paired data, else 1)
    zoom_in: float = 0.0  # probability per paired-image sample
    zoom_out: float = 0.0
    consistency: float = 0.0  # probability per teacher-labelled sample

    @property
    def active(self) -> bool:
        return self.unlabeled is not None or self.zoom_in > 0 or self.zoom_out > 0 or self.consistency > 0

    def ratio(self, has_paired: bool) -> float:
        if self.unlabeled is None:
            return 0.0
        if not has_paired:
            return 1.0
        return DEFAULT_UNLABELED_RATIO if self.unlabeled_ratio is None else float(self.unlabeled_ratio)

    def check(self, *, has_paired: bool) -> None:
        """Refuse settings that cannot work, before any data is read (UsageError, one line)."""
        for name in ("zoom_in", "zoom_out", "consistency"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise UsageError(f"{param(name)} is a probability per sample, in [0, 1]; got {value:g}")
        if self.zoom_in + self.zoom_out > 1.0:
            raise UsageError(
                f"{param('zoom_in')} {self.zoom_in:g} + {param('zoom_out')} {self.zoom_out:g} is more than 1: they share "
                f"each paired-image sample; lower one of them"
            )
        if self.unlabeled_ratio is not None:
            if self.unlabeled is None:
                raise UsageError(f"{param('unlabeled_ratio')} is the share of samples from {param('unlabeled')} DIR, which is not given; add it or drop the ratio")
            if not 0.0 <= self.unlabeled_ratio <= 1.0:
                raise UsageError(f"{param('unlabeled_ratio')} is a share of the samples, in [0, 1]; got {self.unlabeled_ratio:g}")
            if not has_paired and self.unlabeled_ratio < 1.0:
                raise UsageError(
                    f"{param('unlabeled_ratio')} {self.unlabeled_ratio:g} mixes {param('unlabeled')} with paired data, but no {param('data')} is given; "
                    f"add {param('data')} DIR or drop the ratio"
                )
        if (self.zoom_in > 0 or self.zoom_out > 0) and not has_paired:
            raise UsageError(
                f"{param('zoom_in')}/{param('zoom_out')} crop the paired images (HR for zoom-in, LR for zoom-out), but no {param('data')} "
                f"is given; add {param('data')} DIR of HR images"
            )
        if self.consistency > 0 and self.unlabeled is None and self.zoom_in == 0 and self.zoom_out == 0:
            raise UsageError(
                f"{param('consistency')} applies to teacher-labelled samples and this run has none; add {param('unlabeled')} DIR, "
                f"{param('zoom_in')} P or {param('zoom_out')} P"
            )
        if self.unlabeled is not None:
            find_unlabeled(self.unlabeled)  # a missing or empty folder fails here, before any model work

    def as_dict(self) -> dict[str, Any]:
        return {
            "unlabeled": str(self.unlabeled) if self.unlabeled is not None else None,
            "unlabeled_ratio": self.unlabeled_ratio,
            "zoom_in": self.zoom_in,
            "zoom_out": self.zoom_out,
            "consistency": self.consistency,
        }


# -- the unlabeled folder ------------------------------------------------------------------------
@dataclass
class UnlabeledSet:
    """The checked unlabeled images: names and sizes always, decoded pixels only when cached."""

    folder: Path
    names: list[str]
    sizes: list[tuple[int, int]]  # (H, W) of each image, what the sampling plan needs
    pixels: list[np.ndarray] | None = None  # H x W x 3 uint8 per image; None: decoded per sample
    skipped: list[str] = field(default_factory=list)

    @property
    def cached(self) -> bool:  # read by the engine like ImageSet.cached (worker count)
        return self.pixels is not None

    def __len__(self) -> int:
        return len(self.names)

    def arrays(self, i: int) -> np.ndarray:
        """Image ``i`` as H x W x 3 uint8, from memory or decoded again from its file."""
        if self.pixels is not None:
            return self.pixels[i]
        path = self.folder / self.names[i]
        try:
            pixels, _ = read_rgb(path)
        except (ImageError, OSError, ValueError) as exc:
            raise DataError(
                f"unlabeled image {path} could be read at start-up but not now ({exc}); "
                f"leave the {param('unlabeled')} folder alone while a run uses it"
            ) from exc
        if pixels.shape[:2] != self.sizes[i]:
            h, w = self.sizes[i]
            raise DataError(
                f"unlabeled image {path} is now {pixels.shape[1]}x{pixels.shape[0]}, it was {w}x{h} at start-up; "
                f"leave the {param('unlabeled')} folder alone while a run uses it"
            )
        return pixels

    @property
    def megapixels(self) -> float:
        return sum(h * w for h, w in self.sizes) / 1e6

    @property
    def nbytes(self) -> int:
        """Memory its decoded pixels hold (0 when not cached)."""
        return sum(im.nbytes for im in self.pixels) if self.pixels is not None else 0


def find_unlabeled(folder: str | Path) -> list[Path]:
    """The image files at the top level of ``folder``; DataError for a missing or empty one."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        what = "is a file" if root.exists() else "does not exist"
        raise DataError(f"{param('unlabeled')} folder {root} {what}; give the folder that holds the low-resolution images")
    files = sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(
            f"{param('unlabeled')} folder {root} holds no images (.png, .jpg, ...; only its top level is read); "
            f"point it at the folder of low-resolution images"
        )
    return files


def load_unlabeled(folder: str | Path, *, scale: int, patch_size: int, budget: float = math.inf) -> UnlabeledSet:
    """Decode and check every image, keeping the pixels only if all of them fit in ``budget``
    bytes (data/dataset.py :func:`cache_budget`); unreadable or too small ones are skipped with a warning, and a
    folder with none left, or one that mixes HR and LR sizes, is refused (DataError)."""
    files = find_unlabeled(folder)
    names, sizes, skipped, problems = [], [], [], []
    pixels: list[np.ndarray] | None = []
    used = 0
    too_small = 0
    for path in files:
        try:
            image, _ = read_rgb(path)
        except (ImageError, OSError, ValueError) as exc:
            skipped.append(f"{path.name}: {exc}")
            problems.append(f"skipping unlabeled image {path}: {exc}")
            continue
        h, w = image.shape[:2]
        if h < patch_size or w < patch_size:
            too_small += 1
            skipped.append(f"{path.name}: {w}x{h} is smaller than one {patch_size}x{patch_size} patch")
            problems.append(f"skipping unlabeled image {path}: {w}x{h} is smaller than one {patch_size}x{patch_size} patch")
            continue
        names.append(path.name)
        sizes.append((h, w))
        used += image.nbytes
        if pixels is not None and used <= budget:
            pixels.append(image)
        else:  # one mode for the whole folder, and memory stays flat from here on
            pixels = None
    root = Path(folder).expanduser()
    if not names:
        if too_small == len(files):
            raise DataError(
                f"every image in the {param('unlabeled')} folder {root} is smaller than one {patch_size}x{patch_size} patch "
                f"(the student's input size); use a smaller {param('patch_size')} or larger images"
            )
        raise DataError(f"none of the {len(files)} image(s) in the {param('unlabeled')} folder {root} could be read (first problem: {skipped[0]}); fix or replace the files")
    _refuse_mixed_resolutions(root, names, sizes, scale)
    for problem in problems:
        warnings.warn(problem, DataWarning, stacklevel=2)
    return UnlabeledSet(root, names, sizes, pixels, skipped)


def _refuse_mixed_resolutions(root: Path, names: list[str], sizes: list[tuple[int, int]], scale: int) -> None:
    if scale < 2:
        return
    by_size = {}
    for name, size in zip(names, sizes):
        by_size.setdefault(size, name)
    for name, (h, w) in zip(names, sizes):
        small = by_size.get((h // scale, w // scale))
        if small is not None:
            sh, sw = h // scale, w // scale
            raise DataError(
                f"the {param('unlabeled')} folder {root} mixes resolutions: {name} is {w}x{h}, x{scale} of {small} ({sw}x{sh}), "
                f"like an HR image next to its LR copy; it must hold only images at the resolution the student receives: move the larger ones out"
            )


# -- the sample stream ---------------------------------------------------------------------------
@dataclass(frozen=True)
class SamplePlan:
    kind: str
    image: int  # paired image (paired, zoom-in, zoom-out) or unlabeled image
    top: int  # in the input's own image: LR (paired, unlabeled), HR (zoom-in), LR shrunk again (zoom-out)
    left: int
    transform: int  # augmentation flip/rotation of the input (and of the HR patch of a paired sample)
    consistency: int  # 0, or the flip/transpose (apply_transform code) the student's input goes through


class TeacherLabelledDataset(Dataset):
    """Item ``i`` is global sample ``i`` of the mixed stream; see the module notes.

    Items hold ``lr`` (the student's input before any consistency transform), ``hr`` (the HR patch;
    zeros for teacher-labelled samples; absent when the run has no paired data), ``teacher_only``,
    ``consistency``, ``index`` and ``image`` (the sample's source in :meth:`cache_sources`).
    """

    def __init__(self, paired: PatchDataset | None, unlabeled: UnlabeledSet | None, spec: TeacherLabelled, *,
                 scale: int, patch_size: int, seed: int, augment: bool = True):
        self.paired, self.unlabeled, self.spec = paired, unlabeled, spec
        self.scale, self.patch_size, self.seed, self.augment = scale, patch_size, int(seed), augment
        self.ratio = spec.ratio(paired is not None)
        self.images = paired.images if paired is not None else unlabeled  # the engine reads .cached/.skipped
        self.zoom_out_images: list[np.ndarray] = []
        self.zoom_out_sources: list[int] = []  # paired image of each zoom-out image
        self._zoom_out_of: dict[int, int] = {}  # paired image -> its zoom-out image
        if paired is not None and spec.zoom_out > 0:
            self._shrink_for_zoom_out()

    def _shrink_for_zoom_out(self) -> None:
        images = self.paired.images
        largest = (0, 0)
        for i in range(len(images.images)):
            lr = images.arrays(i)[1]
            largest = max(largest, lr.shape[:2], key=min)
            small = bicubic_uint8(lr, self.scale)
            if small.shape[0] >= self.patch_size and small.shape[1] >= self.patch_size:
                self.zoom_out_images.append(small)
                self._zoom_out_of[i] = len(self.zoom_out_sources)
                self.zoom_out_sources.append(i)
        if not self.zoom_out_images:
            p, s = self.patch_size, self.scale
            raise DataError(
                f"{param('zoom_out')} shrinks each LR image x{s} again, and no training image's LR is then one {p}x{p} patch "
                f"(LR at least {p * s}x{p * s}; the largest here is {largest[1]}x{largest[0]}); "
                f"use a smaller {param('patch_size')}, larger images, or leave {param('zoom_out')} out"
            )

    def __len__(self) -> int:
        return len(self.paired) if self.paired is not None else len(self.unlabeled)

    @property
    def cached(self) -> bool:
        """Whether every image a sample is cut from is held in memory (the engine picks its loader workers by it)."""
        return (self.paired is None or self.paired.images.cached) and (self.unlabeled is None or self.unlabeled.cached)

    # -- choices ----------------------------------------------------------------------------------
    def kind(self, index: int) -> str:
        a, b = np.random.default_rng([self.seed, _KIND_STREAM, index]).random(2)
        if self.unlabeled is not None and (self.paired is None or a < self.ratio):
            return UNLABELED
        if b < self.spec.zoom_in:
            return ZOOM_IN
        if b < self.spec.zoom_in + self.spec.zoom_out:
            return ZOOM_OUT
        return PAIRED

    @functools.lru_cache(maxsize=4)  # noqa: B019 - one dataset per run; consecutive epochs only
    def _order(self, stream: int, count: int, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, stream, epoch]).permutation(count)

    def _visit(self, stream: int, count: int, index: int) -> int:
        return int(self._order(stream, count, index // count)[index % count])

    def _crop(self, stream: int, index: int, h: int, w: int) -> tuple[int, int, int]:
        rng = np.random.default_rng([self.seed, stream, index])
        top = int(rng.integers(0, h - self.patch_size + 1))
        left = int(rng.integers(0, w - self.patch_size + 1))
        return top, left, int(rng.integers(0, 8)) if self.augment else 0

    def _consistency(self, index: int) -> int:
        if self.spec.consistency <= 0:
            return 0
        rng = np.random.default_rng([self.seed, _CONSISTENCY_STREAM, index])
        return int(rng.integers(1, 8)) if rng.random() < self.spec.consistency else 0

    def plan(self, index: int) -> SamplePlan:
        kind = self.kind(index)
        if kind == PAIRED:
            p = self.paired.plan(index)
            return SamplePlan(PAIRED, p.image, p.top, p.left, p.transform, 0)
        if kind == UNLABELED:
            image = self._visit(_UNLABELED_ORDER_STREAM, len(self.unlabeled), index)
            h, w = self.unlabeled.sizes[image]
            top, left, transform = self._crop(_UNLABELED_PATCH_STREAM, index, h, w)
        elif kind == ZOOM_IN:
            image = self.paired.plan(index).image
            h, w = self.paired.images.images[image].hr_size
            top, left, transform = self._crop(_ZOOM_PATCH_STREAM, index, h, w)
        else:
            which = self._visit(_ZOOM_ORDER_STREAM, len(self.zoom_out_images), index)
            image = self.zoom_out_sources[which]
            h, w = self.zoom_out_images[which].shape[:2]
            top, left, transform = self._crop(_ZOOM_PATCH_STREAM, index, h, w)
        return SamplePlan(kind, image, top, left, transform, self._consistency(index))

    # -- the teacher's view -----------------------------------------------------------------------
    def cache_sources(self) -> list[tuple[str, tuple[int, int], Callable[[], np.ndarray]]]:
        """Whole images the teacher can be run on once, in cache order: (name, input-size (h, w),
        the uint8 input image). Paired LR images, then unlabeled images, then zoom-out images."""
        out = []
        if self.paired is not None:
            images = self.paired.images
            for i, im in enumerate(images.images):
                out.append((f"paired:{im.name}", (im.hr_size[0] // self.scale, im.hr_size[1] // self.scale),
                            functools.partial(lambda k: images.arrays(k)[1], i)))
        if self.unlabeled is not None:
            for i, (name, size) in enumerate(zip(self.unlabeled.names, self.unlabeled.sizes)):
                out.append((f"unlabeled:{name}", size, functools.partial(self.unlabeled.arrays, i)))
        for source, im in zip(self.zoom_out_sources, self.zoom_out_images):
            name = self.paired.images.images[source].name
            out.append((f"zoom-out:{name}", im.shape[:2], functools.partial(lambda a: a, im)))
        return out

    def _source_index(self, plan: SamplePlan) -> int | None:
        n_paired = len(self.paired.images.images) if self.paired is not None else 0
        if plan.kind == PAIRED:
            return plan.image
        if plan.kind == UNLABELED:
            return n_paired + plan.image
        if plan.kind == ZOOM_OUT:
            return n_paired + (len(self.unlabeled) if self.unlabeled else 0) + self._zoom_out_of[plan.image]
        return None  # zoom-in: an HR crop, no whole image to cache the teacher on

    def cache_plan(self, index: int) -> PatchPlan | None:
        """Where in :meth:`cache_sources` sample ``index``'s input was cut, or None (zoom-in)."""
        plan = self.plan(index)
        source = self._source_index(plan)
        return None if source is None else PatchPlan(source, plan.top, plan.left, plan.transform)

    # -- items ------------------------------------------------------------------------------------
    def input_of(self, plan: SamplePlan) -> np.ndarray:
        """The sample's input patch (before the consistency transform), p x p x 3 uint8."""
        p = self.patch_size
        if plan.kind == PAIRED:
            source = self.paired.images.arrays(plan.image)[1]
        elif plan.kind == UNLABELED:
            source = self.unlabeled.arrays(plan.image)
        elif plan.kind == ZOOM_IN:
            source = self.paired.images.arrays(plan.image)[0]
        else:
            source = self.zoom_out_images[self._zoom_out_of[plan.image]]
        return apply_transform(source[plan.top : plan.top + p, plan.left : plan.left + p], plan.transform)

    def __getitem__(self, index: int) -> dict[str, Any]:
        plan = self.plan(index)
        p, s = self.patch_size, self.scale
        item: dict[str, Any] = {"index": index, "teacher_only": plan.kind != PAIRED, "consistency": plan.consistency}
        if plan.kind == PAIRED:
            item.update(self.paired[index])
            item["image"] = plan.image
            return item
        item["lr"] = self.input_of(plan)
        item["image"] = self._source_index(plan) if plan.kind != ZOOM_IN else -1
        if self.paired is not None:
            item["hr"] = np.zeros((p * s, p * s, 3), np.uint8)  # no ground truth: masked out of the GT term
        return item

    # -- records ----------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """What the first lines and the model's metadata say about the teacher-labelled data."""
        spec = self.spec
        shares = {}
        paired_share = 0.0 if self.paired is None else 1.0 - self.ratio
        shares[PAIRED] = paired_share * (1.0 - spec.zoom_in - spec.zoom_out)
        shares[UNLABELED] = self.ratio
        shares[ZOOM_IN] = paired_share * spec.zoom_in
        shares[ZOOM_OUT] = paired_share * spec.zoom_out
        out: dict[str, Any] = {
            "labelled_by_teacher": [k for k in TEACHER_ONLY_KINDS if shares[k] > 0],
            "sample_shares": {k: round(v, 4) for k, v in shares.items()},
            "zoom_in": spec.zoom_in,
            "zoom_out": spec.zoom_out,
            "consistency": spec.consistency,
            "consistency_applies_to": "teacher-labelled samples",
        }
        if self.unlabeled is not None:
            out.update({"unlabeled": str(self.unlabeled.folder), "unlabeled_images": len(self.unlabeled),
                        "unlabeled_skipped": len(self.unlabeled.skipped), "unlabeled_ratio": self.ratio,
                        "unlabeled_megapixels": round(self.unlabeled.megapixels, 2)})
        if self.zoom_out_images:
            out["zoom_out_images"] = len(self.zoom_out_images)
        return out


def describe_line(info: dict[str, Any]) -> str:
    """One line for the run's first lines."""
    shares = ", ".join(f"{k} {v:.0%}" for k, v in info["sample_shares"].items() if v > 0)
    parts = [f"teacher-labelled samples ({', '.join(info['labelled_by_teacher']) or 'none'}): {shares}"]
    if "unlabeled_images" in info:
        parts.append(f"{info['unlabeled_images']} unlabeled image(s) from {info['unlabeled']}")
    if info["consistency"] > 0:
        parts.append(f"consistency flips on {info['consistency']:.0%} of teacher-labelled samples")
    return "; ".join(parts)


def build_sample_stream(paired: PatchDataset | None, spec: TeacherLabelled, *, scale: int, patch_size: int,
                        seed: int, cache: str = "auto", processes_per_node: int = 1) -> TeacherLabelledDataset:
    """The mixed stream of a run: loads the unlabeled folder (checked; its pixels kept under the
    paired images' ``cache`` mode and what their cache left of the budget) and shrinks the zoom-out images."""
    spec.check(has_paired=paired is not None)
    unlabeled = None
    if spec.unlabeled is not None:
        held = 0 if paired is None else sum(a.nbytes for im in paired.images.images for a in (im.hr, im.lr) if a is not None)
        # What the paired images' cache already holds comes out of the same share.
        budget = cache_budget(cache, processes_per_node) - held
        unlabeled = load_unlabeled(spec.unlabeled, scale=scale, patch_size=patch_size, budget=budget)
    return TeacherLabelledDataset(paired, unlabeled, spec, scale=scale, patch_size=patch_size, seed=seed)
