"""What every distillation objective shares: the teacher signal source, the student forward
with boundary features, a step clock, and how the method describes itself.

The teacher signal starts live (the teacher runs on each batch). ``prepare(data)`` — called by
the engine once the training images are loaded — swaps in per-image cached signals when they
fit in memory (``teacher_cache``), which is what makes KD cost about what plain training costs.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...data.teacher_labelled import TeacherLabelledDataset
from ...errors import param, spell
from ...hooks import block_hooks
from ...train.objective import Batch, Objective, TrainingData
from ..boundaries import Boundary
from ..features import crop_to_input
from ..labelled import SignalSources, ground_truth_terms, mixed_sources, per_sample, undo_transform
from ..spec import DistillContext, MethodSpec
from ..teacher import LiveTeacher, TeacherOutputs
from ..teacher_cache import (
    DEFAULT_TILE,
    CacheUnavailable,
    CachedTeacher,
    apply_transform,
    build_cache,
    cache_file,
    check_cacheable,
    cache_key,
    describe_bytes,
    find_cache,
    fits_in_memory,
    load_cache,
    save_cache,
)


class DistillWarning(UserWarning):
    """A distillation setting fell back to a slower or different path."""


def _is_main_process() -> bool:
    import torch.distributed as dist

    return not dist.is_available() or not dist.is_initialized() or dist.get_rank() == 0


class Clock(nn.Module):
    """Counts training steps in a buffer, so schedules survive a resume (it is checkpointed)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def tick(self) -> int:
        current = int(self.step)
        self.step += 1
        return current


def l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(a.float(), b.float())


class DistillObjective(Objective):
    """Base of the built-in methods: built from its :class:`MethodSpec` (whose ``uses_teacher`` and
    ``uses_features`` it follows; the spec states them once) and implementing :meth:`terms`."""

    def __init__(self, spec: MethodSpec, context: DistillContext, options: Mapping[str, Any]):
        self.name = spec.id
        self.uses_teacher = spec.uses_teacher
        self.uses_features = spec.uses_features
        self.context = context
        self.options = dict(options)
        self.teacher = context.teacher
        self.student_model = context.student
        self.boundaries: tuple[Boundary, ...] = tuple(context.boundaries) if self.uses_features else ()
        self.teacher_cache_mode = context.teacher_cache
        self.signals = LiveTeacher(self.teacher, [b.teacher_block for b in self.boundaries]) if self.uses_teacher else None
        self.clock = Clock()
        self.weights: dict[str, float] = {}
        self.cache_seconds: float | None = None
        self.cache_source: str | None = None  # "built" or the file it was read from
        # Unlabeled / zoom samples and label consistency (data/teacher_labelled.py); the engine
        # reads it to build the sample stream. None or inactive: the plain paired stream.
        self.teacher_labelled = context.teacher_labelled

    # -- engine contract ------------------------------------------------------------------------
    def frozen(self) -> dict[str, nn.Module]:
        return {"teacher": self.teacher.net} if self.uses_teacher else {}

    def modules(self) -> dict[str, nn.Module]:
        return {"clock": self.clock, **self.trainable()}

    def trainable(self) -> dict[str, nn.Module]:
        return {}

    def losses(self, batch: Batch, student: nn.Module) -> dict[str, torch.Tensor]:
        step = self.clock.tick() if student.training else int(self.clock.step)
        return self.terms(batch, student, step)

    def terms(self, batch: Batch, student: nn.Module, step: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "method": self.name,
            "options": dict(self.options),
            "weights": dict(self.weights),
        }
        if self.uses_teacher:
            out["teacher_signal"] = self.signals.kind if self.signals is not None else "none"
            if self.cache_seconds is not None:
                out["teacher_cache_seconds"] = round(self.cache_seconds, 2)
                out["teacher_cache_source"] = self.cache_source
        if self.boundaries:
            out["boundaries"] = [b.as_dict() for b in self.boundaries]
        return out

    # -- helpers --------------------------------------------------------------------------------
    def teacher_signal(self, batch: Batch) -> TeacherOutputs:
        return self.signals(batch)

    def ground_truth(self, sr: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        """The ``l1`` term over the batch's paired samples; none when the run has no paired data (labelled.py)."""
        return ground_truth_terms(sr, batch)

    def student_forward(
        self, student: nn.Module, lr: torch.Tensor, features: bool = False, consistency: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The student's SR output and (with grad) its features at the student-side boundaries.

        ``consistency`` (``Batch.consistency``): per-sample flip/transpose codes; the student runs on
        the transformed input and its output and features are taken back (labelled.py), so every
        loss compares them with the teacher's answer on ``lr`` itself."""
        codes = consistency.tolist() if consistency is not None else []
        transformed = any(codes)
        if transformed:
            lr = per_sample(lr, codes, apply_transform)
        if not features or not self.boundaries:
            out, feats = student(lr), []
        else:
            blocks = [b.student_block for b in self.boundaries]
            with block_hooks(student, blocks, self.student_model.spec.feature_view) as seen:
                out = student(lr)
            seen.check_fired_once()
            h, w = lr.shape[-2:]
            feats = [crop_to_input(f, h, w) for f in seen.ordered()]
        if transformed:
            out = per_sample(out, codes, undo_transform)
            feats = [per_sample(f, codes, undo_transform) for f in feats]
        return out, feats

    # -- teacher cache --------------------------------------------------------------------------
    @staticmethod
    def _tile(device: torch.device) -> int:
        return DEFAULT_TILE.get(device.type, 128)

    def _cache_key(self, identity, scale: int, hr_downscale: float, device, pad: int) -> str | None:
        """Identifies teacher + data across runs; None when signals are not kept on disk."""
        if self.context.teacher_cache_dir is None or self.context.teacher_sha256 is None:
            return None  # no folder, or a teacher given as an object (nothing identifies it)
        return cache_key(self.context.teacher_sha256, identity, scale, hr_downscale, self._tile(device), pad)

    def prepare(self, data: TrainingData) -> None:
        """Cache the teacher's signals per training image when allowed and affordable."""
        if not self.uses_teacher or self.teacher_cache_mode == "off":
            return
        dataset = data.dataset
        if isinstance(dataset, TeacherLabelledDataset):
            sources = mixed_sources(dataset, LiveTeacher(self.teacher, [b.teacher_block for b in self.boundaries]))
        else:
            sources = _paired_sources(dataset)
        identity, lr_of, what = sources.identity, sources.lr_of, sources.what
        lr_pixels = sum(h * w for h, w in sources.lr_sizes)
        count = len(identity)
        channels = [b.teacher_channels for b in self.boundaries]
        fits, need = fits_in_memory(lr_pixels, self.teacher.scale, channels, data.processes_per_node)
        if not fits and self.teacher_cache_mode == "auto":
            warnings.warn(
                spell(f"teacher signals for this data would take {describe_bytes(need)}, more than the memory budget; "
                      f"running the teacher on every batch instead (slower; {param('teacher_cache', 'memory')} forces the cache)"),
                DistillWarning,
                stacklevel=2,
            )
            return
        blocks = [b.teacher_block for b in self.boundaries]
        start = time.perf_counter()
        try:
            pad = check_cacheable(self.teacher, blocks)
        except CacheUnavailable as exc:
            warnings.warn(spell(f"teacher signals not cached: {exc}; running the teacher on every batch "
                                f"({param('teacher_cache', 'off')} skips this check)"), DistillWarning, stacklevel=2)
            return
        key = self._cache_key(identity, sources.scale, sources.hr_downscale, data.device, pad)
        folder = Path(self.context.teacher_cache_dir) if key else None
        found = find_cache(folder, key, blocks) if key else None
        cache = load_cache(found, count, blocks, self.teacher.scale) if found else None
        if cache is not None:
            data.note(f"teacher signals read from {found}")
            self.cache_source = found.name
        else:
            part = "output and features" if blocks else "output"
            data.note(f"caching the teacher's {part} on {what} ({describe_bytes(need)}; "
                      f"tiles with a {pad}-pixel halo, the teacher's receptive field)")
            try:
                cache = build_cache(
                    self.teacher,
                    blocks,
                    lr_of,
                    count,
                    device=data.device,
                    autocast=data.autocast,
                    tile=self._tile(data.device),
                    pad=pad,
                )
            except CacheUnavailable as exc:
                warnings.warn(f"teacher signals not cached: {exc}; running the teacher on every batch", DistillWarning, stacklevel=2)
                return
            stored = cache_file(folder, key, blocks) if key else None
            self.cache_source = "built" + (f" ({stored.name})" if stored else "")
            if stored is not None and _is_main_process():
                save_cache(cache, stored, blocks)
        self.signals = sources.signal(cache)
        self.cache_seconds = time.perf_counter() - start


def _paired_sources(dataset) -> SignalSources:
    """The plain paired stream's training images (data.dataset.PatchDataset)."""
    images = dataset.images
    lr_of = lambda i: images.arrays(i)[1]  # noqa: E731
    return SignalSources(
        identity=[(im.name, tuple(im.hr_size)) for im in images.images],
        lr_sizes=[(h // images.scale, w // images.scale) for h, w in (im.hr_size for im in images.images)],
        lr_of=lr_of,
        what=f"{len(images.images)} training image(s)",
        scale=images.scale,
        hr_downscale=images.hr_downscale,
        signal=lambda cache: CachedTeacher(cache, dataset.plan, dataset.patch_size, lr_of),
    )
