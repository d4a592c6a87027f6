"""``fitnet``: FitNets hints for SR — a 1x1 regressor from each student boundary feature to the
teacher's, and an L1 or L2 loss between them, on top of logits-KD.

Both features are divided by their running per-channel spread first (``norm``), so boundaries
and architectures of very different feature scales (SwinIR vs EDSR) weigh alike.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...train.objective import Batch
from ..features import NORMS, RunningScale, match_size
from ..mixers import ChannelAdapter
from ..spec import DistillContext, MethodSpec, need
from .base import DistillObjective, l1


class FitNet(DistillObjective):
    def __init__(self, context: DistillContext, options: dict[str, Any]):
        super().__init__(METHOD, context, options)
        norm = options["norm"]
        self.regressors = nn.ModuleList(ChannelAdapter(b.student_channels, b.teacher_channels) for b in self.boundaries)
        self.norm_teacher = nn.ModuleList(RunningScale(b.teacher_channels, norm) for b in self.boundaries)
        self.norm_student = nn.ModuleList(RunningScale(b.student_channels, norm) for b in self.boundaries)
        self.weights = {"kd": options["l_kd"], "feat": options["l_feat"]}

    def trainable(self) -> dict[str, nn.Module]:
        return {"regressors": self.regressors, "norm_teacher": self.norm_teacher, "norm_student": self.norm_student}

    def terms(self, batch: Batch, student: nn.Module, step: int) -> dict[str, torch.Tensor]:
        sr, feats = self.student_forward(student, batch.lr, features=True, consistency=batch.consistency)
        teacher = self.teacher_signal(batch)
        distance = F.mse_loss if self.options["loss"] == "l2" else F.l1_loss
        feat = sr.new_zeros((), dtype=torch.float32)
        for k, (fs, ft) in enumerate(zip(feats, teacher.features)):
            target = self.norm_teacher[k](ft.float())
            hint = self.regressors[k](self.norm_student[k](match_size(fs, target.shape[-2:])))
            feat = feat + distance(hint.float(), target)
        return {**self.ground_truth(sr, batch), "kd": l1(sr, teacher.output), "feat": feat / max(1, len(feats))}


def _check(o: dict[str, Any]) -> None:
    for key in ("l_kd", "l_feat"):
        need(o[key] >= 0, "fitnet", key, "must be 0 or more")


METHOD = MethodSpec(
    id="fitnet",
    title="FitNets hints: 1x1 regressors + feature L2/L1 at the boundaries, plus logits-KD",
    build=FitNet,
    options={"l_kd": 1.0, "l_feat": 0.1, "loss": "l2", "norm": "channel"},
    option_help={
        "l_kd": "weight of L1(student output, teacher output)",
        "l_feat": "weight of the feature (hint) loss, averaged over boundaries",
        "loss": "distance between regressed student and teacher features: l2 (FitNets) or l1",
        "norm": "feature scaling before the loss: channel (running per-channel std), global, none",
    },
    choices={"loss": ("l2", "l1"), "norm": NORMS},
    check=_check,
    uses_features=True,
    reference="Romero et al., FitNets: Hints for Thin Deep Nets, ICLR 2015",
)
