"""TensorBoard event files for a run (``log = ["tensorboard"]``, ``--log tensorboard``), the way
BasicSR-style trainers log: every loss term, the learning rate, validation PSNR/SSIM and a few
validation images (output beside HR), under ``RUN_DIR/tensorboard/``.

An observer the engine attaches next to the caller's callback, so the loop knows nothing about it.
The ``tensorboard`` package is an optional extra (``pip install 'srdistill[tensorboard]'``); the
configuration check refuses ``log = ["tensorboard"]`` without it, before anything is built.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError, param
from .progress import CallbackFanout, StepReport, TrainCallback

TENSORBOARD_DIR = "tensorboard"
# Side of the central crop of each validation image shown (output and HR side by side): whole
# photos would make the event file grow by megabytes per validation.
IMAGE_CROP = 256


def _summary_writer_class() -> type:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise UsageError(
            f"{param('log')} tensorboard needs the tensorboard package ({exc}): pip install 'srdistill[tensorboard]'"
        ) from None
    return SummaryWriter


def _centre_crop(image: np.ndarray, height: int, width: int) -> np.ndarray:
    top, left = (image.shape[0] - height) // 2, (image.shape[1] - width) // 2
    return image[top : top + height, left : left + width]


def side_by_side(output: np.ndarray, hr: np.ndarray, crop: int = IMAGE_CROP) -> np.ndarray:
    """Output | HR, the same central crop (at most ``crop`` pixels a side) of each, uint8 HxWx3
    (a gray HR is repeated to 3 channels)."""
    if hr.shape[2] == 1:
        hr = np.repeat(hr, 3, axis=2)
    h, w = min(output.shape[0], hr.shape[0]), min(output.shape[1], hr.shape[1])
    height, width = min(crop, h), min(crop, w)
    gap = np.full((height, 4, 3), 255, dtype=np.uint8)
    return np.concatenate([_centre_crop(output[:h, :w], height, width), gap, _centre_crop(hr[:h, :w], height, width)], axis=1)


class TensorBoardLogger(TrainCallback):
    """Writes the run's scalars and validation images as TensorBoard events (rank 0 only: the
    engine calls these methods on the main process)."""

    def __init__(self, every: int = 10):
        self.every = every  # average the loss terms over this many steps, as metrics.jsonl does
        self.writer_class = _summary_writer_class()  # fails here, before training, if unusable
        self.writer = None
        self._reset()

    def _reset(self) -> None:
        self.sums: dict[str, float] = {}
        self.loss_sum, self.updates = 0.0, 0

    def on_start(self, info: dict[str, Any]) -> None:
        # A resumed run replays the steps after its checkpoint: purge_step hides what the killed
        # run logged for them, so the curves read as one run.
        purge = info["start_step"] + 1 if info.get("resumed_from") else None
        self.writer = self.writer_class(log_dir=str(Path(info["run_dir"]) / TENSORBOARD_DIR), purge_step=purge)

    def on_step(self, report: StepReport) -> None:
        if self.writer is None:
            return
        if not report.skipped:
            self.updates += 1
            self.loss_sum += report.loss
            for name, value in report.terms.items():
                self.sums[name] = self.sums.get(name, 0.0) + value
        finished = report.steps is not None and report.step >= report.steps
        if report.step % self.every and not finished:
            return
        step = report.step
        if self.updates:
            self.writer.add_scalar("loss/total", self.loss_sum / self.updates, step)
            for name, total in self.sums.items():
                if math.isfinite(total):
                    self.writer.add_scalar(f"loss/{name}", total / self.updates, step)
        self.writer.add_scalar("train/lr", report.lr, step)
        self.writer.add_scalar("train/samples_per_s", report.samples_per_s, step)
        self._reset()

    def on_validation(self, step: int, result: dict[str, Any]) -> None:
        if self.writer is None:
            return
        self.writer.add_scalar("val/psnr_y", result["psnr_y"], step)
        if "ssim_y" in result:
            self.writer.add_scalar("val/ssim_y", result["ssim_y"], step)
        for name, output, hr in result.get("samples", ()):
            self.writer.add_image(f"val/{Path(name).stem}", side_by_side(output, hr), step, dataformats="HWC")
        self.writer.flush()

    # Messages are the display's business; the base class would turn each into a second warning.
    def on_info(self, text: str) -> None: ...

    def on_message(self, text: str) -> None: ...

    def on_end(self, summary: dict[str, Any]) -> None:
        self.close()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def attach_loggers(callback: TrainCallback, log: list[str], every: int) -> tuple[TrainCallback, list[TensorBoardLogger]]:
    """The callback the engine drives: the caller's first, then one logger per ``log`` entry.
    Also returns the loggers, for the engine to close when a run ends early."""
    loggers = [TensorBoardLogger(every) for name in log if name == "tensorboard"]
    return (CallbackFanout(callback, *loggers) if loggers else callback), loggers
