"""The training engine: ``train(config)`` builds everything from a :class:`TrainConfig` and runs
the step loop for any :class:`~srdistill.train.objective.Objective` (plain supervised by default;
distillation methods bring their own), on one process or under torchrun.

One step (:mod:`.step`): take this rank's batch, run the objective under autocast, agree with the
other ranks on what happened (non-finite terms, a signal, the time budget) in one small
all-reduce, backward (DDP averages the gradients), check the gradient norm, step or skip, update
the EMA. Set-up, checkpoints and resume live in :mod:`.session`.
"""

from __future__ import annotations

import copy
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..data.dataset import DataWarning, patch_loader
from ..errors import Interrupted, SrdistillError, UsageError
from ..models import SRModel, describe, save_model
from .config import TrainConfig, normalise
from .ddp import init_distributed
from .machine import default_threads, resolve_device, resolve_precision
from .objective import Batch, Objective
from .progress import StepReport, TrainCallback, TrainingWarning
from .records import LossWindow
from .schedules import lr_at, run_progress
from .seeding import seed_rank_stream
from .session import RunState, build_student, initialise_from
from .signals import graceful_stop
from .step import StepOutcome, Stepper
from .validate import evaluate_images

# Test hook: seconds to sleep after each step, so a test can signal or kill a run mid-way.
STEP_DELAY_ENV = "SRDISTILL_TEST_STEP_DELAY"
ObjectiveLike = Objective | Callable[[SRModel], Objective]


class TrainingDiverged(SrdistillError):
    """Too many steps in a row had a non-finite loss or gradient."""


@dataclass
class TrainResult:
    run_dir: Path
    output: Path
    steps: int
    elapsed: float
    stopped: str  # "steps" or "time"
    last_val: dict[str, Any] | None
    final_loss: float | None
    config: dict[str, Any] = field(default_factory=dict)
    resumed_from: Path | None = None


def train(
    config: TrainConfig,
    *,
    objective: ObjectiveLike | None = None,
    student: SRModel | None = None,
    callback: TrainCallback | None = None,
    provenance: dict[str, Any] | None = None,
) -> TrainResult:
    """Train ``student`` (default: built from ``config.arch``) on ``config.data``.

    ``objective`` is an Objective or a factory taking the built student (for methods whose extra
    modules depend on it); default: plain L1 to the HR patch. ``provenance`` is added to the
    output file's metadata. Runs as one rank of a torchrun job when launched by torchrun.
    """
    config = normalise(config)
    device = resolve_device(config.device)
    ctx = init_distributed(device.type)
    threads_before = torch.get_num_threads()
    try:
        if ctx.distributed and device.type == "cuda":
            device = torch.device("cuda", ctx.local_rank)
        return _Run(config, ctx, device, objective, student, callback or TrainCallback(), provenance or {}).execute()
    finally:
        torch.set_num_threads(threads_before)  # a library call leaves the process as it found it
        ctx.close()


class _Run(RunState):
    def execute(self) -> TrainResult:
        if not self.ctx.is_main:
            warnings.filterwarnings("ignore", category=DataWarning)
            warnings.filterwarnings("ignore", category=TrainingWarning)
        c = self.config
        self._setup_run_dir()
        resume_state = self._find_resume()
        self.student = self.student_arg if self.student_arg is not None else build_student(c)
        if c.init and resume_state is None:
            if self.student_arg is not None:
                raise UsageError("init is for `srdistill train`; a distillation starts its student from --student FILE")
            self.note(initialise_from(self.student, c.init))
        c.arch_opt = {k: v for k, v in self.student.hparams.items() if self._differs_from_preset(k)}
        if resume_state is not None:
            self._check_identity(resume_state)  # before any data is read
        self.precision = resolve_precision(c.precision, self.device, self.student.spec.safe_dtypes, self.student.spec.id)
        self._build_data()
        self.threads = c.threads or default_threads(self.ctx.local_world_size)
        torch.set_num_threads(self.threads)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed patch sizes: pick the fastest kernels once
            torch.set_float32_matmul_precision("high")  # TF32 where fp32 is asked for
        self._build_training()
        if resume_state is not None:
            self._restore(resume_state)
        else:
            seed_rank_stream(c.seed, self.ctx.rank)
        done = resume_state is not None and c.steps is not None and self.step >= c.steps
        if done and (self.run_dir / "model.safetensors").exists():
            raise UsageError(
                f"{self.resumed_from} is already at step {self.step} of --steps {c.steps}; pass a larger --steps to train further"
            )
        self._write_run_files()
        try:
            if done:  # killed after its last checkpoint but before the model file was written
                self.note(f"{self.resumed_from} is the last step; writing the final model")
                self.loop_start = time.monotonic()
                return self._finish("steps", None)
            return self._loop()
        finally:
            if self.log is not None:
                self.log.close()

    def _batch(self, raw: dict[str, torch.Tensor]) -> Batch:
        fmt = torch.channels_last if self.config.channels_last else torch.contiguous_format
        non_blocking = self.device.type == "cuda"

        def prep(t):  # uint8, channels_last from the loader; converted on the device
            return t.to(self.device, non_blocking=non_blocking).float().div_(255).contiguous(memory_format=fmt)

        return Batch(prep(raw["lr"]), prep(raw["hr"]), raw["index"], raw["image"])

    def _start_info(self) -> dict[str, Any]:
        c = self.config
        return {
            "run_dir": str(self.run_dir),
            "output": str(self.output),
            "arch": describe(self.student.spec, self.student.scale, self.student.hparams),
            "params": self.student.num_params,
            "objective": self.objective.name,
            "data": self.data_summary,
            "device": str(self.device),
            "precision": self.precision,
            "channels_last": c.channels_last,
            "threads": self.threads,
            "workers": self.workers,
            "world_size": self.ctx.world_size,
            "batch_size": c.batch_size,
            "global_batch": c.batch_size * self.ctx.world_size,
            "steps": c.steps,
            "max_time": c.max_time,
            "start_step": self.step,
            "resumed_from": str(self.resumed_from) if self.resumed_from else None,
        }

    def _loop(self) -> TrainResult:
        c, ctx = self.config, self.ctx
        delay = float(os.environ.get(STEP_DELAY_ENV, "0") or 0)
        loader = patch_loader(
            self.dataset, start=self.samples_seen, batch_size=c.batch_size, rank=ctx.rank, world_size=ctx.world_size,
            workers=self.workers, pin_memory=self.device.type == "cuda",
        )
        stepper = Stepper(
            model=self.model, student=self.step_module.student, params=self.params, optimizer=self.optimizer,
            weights=self.objective.weights, device=self.device, precision=self.precision, grad_clip=c.grad_clip,
            ctx=ctx, objective_name=self.objective.name, scaler=self.scaler, ema=self.ema,
        )
        if ctx.is_main:
            self.callback.on_start(self._start_info())
            for skipped in self.images.skipped:
                self.log.append({"step": self.step, "event": "skipped_image", "detail": skipped})
        stream = iter(loader)
        self.loop_start = self.last_checkpoint_time = time.monotonic()
        window = LossWindow(dict(self.objective.weights))
        window.start = time.perf_counter()
        bad_streak, stopped, last_loss = 0, "steps", None
        try:
            with graceful_stop() as stop:
                while True:
                    t0 = time.perf_counter()
                    batch = self._batch(next(stream))
                    data_s = time.perf_counter() - t0
                    elapsed = self._elapsed()
                    self.current_lr = lr_at(
                        base_lr=c.lr, schedule=c.schedule, progress=run_progress(self.step, c.steps, elapsed, c.max_time),
                        step=self.step, warmup=c.warmup, milestones=c.milestones, gamma=c.gamma, min_lr=c.min_lr,
                    )
                    out = stepper(
                        batch, self.current_lr, stop=stop.requested, time_up=bool(c.max_time and elapsed >= c.max_time),
                        checkpoint_due=bool(c.checkpoint_minutes and time.monotonic() - self.last_checkpoint_time >= c.checkpoint_minutes * 60),
                    )
                    self.step += 1
                    self.samples_seen += c.batch_size * ctx.world_size
                    if out.skipped and not out.overflow_only:
                        bad_streak += 1
                        self.note(f"step {self.step}: {out.problem()}; step skipped ({bad_streak} in a row)")
                    elif not out.skipped:
                        bad_streak, last_loss = 0, out.loss
                    if bad_streak >= c.max_bad_steps:
                        path = self.save_checkpoint()
                        raise TrainingDiverged(
                            f"stopped at step {self.step}: {bad_streak} steps in a row were non-finite (last: {out.problem()}); "
                            f"checkpoint {path or 'saved'} kept; lower --lr, set --grad-clip or use --precision fp32, then --resume auto"
                        )
                    want_stop = out.stop
                    finished = c.steps is not None and self.step >= c.steps
                    if out.time_up and not finished:
                        stopped = "time"
                    end = finished or out.time_up or want_stop
                    window.add(out.terms, out.skipped, data_s)
                    if ctx.is_main:
                        self._report(out, window, t0, data_s, log=self.step % c.log_every == 0 or end or stop.requested)
                    if not ctx.distributed and stop.requested:  # alone, a signal during the step ends it;
                        want_stop = end = True  # under torchrun the ranks agree through the next step
                    if self.val_images and ((c.val_every and self.step % c.val_every == 0) or (end and not want_stop)):
                        self._validate()
                    if (c.checkpoint_every and self.step % c.checkpoint_every == 0) or out.checkpoint_due or end:
                        self.save_checkpoint()
                    if want_stop:
                        raise Interrupted(
                            f"stopped by {stop.name or 'a signal'} at step {self.step}; checkpoint saved in "
                            f"{self.run_dir / 'checkpoints'}; resume with: srdistill train --run-dir {self.run_dir} --resume auto",
                            exit_code=stop.exit_code or 130,
                        )
                    if end:
                        break
                    if delay:
                        time.sleep(delay)
        finally:
            del stream
        return self._finish(stopped, last_loss)

    def _report(self, out: StepOutcome, window: LossWindow, t0: float, data_s: float, *, log: bool) -> None:
        c = self.config
        now = time.perf_counter()
        step_s, elapsed = now - t0, self._elapsed()
        progress = run_progress(self.step, c.steps, elapsed, c.max_time)
        per_step = c.batch_size * self.ctx.world_size
        self.callback.on_step(StepReport(
            step=self.step, steps=c.steps, progress=progress, elapsed=elapsed,
            eta=(elapsed / progress - elapsed) if progress > 0 else None, loss=out.loss, terms=out.terms,
            lr=self.current_lr, steps_per_s=1.0 / step_s, samples_per_s=per_step / step_s, data_ms=data_s * 1e3,
            step_ms=step_s * 1e3, skipped=out.skipped, last_val=self.last_val,
        ))
        if log:
            self.log.append(window.record(step=self.step, lr=self.current_lr, grad_norm=out.grad_norm,
                                          samples_per_step=per_step, elapsed=elapsed, now=now))

    def _validate(self) -> None:
        net = self.ema.net if self.ema is not None else self.step_module.student
        result = evaluate_images(
            net, self.val_images, scale=self.student.scale, device=self.device,
            size_multiple=self.student.spec.pad_multiple(self.student.hparams, self.student.scale), min_size=self.student.spec.min_size,
            channels_last=self.config.channels_last,
        )
        result["step"] = self.step
        self.last_val = result
        if self.log is not None:
            self.log.append({"step": self.step, "val_psnr_y": result["psnr_y"], "val_ssim_y": result["ssim_y"],
                             "val_images": result["images"], "val_model": "ema" if self.ema else "student"})
        self.callback.on_validation(self.step, result)

    def _finish(self, stopped: str, last_loss: float | None) -> TrainResult:
        elapsed = self._elapsed()
        if self.ctx.is_main:
            net = copy.deepcopy(self.ema.net if self.ema is not None else self.step_module.student)
            net = net.float().cpu().to(memory_format=torch.contiguous_format).eval()
            final = SRModel(self.student.spec, self.student.scale, self.student.hparams, net)
            provenance = {
                "trained_by": "srdistill train",
                "objective": self.objective.describe(),
                "steps": self.step,
                "train_seconds": round(elapsed, 1),
                "weights": "ema" if self.ema is not None else "final",
                "world_size": self.ctx.world_size,
                "precision": self.precision,
                "data": self.data_summary,
                "validation": self.last_val,
                "config": self.config.stored(),
                **self.provenance,
            }
            in_run = self.run_dir / "model.safetensors"
            save_model(final, in_run, overwrite=True, provenance=provenance)
            if self.output != in_run:
                save_model(final, self.output, overwrite=self.config.overwrite, provenance=provenance)
            self.log.append({"step": self.step, "event": "finished", "stopped": stopped, "output": str(self.output)})
            self._draw_curve()
            self.callback.on_end({"steps": self.step, "elapsed": elapsed, "output": str(self.output), "validation": self.last_val})
        self.ctx.barrier()
        return TrainResult(
            run_dir=self.run_dir, output=self.output, steps=self.step, elapsed=elapsed, stopped=stopped,
            last_val=self.last_val, final_loss=last_loss, config=self.config.stored(), resumed_from=self.resumed_from,
        )
