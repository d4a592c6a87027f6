"""Learning-rate schedules as pure functions of progress, so their state is just the step.

``progress`` is the fraction of the run done: ``step / steps``, or elapsed / ``--max-time`` for a
run bounded by time (whichever is further along when both are given). Warm-up is linear over the
first ``warmup`` steps and multiplies whatever the schedule gives.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def lr_at(
    *,
    base_lr: float,
    schedule: str,
    progress: float,
    step: int,
    warmup: int = 0,
    milestones: Sequence[float] = (0.5, 0.75, 0.9),
    gamma: float = 0.5,
    min_lr: float = 0.0,
) -> float:
    progress = min(max(progress, 0.0), 1.0)
    if schedule == "cosine":
        lr = min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
    elif schedule == "multistep":
        lr = base_lr * gamma ** sum(progress >= m for m in milestones)
    else:
        raise ValueError(f"unknown schedule {schedule!r}")
    if warmup > 0 and step < warmup:
        lr *= (step + 1) / warmup
    return lr


def run_progress(step: int, steps: int | None, elapsed: float, max_time: float | None) -> float:
    parts = []
    if steps:
        parts.append(step / steps)
    if max_time:
        parts.append(elapsed / max_time)
    return max(parts) if parts else 0.0
