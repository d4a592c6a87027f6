"""The training engine: ``train(config)`` builds everything from a :class:`TrainConfig` and runs
the step loop for any :class:`~srdistill.train.objective.Objective` (plain supervised by default;
distillation methods bring their own), on one process or under torchrun.

One step (:mod:`.step`): take this rank's batch, run the objective under autocast, agree with the
other ranks on what happened (non-finite terms, a signal, the time budget) in one small
all-reduce, backward (DDP averages the gradients), check the gradient norm, step or skip, update
the EMA. The run's state, set-up, checkpoints and resume live in :mod:`.session`
(:class:`~.session.RunState`); the functions here drive it and hold nothing themselves.
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
from ..errors import Interrupted, SrdistillError, param
from ..models import SRModel, describe, save_model
from ..provenance import model_file_reference, portable_config
from .config import TrainConfig, normalise
from .ddp import init_distributed
from .machine import resolve_device
from .objective import Batch, Objective
from .progress import StepReport, TrainCallback, TrainingWarning
from .records import LossWindow
from .schedules import lr_at, run_progress
from .session import RunState
from .signals import graceful_stop
from .tensorboard import attach_loggers
from .step import StepOutcome, Stepper
from .validate import evaluate_images

# Test hook: seconds to sleep after each step, so a test can signal or kill a run mid-way.
STEP_DELAY_ENV = "SRDISTILL_TEST_STEP_DELAY"
ObjectiveLike = Objective | Callable[[SRModel], Objective]
# Validation images handed to callbacks (TensorBoard shows them) at each validation.
VAL_SAMPLES = 3


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
    loggers = []
    try:
        if ctx.distributed and device.type == "cuda":
            device = torch.device("cuda", ctx.local_rank)
        callback, loggers = attach_loggers(callback or TrainCallback(), config.log, config.log_every)
        run = RunState(config, ctx, device, objective, student, callback, provenance or {})
        return _execute(run)
    finally:
        for logger in loggers:  # an interrupted run keeps what it logged
            logger.close()
        torch.set_num_threads(threads_before)  # a library call leaves the process as it found it
        ctx.close()


def _execute(run: RunState) -> TrainResult:
    if not run.ctx.is_main:
        warnings.filterwarnings("ignore", category=DataWarning)
        warnings.filterwarnings("ignore", category=TrainingWarning)
    done = run.prepare()
    try:
        if done:  # killed after its last checkpoint but before the model file was written
            run.info(f"{run.resumed_from} is the last step; writing the final model")
            run.loop_start = time.monotonic()
            return _finish(run, "steps", None)
        return _loop(run)
    finally:
        if run.log is not None:
            run.log.close()


def _batch(run: RunState, raw: dict[str, torch.Tensor]) -> Batch:
    fmt = torch.channels_last if run.config.channels_last else torch.contiguous_format
    non_blocking = run.loader.non_blocking

    def prep(t):  # uint8, channels_last from the loader; converted on the device
        return t.to(run.device, non_blocking=non_blocking).float().div_(255).contiguous(memory_format=fmt)

    hr = prep(raw["hr"]) if "hr" in raw else None  # absent: teacher labels only (data/teacher_labelled.py)
    return Batch(prep(raw["lr"]), hr, raw["index"], raw["image"], raw.get("teacher_only"), raw.get("consistency"))


def machine_record(run: RunState) -> dict[str, Any]:
    """Where and how the run computes, as asked and as resolved (first lines, metrics log, model file)."""
    c = run.config
    return {
        "device": str(run.device), "device_requested": c.device, "precision": run.precision,
        "precision_requested": c.precision, **run.loader.as_dict(), **run.backends,
    }


def _start_info(run: RunState) -> dict[str, Any]:
    c = run.config
    return {
        "run_dir": str(run.run_dir),
        "output": str(run.output),
        "arch": describe(run.student.spec, run.student.scale, run.student.hparams),
        "params": run.student.num_params,
        "objective": run.objective.name,
        "data": run.data_summary,
        **machine_record(run),
        "channels_last": c.channels_last,
        "threads": run.threads,
        "world_size": run.ctx.world_size,
        "batch_size": c.batch_size,
        "global_batch": c.batch_size * run.ctx.world_size,
        "steps": c.steps,
        "max_time": c.max_time,
        "start_step": run.step,
        "resumed_from": str(run.resumed_from) if run.resumed_from else None,
    }


def _loop(run: RunState) -> TrainResult:
    c, ctx = run.config, run.ctx
    delay = float(os.environ.get(STEP_DELAY_ENV, "0") or 0)
    loader = patch_loader(
        run.dataset, start=run.samples_seen, batch_size=c.batch_size, rank=ctx.rank, world_size=ctx.world_size,
        workers=run.workers, pin_memory=run.loader.pin_memory,
    )
    stepper = Stepper(
        model=run.model, student=run.step_module.student, params=run.params, optimizer=run.optimizer,
        weights=run.objective.weights, device=run.device, precision=run.precision, grad_clip=c.grad_clip,
        ctx=ctx, objective_name=run.objective.name, scaler=run.scaler, ema=run.ema,
    )
    if ctx.is_main:
        run.callback.on_start(_start_info(run))
        run.log.append({"step": run.step, "event": "started", **machine_record(run)})
        for skipped in run.images.skipped:
            run.log.append({"step": run.step, "event": "skipped_image", "detail": skipped})
    stream = iter(loader)
    run.loop_start = run.last_checkpoint_time = time.monotonic()
    window = LossWindow(dict(run.objective.weights))
    window.start = time.perf_counter()
    bad_streak, stopped, last_loss = 0, "steps", None
    try:
        with graceful_stop() as stop:
            while True:
                t0 = time.perf_counter()
                batch = _batch(run, next(stream))
                data_s = time.perf_counter() - t0
                elapsed = run.elapsed()
                run.current_lr = lr_at(
                    base_lr=c.lr, schedule=c.schedule, progress=run_progress(run.step, c.steps, elapsed, c.max_time),
                    step=run.step, warmup=c.warmup, milestones=c.milestones, gamma=c.gamma, min_lr=c.min_lr,
                )
                out = stepper(
                    batch, run.current_lr, stop=stop.requested, time_up=bool(c.max_time and elapsed >= c.max_time),
                    checkpoint_due=bool(c.checkpoint_minutes and time.monotonic() - run.last_checkpoint_time >= c.checkpoint_minutes * 60),
                )
                run.step += 1
                run.samples_seen += c.batch_size * ctx.world_size
                if out.skipped and not out.overflow_only:
                    bad_streak += 1
                    run.note(f"step {run.step}: {out.problem()}; step skipped ({bad_streak} in a row)")
                elif not out.skipped:
                    bad_streak, last_loss = 0, out.loss
                if bad_streak >= c.max_bad_steps:
                    path = run.save_checkpoint()
                    raise TrainingDiverged(
                        f"stopped at step {run.step}: {bad_streak} steps in a row were non-finite (last: {out.problem()}); "
                        f"checkpoint {path or 'saved'} kept; lower {param('lr')}, set {param('grad_clip')} or use {param('precision', 'fp32')}, then {param('resume', 'auto')}"
                    )
                want_stop = out.stop
                finished = c.steps is not None and run.step >= c.steps
                if out.time_up and not finished:
                    stopped = "time"
                end = finished or out.time_up or want_stop
                window.add(out.terms, out.skipped, data_s)
                if ctx.is_main:
                    _report(run, out, window, t0, data_s, log=run.step % c.log_every == 0 or end or stop.requested)
                if not ctx.distributed and stop.requested:  # alone, a signal during the step ends it;
                    want_stop = end = True  # under torchrun the ranks agree through the next step
                if run.val_images and ((c.val_every and run.step % c.val_every == 0) or (end and not want_stop)):
                    _validate(run)
                if (c.checkpoint_every and run.step % c.checkpoint_every == 0) or out.checkpoint_due or end:
                    run.save_checkpoint()
                if want_stop:
                    raise Interrupted(
                        f"stopped by {stop.name or 'a signal'} at step {run.step}; checkpoint saved in "
                        f"{run.run_dir / 'checkpoints'}",
                        exit_code=stop.exit_code or 130, run_dir=run.run_dir, step=run.step,
                    )
                if end:
                    break
                if delay:
                    time.sleep(delay)
    finally:
        del stream
    return _finish(run, stopped, last_loss)


def _report(run: RunState, out: StepOutcome, window: LossWindow, t0: float, data_s: float, *, log: bool) -> None:
    c = run.config
    now = time.perf_counter()
    step_s, elapsed = now - t0, run.elapsed()
    progress = run_progress(run.step, c.steps, elapsed, c.max_time)
    per_step = c.batch_size * run.ctx.world_size
    run.callback.on_step(StepReport(
        step=run.step, steps=c.steps, progress=progress, elapsed=elapsed,
        eta=(elapsed / progress - elapsed) if progress > 0 else None, loss=out.loss, terms=out.terms,
        lr=run.current_lr, steps_per_s=1.0 / step_s, samples_per_s=per_step / step_s, data_ms=data_s * 1e3,
        step_ms=step_s * 1e3, skipped=out.skipped, last_val=run.last_val,
    ))
    if log:
        run.log.append(window.record(step=run.step, lr=run.current_lr, grad_norm=out.grad_norm,
                                      samples_per_step=per_step, elapsed=elapsed, now=now))


def _validate(run: RunState) -> None:
    net = run.ema.net if run.ema is not None else run.step_module.student
    result = evaluate_images(
        net, run.val_images, scale=run.student.scale, device=run.device,
        size_multiple=run.student.spec.pad_multiple(run.student.hparams, run.student.scale), min_size=run.student.spec.min_size,
        channels_last=run.config.channels_last, keep=VAL_SAMPLES,
    )
    samples = result.pop("samples")  # for image loggers; the run's records keep the numbers
    result["step"] = run.step
    run.last_val = result
    if run.log is not None:
        run.log.append({"step": run.step, "val_psnr_y": result["psnr_y"], "val_ssim_y": result["ssim_y"],
                         "val_images": result["images"], "val_model": "ema" if run.ema else "student"})
    run.callback.on_validation(run.step, {**result, "samples": samples})


def _finish(run: RunState, stopped: str, last_loss: float | None) -> TrainResult:
    elapsed = run.elapsed()
    if run.ctx.is_main:
        net = copy.deepcopy(run.ema.net if run.ema is not None else run.step_module.student)
        net = net.float().cpu().to(memory_format=torch.contiguous_format).eval()
        final = SRModel(run.student.spec, run.student.scale, run.student.hparams, net)
        if not run.config.keep_unfused:
            final = final.fuse()
        provenance = {
            "trained_by": "srdistill train",
            "objective": run.objective.describe(),
            "steps": run.step,
            "train_seconds": round(elapsed, 1),
            "weights": "ema" if run.ema is not None else "final",
            "world_size": run.ctx.world_size,
            "precision": run.precision,
            "machine": machine_record(run),
            "data": {**run.data_summary, **run.data_record},
            "validation": run.last_val,
            # config.toml in the run folder keeps the paths; the shared file keeps names.
            "config": portable_config(run.config.stored()),
            **({"init": model_file_reference(run.config.init)} if run.config.init else {}),
            **run.provenance,
        }
        in_run = run.run_dir / "model.safetensors"
        save_model(final, in_run, overwrite=True, provenance=provenance)
        if run.output != in_run:
            save_model(final, run.output, overwrite=run.config.overwrite, provenance=provenance)
        run.log.append({"step": run.step, "event": "finished", "stopped": stopped, "output": str(run.output)})
        run.draw_curve()
        run.callback.on_end({"steps": run.step, "elapsed": elapsed, "output": str(run.output), "validation": run.last_val})
    run.ctx.barrier()
    return TrainResult(
        run_dir=run.run_dir, output=run.output, steps=run.step, elapsed=elapsed, stopped=stopped,
        last_val=run.last_val, final_loss=last_loss, config=run.config.stored(), resumed_from=run.resumed_from,
    )
