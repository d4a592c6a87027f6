"""Teacher-labelled samples on the distillation side: the ground-truth term masked to paired
samples, label consistency, and a teacher signal for batches that mix cached and uncached inputs.

* Ground truth: ``l1`` is the mean over the batch's paired samples only (a teacher-labelled
  sample's ``hr`` rows are zeros). A batch with no paired sample gets a zero ``l1`` (no gradient),
  so every step of a run logs the same terms (ranks of a torchrun job must agree on them); a run
  with no paired data at all has no ``l1`` term.
* Consistency (DUKD's label consistency): the student sees ``T(x)`` for a flip/transpose ``T`` drawn
  per sample, and its output and boundary features are taken back through ``T^-1`` before any
  loss, so they are compared with the teacher's answer on ``x`` itself. Only teacher-labelled
  samples get a ``T`` (as in DUKD); paired samples' ground-truth and KD terms are unchanged.
* Teacher signal: paired, unlabeled and zoom-out inputs are crops of whole images, so their
  signals come from the per-image cache; zoom-in inputs are crops of HR images (caching those
  would cost s^2 the LR cache), so the teacher runs live on that share of the batch only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..precision import float32_region
from ..train.objective import Batch
from .teacher import LiveTeacher, TeacherOutputs
from .teacher_cache import CachedTeacher, TeacherCache


def undo_transform(x: torch.Tensor, code: int) -> torch.Tensor:
    """The inverse of :func:`teacher_cache.apply_transform` (flip W, flip H, then transpose)."""
    if code & 4:
        x = x.transpose(-1, -2)
    if code & 2:
        x = x.flip(-2)
    if code & 1:
        x = x.flip(-1)
    return x


def per_sample(x: torch.Tensor, codes: Sequence[int], fn: Callable[[torch.Tensor, int], torch.Tensor]) -> torch.Tensor:
    """``fn(row, code)`` on each row of N x C x H x W ``x``, grouped by code (out of place: keeps the graph)."""
    out = x
    for code in sorted(set(codes) - {0}):
        rows = torch.tensor([r for r, c in enumerate(codes) if c == code], device=x.device)
        out = out.index_copy(0, rows, fn(x.index_select(0, rows), code))
    return out


def ground_truth_terms(sr: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
    """``{"l1": ...}`` over the batch's paired samples (see the module notes); ``{}`` without paired data."""
    if batch.hr is None:
        return {}
    if batch.teacher_only is None:
        return {"l1": F.l1_loss(sr.float(), batch.hr.float())}
    paired = (~batch.teacher_only).nonzero().flatten()
    if paired.numel() == 0:
        return {"l1": sr.new_zeros((), dtype=torch.float32)}
    rows = paired.to(sr.device)
    return {"l1": F.l1_loss(sr.index_select(0, rows).float(), batch.hr.index_select(0, rows).float())}


class MixedTeacher:
    """Signals for a teacher-labelled stream: rows whose input the cache holds (its ``plan(index)``
    is not None) cropped by ``cached``, the others (zoom-in) from ``live``, the teacher run on them."""

    kind = "cache+live"

    def __init__(self, cached: CachedTeacher, live: LiveTeacher):
        self.cached, self.live = cached, live

    def __call__(self, batch: Batch) -> TeacherOutputs:
        plans = [self.cached.plan(int(i)) for i in batch.index.tolist()]
        cached_rows = [r for r, p in enumerate(plans) if p is not None]
        live_rows = [r for r, p in enumerate(plans) if p is None]
        if not live_rows:
            return self.cached.crop_batch(batch, plans)
        parts = [(live_rows, self.live(_rows(batch, live_rows)))]
        if cached_rows:
            parts.append((cached_rows, self.cached.crop_batch(_rows(batch, cached_rows), [plans[r] for r in cached_rows])))
        return _scatter(batch.lr.shape[0], parts, batch.lr.device)


def _rows(batch: Batch, rows: list[int]) -> Batch:
    """The teacher's view of some rows of ``batch`` (its input and sample numbers)."""
    index = torch.tensor(rows, device=batch.lr.device)
    return Batch(batch.lr.index_select(0, index), None, batch.index[rows], batch.image[rows])


def _scatter(n: int, parts: list[tuple[list[int], TeacherOutputs]], device: torch.device) -> TeacherOutputs:
    """One batch's signals put together from the signals of its row groups."""
    output, features = None, []
    with float32_region():  # storage dtypes differ from the step's autocast dtype (teacher_cache.CachedTeacher)
        for rows, signal in parts:
            index = torch.tensor(rows, device=device)
            if output is None:
                output = torch.zeros(n, *signal.output.shape[1:], device=device)
                features = [torch.zeros(n, *f.shape[1:], device=device) for f in signal.features]
            output = output.index_copy(0, index, signal.output.float())
            features = [full.index_copy(0, index, f.float()) for full, f in zip(features, signal.features)]
    return TeacherOutputs(output, features)


@dataclass
class SignalSources:
    """The whole images a run's teacher signals can be cached on, and how a batch then gets them."""

    identity: list[tuple[str, tuple[int, int]]]  # (name, size) per image: what the stored cache's key holds
    lr_sizes: list[tuple[int, int]]  # the teacher's input size per image
    lr_of: Callable[[int], np.ndarray]  # image i as uint8
    what: str  # for the note that says what is cached
    scale: int
    hr_downscale: float
    signal: Callable[[TeacherCache], Any]  # the batch signal source built on the finished cache


def mixed_sources(dataset, live: LiveTeacher) -> SignalSources:
    """Sources of a teacher-labelled stream (data.teacher_labelled.TeacherLabelledDataset): paired LR,
    unlabeled and zoom-out images, cached; zoom-in rows from ``live``."""
    sources = dataset.cache_sources()
    counts: dict[str, int] = {}
    for name, _, _ in sources:
        kind = name.split(":", 1)[0]
        counts[kind] = counts.get(kind, 0) + 1
    lr_of = lambda i: sources[i][2]()  # noqa: E731
    return SignalSources(
        identity=[(name, size) for name, size, _ in sources],
        lr_sizes=[size for _, size, _ in sources],
        lr_of=lr_of,
        what=", ".join(f"{n} {kind} image(s)" for kind, n in counts.items()),
        scale=dataset.scale,
        hr_downscale=dataset.paired.images.hr_downscale if dataset.paired is not None else 1.0,
        signal=lambda cache: MixedTeacher(CachedTeacher(cache, dataset.cache_plan, dataset.patch_size, lr_of), live),
    )
