"""What a training step optimises: the contract between the engine and a method.

The engine owns everything generic (data, precision, DDP, the optimiser, EMA, checkpoints,
signals, logging); an objective owns what is specific to a method:

* ``losses(batch, student)`` returns the named loss terms, ``dict[str, Tensor]`` of scalars. The
  engine weights them (``weights``), sums them, logs each by name, and names the first
  non-finite one when it skips a step ("non-finite loss in term 'l_feat'");
* ``modules()`` returns extra *trainable* modules (mixers, adapters): moved to the device,
  optimised and DDP-wrapped together with the student, stored in checkpoints, never saved into
  the student's model file;
* ``frozen()`` returns models that are used but not trained (a teacher): moved to the device,
  put in eval mode with gradients off, kept out of DDP (nothing to synchronise) and out of
  checkpoints;
* ``prepare(data)`` is called once the training images are loaded and the frozen models are on
  their device (also on resume, on every rank), e.g. to cache a teacher's outputs per image.

The plain supervised objective (L1 to the HR patch) is the default and the reference for others.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class Batch:
    """One process's share of a training batch, on the training device."""

    lr: torch.Tensor  # N x 3 x p x p, float in [0, 1]
    hr: torch.Tensor | None  # N x 3 x sp x sp; None when the run has no paired data (teacher labels only)
    index: torch.Tensor  # global sample numbers (int64, CPU): identify a patch for caching
    image: torch.Tensor  # training-image index of each sample (int64, CPU)
    # Teacher-labelled runs (data/teacher_labelled.py), None otherwise: bool N (CPU), samples whose
    # only label is the teacher's (their ``hr`` rows are zeros, left out of the ground-truth term);
    # int64 N (CPU), the flip/transpose code the student's input goes through (0: none).
    teacher_only: torch.Tensor | None = None
    consistency: torch.Tensor | None = None


@dataclass
class TrainingData:
    """What the engine knows once the training images are loaded (given to ``Objective.prepare``)."""

    dataset: Any  # data.dataset.PatchDataset: ``plan(index)``, ``patch_size`` and ``images``
    device: torch.device
    autocast: Callable[[], Any]  # a context manager in the run's precision
    processes_per_node: int = 1
    note: Callable[[str], None] = lambda text: None  # a message for the user (rank 0 shows it)


class Objective:
    """Base class with the defaults; subclass and override ``losses`` (and the rest as needed)."""

    name: str = "objective"
    # Loss weights by term name; a term not listed has weight 1.
    weights: Mapping[str, float] = {}
    # True when some trainable parameters may get no gradient in a step (random routing):
    # DistributedDataParallel then has to look for them, at a small cost.
    find_unused_parameters: bool = False

    def modules(self) -> dict[str, nn.Module]:
        return {}

    def frozen(self) -> dict[str, nn.Module]:
        return {}

    def prepare(self, data: TrainingData) -> None:
        """Called once before the first step; nothing by default."""

    def losses(self, batch: Batch, student: nn.Module) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """Method options recorded in the run's metadata."""
        return {"objective": self.name, "weights": dict(self.weights)}


class Supervised(Objective):
    """Ground truth only: L1 between the student's output and the HR patch (the EDSR/RCAN loss)."""

    name = "supervised"

    def losses(self, batch: Batch, student: nn.Module) -> dict[str, torch.Tensor]:
        sr = student(batch.lr)
        return {"l1": F.l1_loss(sr.float(), batch.hr)}


class StepModule(nn.Module):
    """The student and the objective's trainable extras as one module, whose forward is the
    objective's loss computation, so that one DistributedDataParallel wrapper covers all of it."""

    def __init__(self, student: nn.Module, objective: Objective):
        super().__init__()
        self.student = student
        self.extras = nn.ModuleDict(objective.modules())
        # Not a submodule: the frozen teacher is neither trained nor synchronised.
        self._objective = objective

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        return self._objective.losses(batch, self.student)
