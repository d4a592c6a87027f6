"""``srdistill train``: train any registered architecture from scratch (e.g. to make a teacher).

Works as is under ``torchrun --nproc_per_node=N -m srdistill train ...``: rank 0 prints and writes
files, the other ranks stay quiet.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn
from rich.text import Text

from ..errors import Interrupted, SrdistillError
from ..train.config import build_config
from ..train.loop import train as run_training
from ..train.progress import StepReport, TrainCallback
from ._console import console, err_console, print_json
from .options import parse_opts


def _fmt_time(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "?"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _terms_text(report: StepReport) -> str:
    terms = " ".join(f"{escape(k)} {v:.4g}" for k, v in report.terms.items())
    return f"loss {report.loss:.4g}" + (f" ({terms})" if len(report.terms) > 1 else "")


class _BarAndStats(Progress):
    """The progress bar on one line, the loss terms and rates on the next (a narrow terminal
    would otherwise squeeze the bar away)."""

    stats: str = ""

    def get_renderables(self):
        yield self.make_tasks_table(self.tasks)
        yield Text.from_markup(self.stats)


class ConsoleProgress(TrainCallback):
    """Rich live display on a terminal; plain periodic lines otherwise (logs, CI, batch jobs)."""

    def __init__(self, json_mode: bool):
        self.json_mode = json_mode
        self.live = console.is_terminal and not json_mode
        self.progress: Progress | None = None
        self.task = None
        self.last_line = 0.0
        self.val_text = "-"

    def on_start(self, info: dict[str, Any]) -> None:
        if self.json_mode:
            return
        data = info["data"]
        resumed = f", resumed at step {info['start_step']} from {info['resumed_from']}" if info["resumed_from"] else ""
        console.print(f"[bold]training[/bold] {escape(info['arch'])}, {info['params']:,} parameters, objective {escape(info['objective'])}")
        console.print(
            f"data: {data['images']} image(s), {data['megapixels']} MP from {escape(data['data'])}; LR {escape(data['lr_source'])}; "
            f"{'cached in memory' if data['cached'] else 'decoded per patch (not cached)'}; {data['validation_images']} validation image(s)"
        )
        budget = " / ".join(p for p in (f"{info['steps']} steps" if info["steps"] else "", f"{_fmt_time(info['max_time'])} max" if info["max_time"] else "") if p)
        console.print(
            f"{info['device']}, {info['precision']}, {'channels_last' if info['channels_last'] else 'NCHW'}, {info['threads']} thread(s), "
            f"{info['workers']} loader worker(s), {info['world_size']} process(es) x batch {info['batch_size']}; {budget}{escape(resumed)}"
        )
        console.print(f"run folder: {escape(info['run_dir'])}")
        if self.live:
            self.progress = _BarAndStats(
                TextColumn("[bold]{task.fields[steps]}"),
                BarColumn(bar_width=40),
                TaskProgressColumn(),
                TextColumn("{task.fields[times]}"),
                console=console,
                transient=False,
            )
            self.progress.start()
            self.task = self.progress.add_task("train", total=1000, steps="", times="")

    def _stats(self, r: StepReport) -> str:
        return (
            f"{_terms_text(r)}  lr {r.lr:.2e}  {r.steps_per_s:.2f} step/s  data {r.data_ms:.1f} ms"
            f"  val {self.val_text}" + ("  [yellow]skipped[/yellow]" if r.skipped else "")
        )

    def on_step(self, r: StepReport) -> None:
        if self.json_mode:
            return
        steps = f"{r.step}/{r.steps}" if r.steps else f"{r.step}"
        if self.progress is not None:
            self.progress.stats = self._stats(r)
            times = f"{_fmt_time(r.elapsed)} elapsed, eta {_fmt_time(r.eta)}"
            self.progress.update(self.task, completed=r.progress * 1000, steps=steps, times=times)
            return
        now = time.monotonic()
        if now - self.last_line >= 30 or (r.steps and r.step >= r.steps) or r.step == 1:
            self.last_line = now
            console.print(f"step {steps} ({r.progress:.0%}, eta {_fmt_time(r.eta)})  {self._stats(r)}", highlight=False)

    def on_validation(self, step: int, result: dict[str, Any]) -> None:
        self.val_text = f"{result['psnr_y']:.2f} dB"
        if not self.json_mode and self.progress is None:
            console.print(f"step {step}: validation PSNR-Y {result['psnr_y']:.3f} dB, SSIM-Y {result['ssim_y']:.4f} "
                          f"({result['images']} image(s))", highlight=False)

    def on_message(self, text: str) -> None:
        target = self.progress.console if self.progress is not None else err_console
        target.print(f"[yellow]warning:[/yellow] {escape(text)}", highlight=False, soft_wrap=True)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def on_end(self, summary: dict[str, Any]) -> None:
        self.stop()


def train(
    arch: str = typer.Option(None, "--arch", help="Preset or arch id to train (see `srdistill archs`), e.g. edsr-lite."),
    arch_opt: list[str] = typer.Option([], "--arch-opt", help="Override a hyperparameter of the preset, e.g. n_feats=32 (repeatable)."),
    data: str = typer.Option(None, "--data", help="Training images: a folder of HR images, or HR/ + LR_bicubic/X{s}/."),
    scale: int = typer.Option(None, "--scale", help="Upscaling factor (default 4)."),
    hr_downscale: float = typer.Option(None, "--hr-downscale", help="Shrink each HR photo by this factor first (cleans JPEG photos; default 1)."),
    patch_size: int = typer.Option(None, "--patch-size", help="LR patch side in pixels (default 48)."),
    batch_size: int = typer.Option(None, "--batch-size", help="Patches per step and process (default 16)."),
    workers: int = typer.Option(None, "--workers", help="Data-loader worker processes (-1 auto, 0 in-process)."),
    val_data: str = typer.Option(None, "--val-data", help="Validation folder (e.g. ../shared/data/benchmarks/Set5)."),
    val_fraction: float = typer.Option(None, "--val-fraction", help="Hold out this fraction of the training images for validation."),
    val_every: int = typer.Option(None, "--val-every", help="Validate every N steps (default 500; 0 only at the end)."),
    steps: int = typer.Option(None, "--steps", help="Number of optimizer steps."),
    max_time: str = typer.Option(None, "--max-time", help="Training time budget: seconds or 30m, 2h, 1h30m."),
    lr: float = typer.Option(None, "--lr", help="Peak learning rate (default 2e-4, Adam)."),
    schedule: str = typer.Option(None, "--schedule", help="cosine (default) or multistep."),
    warmup: int = typer.Option(None, "--warmup", help="Linear warm-up steps (default 0)."),
    ema: float = typer.Option(None, "--ema", help="EMA decay of the weights, e.g. 0.999 (default 0: off); the output holds the EMA."),
    grad_clip: float = typer.Option(None, "--grad-clip", help="Clip the gradient norm to this (default 0: off)."),
    seed: int = typer.Option(None, "--seed", help="Seed for initialisation and data (default 0)."),
    device: str = typer.Option(None, "--device", help="auto (default), cpu, cuda or cuda:N."),
    precision: str = typer.Option(None, "--precision", help="auto (default: bf16 where native, else fp32), fp32, bf16 or fp16."),
    channels_last: bool = typer.Option(None, "--channels-last/--no-channels-last", help="channels_last memory format (default on: faster convolutions)."),
    threads: int = typer.Option(None, "--threads", help="CPU threads (default: physical cores / processes per node)."),
    output: Path = typer.Option(None, "-o", "--output", help="Also write the final model here (.safetensors)."),
    overwrite: bool = typer.Option(None, "--overwrite", help="Replace an existing output file."),
    run_dir: str = typer.Option(None, "--run-dir", help="Run folder (default runs/<arch>-x<scale>-<time>)."),
    checkpoint_every: int = typer.Option(None, "--checkpoint-every", help="Checkpoint every N steps (default 1000; also every 10 min)."),
    config: Path = typer.Option(None, "--config", help="TOML file with the same keys as these flags (flags win)."),
    resume: str = typer.Option(None, "--resume", help="Continue a run: a checkpoint file, or 'auto' (newest in --run-dir)."),
    json_out: bool = typer.Option(False, "--json", help="No live display; print a JSON summary at the end."),
) -> None:
    """Train a super-resolution model from scratch (checkpointed, resumable, torchrun-ready)."""
    rank = int(os.environ.get("RANK", "0") or 0)
    flags = {
        "arch": arch, "arch_opt": parse_opts(arch_opt) if arch_opt else None, "data": data, "scale": scale,
        "hr_downscale": hr_downscale, "patch_size": patch_size, "batch_size": batch_size, "workers": workers,
        "val_data": val_data, "val_fraction": val_fraction, "val_every": val_every, "steps": steps,
        "max_time": max_time, "lr": lr, "schedule": schedule, "warmup": warmup, "ema": ema, "grad_clip": grad_clip,
        "seed": seed, "device": device, "precision": precision, "channels_last": channels_last, "threads": threads,
        "output": str(output) if output else None, "overwrite": overwrite, "run_dir": run_dir,
        "checkpoint_every": checkpoint_every, "resume": resume,
    }
    if rank != 0:
        _quiet_rank(flags, config)
        return
    cfg = build_config(flags, config)
    progress = ConsoleProgress(json_out)
    try:
        result = run_training(cfg, callback=progress)
    except Interrupted as exc:
        progress.stop()
        err_console.print(f"[yellow]stopped:[/yellow] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    finally:
        progress.stop()
    summary = {
        "output": str(result.output),
        "run_dir": str(result.run_dir),
        "steps": result.steps,
        "train_seconds": round(result.elapsed, 2),
        "stopped": result.stopped,
        "final_loss": result.final_loss,
        "validation": result.last_val,
        "resumed_from": str(result.resumed_from) if result.resumed_from else None,
        "config": result.config,
    }
    if json_out:
        print_json(summary)
        return
    val = result.last_val
    val_text = f", validation PSNR-Y {val['psnr_y']:.3f} dB / SSIM-Y {val['ssim_y']:.4f}" if val else ""
    console.print(f"[green]done:[/green] {result.steps} steps in {_fmt_time(result.elapsed)}{val_text}; model written to {escape(str(result.output))}")


def _quiet_rank(flags: dict[str, Any], config: Path | None) -> None:
    """A non-zero torchrun rank: same work, no output (rank 0 reports, including errors)."""
    warnings.simplefilter("ignore")
    try:
        run_training(build_config(flags, config))
    except SrdistillError as exc:
        raise typer.Exit(exc.exit_code) from None
