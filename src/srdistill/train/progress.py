"""How the engine reports progress: a small callback interface the CLI renders (Rich live
display) and a library user may implement. Nothing in the engine prints by itself.

Two kinds of message: ``on_info`` (what the run is doing, e.g. "caching the teacher's output")
and ``on_message`` (a warning: something went differently than asked and the user may want to
act, e.g. a skipped step or a checkpoint fallback). The CLI prints the first plain, the second
with a "warning:" label.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger("srdistill.train")


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
    """Base with no display: warnings become ``TrainingWarning``, information goes to the
    ``srdistill.train`` logger at INFO. Override what you need."""

    def on_start(self, info: dict[str, Any]) -> None: ...

    def on_step(self, report: StepReport) -> None: ...

    def on_validation(self, step: int, result: dict[str, Any]) -> None:
        """``result`` holds ``psnr_y``, ``ssim_y``, ``images`` and ``samples``: (name, output, HR)
        of the first few validation images as uint8 HxWx3 arrays (for image loggers; the run's
        records keep only the numbers)."""

    def on_info(self, text: str) -> None:
        logger.info(text)

    def on_message(self, text: str) -> None:
        warnings.warn(text, TrainingWarning, stacklevel=2)

    def on_end(self, summary: dict[str, Any]) -> None: ...


class CallbackFanout(TrainCallback):
    """Several observers as one callback, in order (the caller's display first, then the
    engine's own loggers such as TensorBoard)."""

    def __init__(self, *callbacks: TrainCallback):
        self.callbacks = callbacks

    def on_start(self, info: dict[str, Any]) -> None:
        for cb in self.callbacks:
            cb.on_start(info)

    def on_step(self, report: StepReport) -> None:
        for cb in self.callbacks:
            cb.on_step(report)

    def on_validation(self, step: int, result: dict[str, Any]) -> None:
        for cb in self.callbacks:
            cb.on_validation(step, result)

    def on_info(self, text: str) -> None:
        for cb in self.callbacks:
            cb.on_info(text)

    def on_message(self, text: str) -> None:
        for cb in self.callbacks:
            cb.on_message(text)

    def on_end(self, summary: dict[str, Any]) -> None:
        for cb in self.callbacks:
            cb.on_end(summary)
