"""``scratch``: ground truth only (L1 to the HR patch), the reference every method must beat."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ...errors import UsageError
from ...train.objective import Batch
from ..spec import DistillContext, MethodSpec
from .base import DistillObjective, l1


class Scratch(DistillObjective):
    def terms(self, batch: Batch, student: nn.Module, step: int) -> dict[str, torch.Tensor]:
        if batch.teacher_only is not None or batch.hr is None:
            # distill/api.py refuses such a run before any work; a hand-built batch gets the same answer.
            raise UsageError("method scratch has no teacher to label unlabeled or zoom samples; use a teacher-based method such as logits")
        sr, _ = self.student_forward(student, batch.lr)
        return {"l1": l1(sr, batch.hr)}


def build(context: DistillContext, options: dict[str, Any]) -> Scratch:
    return Scratch(METHOD, context, options)


METHOD = MethodSpec(
    id="scratch",
    title="Ground truth only (no teacher)",
    build=build,
    uses_teacher=False,
)
