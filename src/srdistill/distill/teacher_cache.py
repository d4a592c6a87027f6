"""Teacher signals computed once per training image and cropped with each patch.

The teacher is frozen, so running it on every batch (what makes logits-KD cost 2.6x a plain
step here) is waste: its SR output and boundary features are computed once per training image,
tile by tile, and every patch takes its crop, flipped/rotated exactly as the data stream flipped
the LR patch (the stream is counter based, ``PatchDataset.plan(index)`` says where each sample
came from). Outputs are kept as float16, features as bfloat16 (SwinIR features exceed float16).

How the cache differs from a live teacher on the patch, and what is done about it:

* Tile seams: each tile is computed with a halo as wide as the teacher's receptive field, measured
  once per teacher (:func:`receptive_radius`: the input pixels with a gradient into one output
  position), so the tiles put together are the teacher on the whole image.
* Patch borders: the teacher saw the whole image, not the patch. Inside the patch, farther than
  the receptive radius from its edge, cache and live teacher agree (float16/bfloat16 storage
  aside); nearer the edge the cache has the real context where a live teacher sees padding.
  Before building, :func:`check_cacheable` runs the teacher on a probe image and on a crop of it
  and compares that interior: a teacher whose answer depends on more than a bounded neighbourhood
  (RCAN's channel attention pools the whole input; an attention that resamples to the input size)
  fails it, and the run uses a live teacher instead, with a warning saying why. Window-attention
  teachers (SwinIR) are compared on their window grid: the cache answers on the image's grid,
  a live teacher on the patch's own.
* Flips: a flipped patch gets the flipped teacher signal of the unflipped image rather than the
  teacher's answer to the flipped patch (teachers trained with flips are nearly equivariant).

The Block Prior Mixer's routed passes run the teacher on the patch, so a step that routes takes
all its teacher signals live (methods/mipkd.py).
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import param, spell
from ..memory import available_host_memory
from ..models import SRModel
from ..precision import float32_region
from ..tiling import split_axis
from ..train.objective import Batch
from .teacher import TeacherOutputs, run_teacher

OUTPUT_DTYPE = torch.float16
FEATURE_DTYPE = torch.bfloat16
# Share of the memory available at start-up the cache may take (per process).
CACHE_MEMORY_SHARE = 0.4
DEFAULT_TILE = {"cpu": 128, "cuda": 384}
DEFAULT_TILE_PAD = 16
# The widest halo a tile gets: beyond it a tile is mostly halo, and a live teacher is cheaper.
MAX_TILE_PAD = 64


class CacheUnavailable(Exception):
    """Internal: this teacher's features cannot be cached (the run falls back to a live teacher)."""


def apply_transform(x: torch.Tensor, code: int) -> torch.Tensor:
    """``data.dataset.apply_transform`` for ... x H x W tensors (bit 0 flip W, 1 flip H, 2 transpose)."""
    if code & 1:
        x = x.flip(-1)
    if code & 2:
        x = x.flip(-2)
    if code & 4:
        x = x.transpose(-1, -2)
    return x


def _probe_input(side: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, side, side, generator=g)


@float32_region()
def receptive_radius(teacher: SRModel, limit: int = MAX_TILE_PAD) -> int | None:
    """LR pixels around a position that reach the teacher's output there (its receptive radius,
    measured by the gradient of one output pixel on random probes); None when it exceeds ``limit``
    (or is global)."""
    net, multiple, s = teacher.net, teacher.pad_multiple, teacher.scale
    device = next(net.parameters()).device
    was_training = net.training
    net.eval()
    try:
        for side in (40, 80, 2 * limit + 9):
            side = -(-side // multiple) * multiple
            x = _probe_input(side, 0).to(device).requires_grad_(True)
            c = side // 2
            with torch.enable_grad(), torch.autocast(device.type, enabled=False):
                out = net(x)
                (grad,) = torch.autograd.grad(out[..., c * s : (c + 1) * s, c * s : (c + 1) * s].sum(), x)
            reached = grad.abs().sum((0, 1)) > 0
            rows, cols = reached.any(1).nonzero().flatten(), reached.any(0).nonzero().flatten()
            inside = rows.min() > 0 and cols.min() > 0 and rows.max() < side - 1 and cols.max() < side - 1
            if inside:
                radius = int(max(c - rows.min(), rows.max() - c, c - cols.min(), cols.max() - c))
                return radius if radius <= limit else None
        return None
    finally:
        net.train(was_training)


def halo_for(teacher: SRModel, radius: int) -> int:
    """Tile halo covering ``radius`` (two pixels to spare: a gradient can vanish at the very edge
    of the field), on the teacher's size grid."""
    multiple = teacher.pad_multiple
    return -(-(radius + 2) // multiple) * multiple


def check_cacheable(teacher: SRModel, blocks: Sequence[str], tolerance: float = 1e-4) -> int:
    """The tile halo for ``teacher``, after checking that its answer on a patch interior is its answer
    on the whole image there; raises :class:`CacheUnavailable` saying why not."""
    radius = receptive_radius(teacher)
    if radius is None:
        raise CacheUnavailable(
            f"the teacher's ({teacher.arch}) receptive field reaches beyond {MAX_TILE_PAD} LR pixels or is global "
            f"(channel attention pools the whole input), so a cached signal would not be its answer on each patch"
        )
    halo = halo_for(teacher, radius)
    deviation = patch_deviation(teacher, blocks, halo)
    if deviation > tolerance:
        raise CacheUnavailable(
            f"the teacher's ({teacher.arch}) output on a patch interior differs from its output on the whole image "
            f"by {deviation:.2g} (it is not a local operator), so a cached signal would not be its answer on each patch"
        )
    return halo


@float32_region()
def patch_deviation(teacher: SRModel, blocks: Sequence[str], margin: int, tile: int | None = None) -> float:
    """Largest difference, relative to the output's range, between the teacher on a crop of a probe
    image and the teacher on the whole image (tiled with a ``margin`` halo when ``tile`` is given),
    farther than ``margin`` from the crop's edge; features included."""
    multiple, s = teacher.pad_multiple, teacher.scale
    device = next(teacher.net.parameters()).device
    inner = -(-max(8, margin) // multiple) * multiple
    crop = 2 * margin + inner
    side = crop + 2 * multiple * max(1, -(-8 // multiple))
    image = _probe_input(side, 1).to(device)
    top = left = side - crop - multiple * max(1, -(-5 // multiple))  # off the image's edge, on its grid
    with torch.autocast(device.type, enabled=False):
        if tile is None:
            whole = run_teacher(teacher, image, blocks)
            whole_out, whole_feats = whole.output[0], [f[0] for f in whole.features]
        else:
            cached = teacher_on_image(teacher, image, blocks, tile=tile, pad=margin)
            whole_out, whole_feats = cached.output.float().to(device), [f.float().to(device) for f in cached.features]
        live = run_teacher(teacher, image[..., top : top + crop, left : left + crop], blocks)
    a, b = margin, margin + inner
    ref = whole_out[:, (top + a) * s : (top + b) * s, (left + a) * s : (left + b) * s]
    deviation = float((live.output[0, :, a * s : b * s, a * s : b * s] - ref).abs().max() / (ref.abs().max() + 1e-8))
    for full, mine in zip(whole_feats, live.features):
        ref = full[:, top + a : top + b, left + a : left + b]
        deviation = max(deviation, float((mine[0, :, a:b, a:b] - ref).abs().max() / (ref.abs().max() + 1e-8)))
    return deviation


def lr_chw(array: np.ndarray) -> torch.Tensor:
    """A training image's uint8 LR array as a 3 x h x w tensor. The data module keeps images as
    h x w x 3 (channels-last batches); a 3-channel-first array is accepted too. Training images
    are at least one patch (>= 4 px) a side, so a trailing 3 can only be the channel axis."""
    t = torch.from_numpy(np.ascontiguousarray(array))
    return t.permute(2, 0, 1) if t.shape[-1] == 3 else t


def cache_bytes(lr_pixels: int, scale: int, feature_channels: Sequence[int]) -> int:
    out = 3 * scale * scale * torch.finfo(OUTPUT_DTYPE).bits // 8
    feats = sum(feature_channels) * torch.finfo(FEATURE_DTYPE).bits // 8
    return lr_pixels * (out + feats)


@dataclass
class CachedImage:
    output: torch.Tensor  # 3 x sH x sW
    features: list[torch.Tensor]  # C x H x W each


def teacher_on_image(
    teacher: SRModel,
    lr: torch.Tensor,
    blocks: Sequence[str],
    *,
    tile: int,
    pad: int = DEFAULT_TILE_PAD,
) -> CachedImage:
    """The teacher's output and boundary features on one 1 x 3 x h x w image, tile by tile."""
    _, _, h, w = lr.shape
    s = teacher.scale
    multiple = teacher.pad_multiple
    tile = max(multiple, tile // multiple * multiple)
    pad = -(-pad // multiple) * multiple  # SwinIR: windows stay on the image's grid
    output = torch.empty(3, h * s, w * s, dtype=OUTPUT_DTYPE)
    features: list[torch.Tensor] | None = None
    for r0, r1 in split_axis(h, tile, multiple):
        for c0, c1 in split_axis(w, tile, multiple):
            y0, y1, x0, x1 = max(0, r0 - pad), min(h, r1 + pad), max(0, c0 - pad), min(w, c1 + pad)
            got = run_teacher(teacher, lr[:, :, y0:y1, x0:x1], blocks)
            out = got.output[0, :, (r0 - y0) * s : (r1 - y0) * s, (c0 - x0) * s : (c1 - x0) * s]
            output[:, r0 * s : r1 * s, c0 * s : c1 * s] = out.to(OUTPUT_DTYPE).cpu()
            if features is None:
                features = [torch.empty(f.shape[1], h, w, dtype=FEATURE_DTYPE) for f in got.features]
            for store, feat, block in zip(features, got.features, blocks):
                if tuple(feat.shape[-2:]) != (y1 - y0, x1 - x0):
                    raise CacheUnavailable(
                        f"teacher block {block} gives {tuple(feat.shape[-2:])} maps for a {(y1 - y0, x1 - x0)} input "
                        f"(not LR resolution)"
                    )
                store[:, r0:r1, c0:c1] = feat[0, :, r0 - y0 : r1 - y0, c0 - x0 : c1 - x0].to(FEATURE_DTYPE).cpu()
    return CachedImage(output, features or [])


class TeacherCache:
    """Per training image: the teacher's output and features (on the CPU)."""

    def __init__(self, images: list[CachedImage], scale: int):
        self.images = images
        self.scale = scale

    @property
    def nbytes(self) -> int:
        return sum(im.output.nbytes + sum(f.nbytes for f in im.features) for im in self.images)

    def crop(self, image: int, top: int, left: int, size: int, transform: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        entry, s = self.images[image], self.scale
        out = entry.output[:, top * s : (top + size) * s, left * s : (left + size) * s]
        feats = [f[:, top : top + size, left : left + size] for f in entry.features]
        return apply_transform(out, transform), [apply_transform(f, transform) for f in feats]


def build_cache(
    teacher: SRModel,
    blocks: Sequence[str],
    lr_images: Callable[[int], np.ndarray],
    count: int,
    *,
    device: torch.device,
    autocast: Callable[[], object],
    tile: int | None = None,
    pad: int = DEFAULT_TILE_PAD,
    progress: Callable[[int, int], None] | None = None,
) -> TeacherCache:
    """Run the teacher over ``count`` LR images (``lr_images(i)``: uint8, see :func:`lr_chw`)."""
    tile = tile or DEFAULT_TILE.get(device.type, 128)
    cached = []
    for i in range(count):
        lr = lr_chw(lr_images(i)).to(device).float().div_(255).unsqueeze(0)
        with autocast():
            cached.append(teacher_on_image(teacher, lr, blocks, tile=tile, pad=pad))
        if progress is not None:
            progress(i + 1, count)
    return TeacherCache(cached, teacher.scale)


class CachedTeacher:
    """Teacher signals for a batch, cropped from a :class:`TeacherCache`.

    ``plan(index)`` gives (image, top, left, transform) of global sample ``index``; ``lr_of(i)``
    gives the LR image, used once to check that cache and data stream agree.
    """

    kind = "cache"

    def __init__(self, cache: TeacherCache, plan: Callable[[int], object], patch_size: int, lr_of: Callable[[int], np.ndarray]):
        self.cache = cache
        self.plan = plan
        self.patch_size = patch_size
        self.lr_of = lr_of
        self.checked = False

    def _check(self, batch: Batch, p) -> None:
        lr = lr_chw(self.lr_of(p.image))
        crop = apply_transform(lr[:, p.top : p.top + self.patch_size, p.left : p.left + self.patch_size], p.transform)
        seen = (batch.lr[0].detach().float().cpu() * 255).round()
        if crop.shape != seen.shape or not torch.equal(crop.float(), seen):
            raise RuntimeError(spell(
                "the teacher cache does not line up with the data stream (sample "
                f"{int(batch.index[0])}); this is a bug in srdistill; rerun with the teacher cache off ({param('teacher_cache', 'off')}) and report it"
            ))
        self.checked = True

    def __call__(self, batch: Batch) -> TeacherOutputs:
        return self.crop_batch(batch, [self.plan(int(index)) for index in batch.index.tolist()])

    def crop_batch(self, batch: Batch, plans: list) -> TeacherOutputs:
        """The signals of ``batch`` whose samples' plans are already known (``plans[r]`` for row r)."""
        if not self.checked:
            self._check(batch, plans[0])
        outs, feats = [], []
        for p in plans:
            out, fs = self.cache.crop(p.image, p.top, p.left, self.patch_size, p.transform)
            outs.append(out)
            feats.append(fs)
        device = batch.lr.device
        # Called inside the step's autocast, where stack "promotes" its inputs and refuses a
        # float16 output cache under bf16 autocast (CUDA's default): stack in storage dtypes.
        with float32_region():
            output = torch.stack(outs).to(device, non_blocking=True).float()
            features = [torch.stack([f[k] for f in feats]).to(device, non_blocking=True).float() for k in range(len(feats[0]))]
        return TeacherOutputs(output, features)


# -- reuse across runs ------------------------------------------------------------------------------
# A file holds the teacher's outputs and the features of some blocks for one (teacher, data)
# pair; a run needing a subset of those blocks (logits needs none) reads it too.
CACHE_FORMAT = 3  # 3: the halo follows the teacher's receptive field
_META = "srdistill.teacher_cache"


def cache_key(
    teacher_sha256: str, images: Sequence[tuple[str, tuple[int, int]]], scale: int, hr_downscale: float, tile: int,
    pad: int = DEFAULT_TILE_PAD,
) -> str:
    """Everything the cached tensors depend on but the blocks; a change means another file."""
    identity = {
        "format": CACHE_FORMAT, "teacher": teacher_sha256, "scale": scale, "hr_downscale": hr_downscale,
        "tile": tile, "pad": pad, "images": [[n, list(s)] for n, s in images],
        "dtypes": [str(OUTPUT_DTYPE), str(FEATURE_DTYPE)],
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]


def cache_file(folder: Path, key: str, blocks: Sequence[str]) -> Path:
    tag = hashlib.sha256(json.dumps(list(blocks)).encode()).hexdigest()[:8]
    return Path(folder) / f"teacher-{key}-{tag}.safetensors"


def find_cache(folder: Path, key: str, blocks: Sequence[str]) -> Path | None:
    """A stored cache of this teacher and data holding at least ``blocks``."""
    from safetensors import safe_open

    for path in sorted(Path(folder).glob(f"teacher-{key}-*.safetensors")):
        try:
            with safe_open(str(path), framework="pt") as fh:
                stored = json.loads((fh.metadata() or {}).get(_META, "{}")).get("blocks")
        except Exception:  # noqa: BLE001 - unreadable files are skipped (and rebuilt)
            continue
        if stored is not None and set(blocks) <= set(stored):
            return path
    return None


def load_cache(path: Path, count: int, blocks: Sequence[str], scale: int) -> TeacherCache | None:
    """The outputs and ``blocks``' features from a file written by :func:`save_cache`; None if unreadable."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            images = [
                CachedImage(fh.get_tensor(f"out.{i}"), [fh.get_tensor(f"feat.{i}.{b}") for b in blocks]) for i in range(count)
            ]
    except Exception as exc:  # noqa: BLE001 - a damaged cache file is rebuilt, never fatal
        warnings.warn(f"ignoring the teacher cache {path}: {exc}; it is rebuilt", stacklevel=2)
        return None
    return TeacherCache(images, scale)


def save_cache(cache: TeacherCache, path: Path, blocks: Sequence[str]) -> None:
    from safetensors.torch import save_file

    from ..io.atomic import atomic_write

    tensors = {}
    for i, image in enumerate(cache.images):
        tensors[f"out.{i}"] = image.output.contiguous()
        for block, feat in zip(blocks, image.features):
            tensors[f"feat.{i}.{block}"] = feat.contiguous()
    with atomic_write(path, overwrite=True) as tmp:
        save_file(tensors, str(tmp), metadata={_META: json.dumps({"format": CACHE_FORMAT, "blocks": list(blocks)})})


def fits_in_memory(lr_pixels: int, scale: int, channels: Sequence[int], processes_per_node: int = 1) -> tuple[bool, int]:
    need = cache_bytes(lr_pixels, scale, channels)
    budget = available_host_memory() * CACHE_MEMORY_SHARE / max(1, processes_per_node)
    return need <= budget, need


def describe_bytes(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def lr_pixels_of(sizes: Sequence[tuple[int, int]], scale: int) -> int:
    return sum(math.prod((h // scale, w // scale)) for h, w in sizes)
