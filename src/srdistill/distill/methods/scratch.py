"""``scratch``: ground truth only (L1 to the HR patch), the reference every method must beat."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ...train.objective import Batch
from ..spec import DistillContext, MethodSpec
from .base import DistillObjective, l1


class Scratch(DistillObjective):
    def terms(self, batch: Batch, student: nn.Module, step: int) -> dict[str, torch.Tensor]:
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
