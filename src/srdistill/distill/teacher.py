"""The teacher's signal for a batch: its SR output and its features at the matched boundaries.

Two sources with one interface: ``LiveTeacher`` runs the frozen teacher on the batch (no graph
is recorded: its parameters do not require gradients and the input does not either), and
``teacher_cache.CachedTeacher`` crops what was computed once per training image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..hooks import block_hooks
from ..models import SRModel
from ..precision import teacher_dtype_guard
from ..train.objective import Batch
from .features import crop_to_input


@dataclass
class TeacherOutputs:
    output: torch.Tensor  # N x 3 x sH x sW
    features: list[torch.Tensor]  # one N x C x H x W map per boundary (teacher side), no gradient


class LiveTeacher:
    """Run the teacher on every batch."""

    kind = "live"

    def __init__(self, teacher: SRModel, blocks: Sequence[str]):
        self.teacher = teacher
        self.blocks = tuple(blocks)

    def __call__(self, batch: Batch) -> TeacherOutputs:
        return run_teacher(self.teacher, batch.lr, self.blocks)


def run_teacher(teacher: SRModel, lr: torch.Tensor, blocks: Sequence[str]) -> TeacherOutputs:
    """One no-grad teacher forward capturing ``blocks`` (cropped to the input's size)."""
    h, w = lr.shape[-2:]
    # The engine's autocast dtype suits the student; a teacher unsafe in it runs in float32.
    with torch.no_grad(), teacher_dtype_guard(lr.device.type, teacher.spec.safe_dtypes) as in_float32:
        if in_float32:
            lr = lr.float()
        if not blocks:
            return TeacherOutputs(teacher.net(lr), [])
        with block_hooks(teacher.net, blocks, teacher.spec.feature_view) as seen:
            out = teacher.net(lr)
        seen.check_fired_once()
        return TeacherOutputs(out, [crop_to_input(f, h, w) for f in seen.ordered()])
