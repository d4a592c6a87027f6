"""Training patches: decoded once, cut at random, reproducible from the seed alone.

Sampling is *counter based*: the patch for global sample number ``i`` (which image, where, which of
the 8 flips/rotations) is a pure function of ``(seed, i)``. So the data stream does not depend on
the number of worker processes or of torchrun ranks, and the position in it is a single integer,
``samples_seen``: a checkpoint that records it resumes the exact stream, with any world size.
Rank ``r`` of ``W`` with per-rank batch ``B`` takes samples ``pos + r*B .. pos + r*B + B - 1`` of
each global batch, so two ranks at batch B see exactly what one process at batch 2B sees.

Images are visited epoch by epoch in a seeded random order (every image once per epoch).
Decoded images are held in memory as ``uint8`` when they fit (LR is 1/s^2 of HR, so it costs
little); otherwise each patch decodes its image again, which is correct but slow.
"""

from __future__ import annotations

import functools
import math
import os
import signal
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..errors import DataError, ImageError, UsageError, param
from ..memory import available_host_memory
from .folders import FolderContents, ImagePair, find_images
from .resize import imresize_uint8

# Sub-streams of the seed, so that choices of different kinds never share random numbers.
_ORDER_STREAM, _PATCH_STREAM, _HOLDOUT_STREAM = 1, 2, 3
# Share of the memory available at start-up the decoded-image cache may take (per process).
CACHE_MEMORY_SHARE = 0.5


class DataWarning(UserWarning):
    """An image was skipped."""


@dataclass
class TrainImage:
    name: str
    hr_size: tuple[int, int]  # (H, W) after --hr-downscale and cropping to a multiple of the scale
    hr: np.ndarray | None  # H x W x 3 uint8, None when not cached
    lr: np.ndarray | None  # H/s x W/s x 3 uint8


@dataclass
class ImageSet:
    """Decoded, checked images plus how to decode them again when not cached."""

    pairs: list[ImagePair]
    images: list[TrainImage]
    scale: int
    hr_downscale: float
    cached: bool
    skipped: list[str] = field(default_factory=list)  # "name: reason"

    def arrays(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        image = self.images[i]
        if image.hr is not None:
            return image.hr, image.lr
        return decode_pair(self.pairs[i], self.scale, self.hr_downscale)[:2]

    @property
    def megapixels(self) -> float:
        return sum(h * w for h, w in (im.hr_size for im in self.images)) / 1e6


# -- decoding ----------------------------------------------------------------------------------
def to_rgb_uint8(pixels: np.ndarray) -> np.ndarray:
    """H x W x C (C = 1..4, uint8 or uint16) -> H x W x 3 uint8; alpha dropped, gray repeated."""
    arr = np.asarray(pixels)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.dtype == np.uint16:
        from .imageio import to_8bit

        arr = to_8bit(arr)
    elif arr.dtype != np.uint8:
        raise ImageError(f"unsupported pixel type {arr.dtype}")
    channels = arr.shape[2]
    if channels in (1, 2):
        arr = np.repeat(arr[:, :, :1], 3, axis=2)
    elif channels == 4:
        arr = arr[:, :, :3]
    elif channels != 3:
        raise ImageError(f"unsupported number of channels {channels}")
    return np.require(arr, requirements=["C", "W"])  # decoders may hand out read-only buffers


def read_rgb(path: Path) -> tuple[np.ndarray, bool]:
    """(H x W x 3 uint8, whether the file is grayscale)."""
    from .imageio import read_image

    pixels = read_image(path).pixels
    gray = pixels.ndim == 2 or pixels.shape[2] in (1, 2)
    return to_rgb_uint8(pixels), gray


def bicubic_uint8(hwc: np.ndarray, factor: float) -> np.ndarray:
    """Shrink an H x W x 3 uint8 image by ``factor`` like MATLAB ``imresize`` on uint8 input."""
    return imresize_uint8(hwc, 1.0 / factor)


def decode_pair(pair: ImagePair, scale: int, hr_downscale: float = 1.0) -> tuple[np.ndarray, np.ndarray, bool]:
    """(HR, LR, grayscale) with HR and LR H x W x 3 uint8 and HR exactly ``scale`` times LR."""
    hr, gray = read_rgb(pair.hr)
    if hr_downscale != 1.0:
        if pair.lr is not None:
            raise DataError(f"{param('hr_downscale')} cannot be used with paired LR folders (the LR files match the original HR)")
        hr = bicubic_uint8(hr, hr_downscale)
    if pair.lr is None:
        h, w = (hr.shape[0] // scale) * scale, (hr.shape[1] // scale) * scale
        if h == 0 or w == 0:
            raise ImageError(f"{hr.shape[1]}x{hr.shape[0]} is smaller than the scale x{scale}")
        hr = np.ascontiguousarray(hr[:h, :w])  # MATLAB modcrop: keep the top-left corner
        return hr, bicubic_uint8(hr, scale), gray
    lr, _ = read_rgb(pair.lr)
    h, w = lr.shape[0] * scale, lr.shape[1] * scale
    if hr.shape[0] < h or hr.shape[1] < w or hr.shape[0] >= h + scale or hr.shape[1] >= w + scale:
        raise DataError(
            f"scale mismatch between paired folders: {pair.lr.name} is {lr.shape[1]}x{lr.shape[0]} but "
            f"{pair.hr.name} is {hr.shape[1]}x{hr.shape[0]}, not x{scale} of it; check {param('scale')} and the LR folder"
        )
    return np.ascontiguousarray(hr[:h, :w]), lr, gray


def _decode_all(pairs: Sequence[ImagePair], scale: int, hr_downscale: float) -> Iterator[tuple[ImagePair, Any]]:
    """(pair, (hr, lr, gray) or the exception) in order, decoded by a few threads (image decoders and
    torch release the GIL) a bounded number ahead, so memory stays flat on any dataset size."""
    from concurrent.futures import ThreadPoolExecutor

    def one(pair: ImagePair):
        try:
            return decode_pair(pair, scale, hr_downscale)
        except (ImageError, OSError, ValueError) as exc:
            return exc

    threads = max(1, min(4, os.cpu_count() or 1))
    with ThreadPoolExecutor(threads) as pool:
        for start in range(0, len(pairs), 2 * threads):
            chunk = pairs[start : start + 2 * threads]
            yield from zip(chunk, pool.map(one, chunk))


def cache_budget(cache: str, processes_per_node: int = 1) -> float:
    """Bytes of decoded images a process may keep in memory under the engine's ``cache`` mode."""
    if cache == "memory":
        return math.inf
    if cache == "none":
        return 0.0
    if cache != "auto":
        raise UsageError(f"{param('cache')} must be one of auto, memory, none; got {cache!r}")
    return available_host_memory() * CACHE_MEMORY_SHARE / max(1, processes_per_node)


def load_images(
    pairs: Sequence[ImagePair],
    *,
    scale: int,
    patch_size: int,
    hr_downscale: float = 1.0,
    cache: str = "auto",
    processes_per_node: int = 1,
    where: str = "",
) -> ImageSet:
    """Decode and check every image; unusable ones are skipped with one warning each.

    Raises DataError when no image is left: then one message sums up the problems.
    """
    budget = cache_budget(cache, processes_per_node)
    used = 0
    images: list[TrainImage] = []
    kept: list[ImagePair] = []
    skipped: list[str] = []
    problems: list[str] = []  # warned about only if the set is usable; else one error sums them up
    too_small = 0
    for pair, decoded in _decode_all(pairs, scale, hr_downscale):
        if isinstance(decoded, Exception):
            skipped.append(f"{pair.hr.name}: {decoded}")
            problems.append(f"skipping {pair.hr}: {decoded}")
            continue
        hr, lr, _ = decoded
        if lr.shape[0] < patch_size or lr.shape[1] < patch_size:
            too_small += 1
            reason = (
                f"{hr.shape[1]}x{hr.shape[0]} is smaller than one {patch_size * scale}x{patch_size * scale} HR patch "
                f"({patch_size}x{patch_size} LR at x{scale})"
            )
            skipped.append(f"{pair.hr.name}: {reason}")
            problems.append(f"skipping {pair.hr}: {reason}")
            continue
        size = hr.nbytes + lr.nbytes
        keep = used + size <= budget
        if keep:
            used += size
        else:  # stop caching from here on, and drop what was cached: one mode for the whole set
            for image in images:
                image.hr = image.lr = None
            budget = -1.0
        images.append(TrainImage(pair.hr.name, (hr.shape[0], hr.shape[1]), hr if keep else None, lr if keep else None))
        kept.append(pair)
    if not images:
        if too_small == len(pairs):
            raise DataError(
                f"every image in {where or 'the data folder'} is smaller than one {patch_size}x{patch_size} LR patch "
                f"({patch_size * scale}x{patch_size * scale} HR at x{scale}); use a smaller {param('patch_size')} or larger images"
            )
        raise DataError(
            f"none of the {len(pairs)} image(s) in {where or 'the data folder'} could be used "
            f"(first problem: {skipped[0]}); fix or replace the files"
        )
    for problem in problems:
        warnings.warn(problem, DataWarning, stacklevel=2)
    cached = all(image.hr is not None for image in images)
    return ImageSet(list(kept), images, scale, hr_downscale, cached, skipped)


# -- sampling ----------------------------------------------------------------------------------
def apply_transform(x: np.ndarray, code: int) -> np.ndarray:
    """One of the 8 flips/rotations of an H x W x C array (bit 0: flip W, bit 1: flip H, bit 2: transpose)."""
    if code & 1:
        x = x[:, ::-1]
    if code & 2:
        x = x[::-1]
    if code & 4:
        x = x.transpose(1, 0, 2)
    return np.ascontiguousarray(x)


@dataclass(frozen=True)
class PatchPlan:
    image: int
    top: int  # LR coordinates
    left: int
    transform: int


class PatchDataset(Dataset):
    """Item ``i`` is the (LR, HR) patch pair of global sample number ``i``; see the module notes."""

    def __init__(self, images: ImageSet, *, patch_size: int, seed: int, augment: bool = True):
        self.images = images
        self.patch_size = patch_size
        self.seed = int(seed)
        self.augment = augment
        self._lr_sizes = [(h // images.scale, w // images.scale) for h, w in (im.hr_size for im in images.images)]

    def __len__(self) -> int:  # the stream is endless; this is one epoch
        return len(self.images.images)

    @functools.lru_cache(maxsize=2)  # noqa: B019 - one dataset per run; consecutive epochs only
    def _order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, _ORDER_STREAM, epoch]).permutation(len(self._lr_sizes))

    def plan(self, index: int) -> PatchPlan:
        n = len(self._lr_sizes)
        image = int(self._order(index // n)[index % n])
        rng = np.random.default_rng([self.seed, _PATCH_STREAM, index])
        h, w = self._lr_sizes[image]
        top = int(rng.integers(0, h - self.patch_size + 1))
        left = int(rng.integers(0, w - self.patch_size + 1))
        transform = int(rng.integers(0, 8)) if self.augment else 0
        return PatchPlan(image, top, left, transform)

    def __getitem__(self, index: int) -> dict[str, Any]:
        plan = self.plan(index)
        hr, lr = self.images.arrays(plan.image)
        p, s = self.patch_size, self.images.scale
        lr_patch = lr[plan.top : plan.top + p, plan.left : plan.left + p]
        hr_patch = hr[plan.top * s : (plan.top + p) * s, plan.left * s : (plan.left + p) * s]
        return {
            "lr": apply_transform(lr_patch, plan.transform),
            "hr": apply_transform(hr_patch, plan.transform),
            "index": index,
            "image": plan.image,
        }


def collate_patches(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack H x W x 3 patches into N x 3 x H x W uint8 tensors *in channels_last layout* (a
    permuted view of the stacked array): the step wants that layout, so no copy converts it.
    (``torch.stack`` of small uint8 tensors is also surprisingly slow on CPU: ~100x numpy here.)

    Teacher-labelled streams (data/teacher_labelled.py) add ``teacher_only`` and ``consistency``
    per sample, and have no ``hr`` when the run has no paired data."""
    out = {"lr": torch.from_numpy(np.stack([it["lr"] for it in items])).permute(0, 3, 1, 2)}
    if "hr" in items[0]:
        out["hr"] = torch.from_numpy(np.stack([it["hr"] for it in items])).permute(0, 3, 1, 2)
    out["index"] = torch.tensor([it["index"] for it in items], dtype=torch.int64)
    out["image"] = torch.tensor([it["image"] for it in items], dtype=torch.int64)
    if "teacher_only" in items[0]:
        out["teacher_only"] = torch.tensor([it["teacher_only"] for it in items], dtype=torch.bool)
        out["consistency"] = torch.tensor([it["consistency"] for it in items], dtype=torch.int64)
    return out


class StreamBatches(Sampler[list[int]]):
    """This rank's share of each global batch, forever, starting at sample ``start``."""

    def __init__(self, start: int, batch_size: int, rank: int = 0, world_size: int = 1):
        self.start, self.batch_size, self.rank, self.world_size = int(start), batch_size, rank, world_size

    def __iter__(self) -> Iterator[list[int]]:
        position = self.start
        while True:
            first = position + self.rank * self.batch_size
            yield list(range(first, first + self.batch_size))
            position += self.batch_size * self.world_size


def _quiet_worker(_worker_id: int) -> None:
    # Ctrl-C reaches the whole process group: workers must keep serving while the main process
    # finishes its step and writes the checkpoint. One thread each: the step owns the cores.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)


def patch_loader(
    dataset: PatchDataset,
    *,
    start: int,
    batch_size: int,
    rank: int = 0,
    world_size: int = 1,
    workers: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    extra = {"prefetch_factor": 4, "worker_init_fn": _quiet_worker} if workers > 0 else {}
    return DataLoader(
        dataset,
        batch_sampler=StreamBatches(start, batch_size, rank, world_size),
        collate_fn=collate_patches,
        num_workers=workers,
        pin_memory=pin_memory,
        **extra,
    )


# -- dataset assembly ----------------------------------------------------------------------------
@dataclass
class ValImage:
    name: str
    lr: np.ndarray  # h x w x 3 uint8
    hr: np.ndarray  # sh x sw x 3 uint8
    gray: bool = False  # measured on its gray values, as the benchmark scripts do (see metrics)


def hold_out(contents: FolderContents, fraction: float, seed: int) -> tuple[list[ImagePair], list[ImagePair]]:
    """(training pairs, held-out validation pairs): a seeded choice of ``ceil(fraction * N)`` images."""
    pairs = contents.pairs
    if fraction <= 0:
        return list(pairs), []
    count = max(1, math.ceil(fraction * len(pairs)))
    if count >= len(pairs):
        raise DataError(
            f"{param('val_fraction')} {fraction:g} of {len(pairs)} image(s) in {contents.hr_dir} leaves nothing to train on; "
            f"use a smaller fraction or {param('val_data')}"
        )
    chosen = set(np.random.default_rng([seed, _HOLDOUT_STREAM]).choice(len(pairs), count, replace=False).tolist())
    return [p for i, p in enumerate(pairs) if i not in chosen], [p for i, p in enumerate(pairs) if i in chosen]


def load_validation(pairs: Sequence[ImagePair], *, scale: int, crop: int = 0, hr_downscale: float = 1.0) -> list[ValImage]:
    """Validation images as (LR, HR) uint8 pairs; unreadable ones are skipped with a warning."""
    out = []
    for pair in pairs:
        try:
            hr, lr, gray = decode_pair(pair, scale, hr_downscale)
        except (ImageError, OSError, ValueError) as exc:
            warnings.warn(f"skipping validation image {pair.hr}: {exc}", DataWarning, stacklevel=2)
            continue
        if crop > 0:
            size = max(1, crop // scale)
            h, w = lr.shape[0], lr.shape[1]
            top, left = max(0, (h - size) // 2), max(0, (w - size) // 2)
            lr = np.ascontiguousarray(lr[top : top + size, left : left + size])
            hr = np.ascontiguousarray(hr[top * scale : (top + size) * scale, left * scale : (left + size) * scale])
        out.append(ValImage(pair.hr.name, lr, hr, gray))
    return out


def find_training_images(data: str | Path, scale: int) -> FolderContents:
    return find_images(data, scale)
