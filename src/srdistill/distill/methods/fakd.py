"""``fakd``: feature-affinity KD (He et al., ICIP 2020) on top of logits-KD.

At each boundary both features become a spatial affinity matrix — cosine similarity between
every pair of positions, channels as the vector — so no adapter is needed whatever the widths;
the loss is L1 between the student's and the teacher's matrices. The matrix is (HW)^2 per
sample (5.3M entries for a 48x48 patch), so ``pool`` can average-pool features first.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...train.objective import Batch
from ..features import match_size
from ..spec import DistillContext, MethodSpec, need
from .base import DistillObjective, l1


def spatial_affinity(feature: torch.Tensor, pool: int = 1) -> torch.Tensor:
    """B x HW x HW cosine similarities between positions of a B x C x H x W map."""
    f = feature.float()
    if pool > 1:
        f = F.avg_pool2d(f, pool, ceil_mode=True)
    f = f.flatten(2)
    f = f / (f.norm(dim=1, keepdim=True) + 1e-7)
    return f.transpose(1, 2) @ f


class FAKD(DistillObjective):
    def __init__(self, context: DistillContext, options: dict[str, Any]):
        super().__init__(METHOD, context, options)
        self.weights = {"kd": options["l_kd"], "fa": options["l_fa"]}

    def terms(self, batch: Batch, student: nn.Module, step: int) -> dict[str, torch.Tensor]:
        sr, feats = self.student_forward(student, batch.lr, features=True, consistency=batch.consistency)
        teacher = self.teacher_signal(batch)
        pool = self.options["pool"]
        fa = sr.new_zeros((), dtype=torch.float32)
        for fs, ft in zip(feats, teacher.features):
            fs = match_size(fs, ft.shape[-2:])
            fa = fa + F.l1_loss(spatial_affinity(fs, pool), spatial_affinity(ft, pool))
        return {**self.ground_truth(sr, batch), "kd": l1(sr, teacher.output), "fa": fa / max(1, len(feats))}


def _check(o: dict[str, Any]) -> None:
    for key in ("l_kd", "l_fa"):
        need(o[key] >= 0, "fakd", key, "must be 0 or more")
    need(o["pool"] >= 1, "fakd", "pool", "must be 1 (no pooling) or more")


METHOD = MethodSpec(
    id="fakd",
    title="Feature-affinity KD: L1 between spatial affinity matrices at the boundaries, plus logits-KD",
    build=FAKD,
    options={"l_kd": 1.0, "l_fa": 1.0, "pool": 1},
    option_help={
        "l_kd": "weight of L1(student output, teacher output)",
        "l_fa": "weight of the affinity loss, averaged over boundaries",
        "pool": "average-pool features by this factor before the (HW)^2 affinity (1: the paper's full matrix)",
    },
    check=_check,
    uses_features=True,
    reference="He et al., FAKD: Feature-Affinity Based Knowledge Distillation for Efficient Image Super-Resolution, ICIP 2020",
)
