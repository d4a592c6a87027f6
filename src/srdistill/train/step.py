"""One optimisation step of an objective, the same on one process and under DDP.

Forward under autocast; then a single all-reduce carries, for every rank at once, the loss terms
(so the logged value is the global mean), which terms are non-finite anywhere, and the decisions
that end or change the loop (a signal, the time budget, a checkpoint due); then backward (DDP
averages the gradients), the gradient norm (clipped if asked), and the update or a skip. Every
rank reaches the same verdict, so no rank waits forever for another.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import SrdistillError
from .ddp import DistContext
from .ema import ModelEMA
from .machine import autocast
from .objective import Batch


@dataclass
class StepOutcome:
    terms: dict[str, float]  # each loss term, unweighted, mean over ranks
    loss: float  # the weighted sum
    bad_terms: list[str]  # terms that were non-finite on some rank
    grad_norm: float
    skipped: bool  # no update was made
    overflow_only: bool  # skipped only because fp16 loss scaling overflowed (routine; not counted)
    stop: bool  # a rank received SIGINT/SIGTERM
    time_up: bool
    checkpoint_due: bool

    def problem(self) -> str:
        if self.bad_terms:
            return f"non-finite loss in term {self.bad_terms[0]!r}"
        return "non-finite gradient (every loss term finite)"


class Stepper:
    def __init__(
        self,
        *,
        model: nn.Module,
        student: nn.Module,
        params: list[nn.Parameter],
        optimizer: torch.optim.Optimizer,
        weights: Mapping[str, float],
        device: torch.device,
        precision: str,
        grad_clip: float,
        ctx: DistContext,
        objective_name: str,
        scaler: torch.amp.GradScaler | None = None,
        ema: ModelEMA | None = None,
    ):
        self.model, self.student, self.params, self.optimizer = model, student, params, optimizer
        self.weights = dict(weights)
        self.device, self.precision, self.grad_clip, self.ctx = device, precision, grad_clip, ctx
        self.objective_name, self.scaler, self.ema = objective_name, scaler, ema

    def _checked(self, terms) -> dict[str, torch.Tensor]:
        if not isinstance(terms, dict) or not terms:
            raise SrdistillError(f"objective {self.objective_name!r} returned {type(terms).__name__}, not a dict of loss terms")
        out = {}
        for name, value in terms.items():
            if not torch.is_tensor(value) or value.dim() != 0:
                shape = tuple(value.shape) if torch.is_tensor(value) else type(value).__name__
                raise SrdistillError(f"objective {self.objective_name!r}: loss term {name!r} is {shape}, not a scalar tensor")
            out[name] = value.float()
        return out

    def __call__(self, batch: Batch, lr: float, *, stop: bool, time_up: bool, checkpoint_due: bool) -> StepOutcome:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with autocast(self.device, self.precision):
            terms = self._checked(self.model(batch))
        total = sum(self.weights.get(name, 1.0) * value for name, value in terms.items())

        values = torch.stack([v.detach() for v in terms.values()]).cpu()
        local = torch.cat([values, (~torch.isfinite(values)).float(), torch.tensor([float(stop), float(time_up), float(checkpoint_due)])])
        shared = self.ctx.sum(local).tolist()
        n = len(terms)
        means = {name: v / self.ctx.world_size for name, v in zip(terms, shared[:n])}
        bad = [name for name, flag in zip(terms, shared[n : 2 * n]) if flag > 0]
        stop, time_up, checkpoint_due = (flag > 0 for flag in shared[2 * n :])

        # Backward even when a term is bad: under DDP every rank must join the gradient all-reduce.
        self.optimizer.zero_grad(set_to_none=True)
        (self.scaler.scale(total) if self.scaler else total).backward()
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        max_norm = self.grad_clip if self.grad_clip > 0 else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, max_norm))
        skipped = bool(bad) or not math.isfinite(grad_norm)
        if skipped:
            if self.scaler:
                self.scaler.update()  # lowers the loss scale after an overflow
        else:
            if self.scaler:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
            if self.ema is not None:
                self.ema.update(self.student)
        return StepOutcome(
            terms=means,
            loss=float(sum(self.weights.get(k, 1.0) * v for k, v in means.items())),
            bad_terms=bad,
            grad_norm=grad_norm,
            skipped=skipped,
            overflow_only=skipped and self.scaler is not None and not bad,
            stop=stop,
            time_up=time_up,
            checkpoint_due=checkpoint_due,
        )
