"""How the engine reports progress: a small callback interface the CLI renders (Rich live
display) and a library user may implement. Nothing in the engine prints by itself."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any


class TrainingWarning(UserWarning):
    """A step was skipped, a checkpoint fell back, ... (what ``on_message`` reports)."""


@dataclass
class StepReport:
    step: int  # optimizer steps done, counting this one
    steps: int | None  # the step budget, if any
    progress: float  # fraction of the run done (steps or time, whichever is further)
    elapsed: float  # seconds of training, summed over resumes
    eta: float | None  # seconds left, estimated
    loss: float  # weighted sum of the terms
    terms: dict[str, float]  # each loss term by name (unweighted)
    lr: float
    steps_per_s: float
    samples_per_s: float  # over all ranks
    data_ms: float  # time waiting for the batch
    step_ms: float  # the whole step, data included
    skipped: bool = False
    last_val: dict[str, Any] | None = field(default=None)


class TrainCallback:
    """Base with no display; messages become warnings. Override what you need."""

    def on_start(self, info: dict[str, Any]) -> None: ...

    def on_step(self, report: StepReport) -> None: ...

    def on_validation(self, step: int, result: dict[str, Any]) -> None: ...

    def on_message(self, text: str) -> None:
        warnings.warn(text, TrainingWarning, stacklevel=2)

    def on_end(self, summary: dict[str, Any]) -> None: ...
