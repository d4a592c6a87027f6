"""``srdistill distill``: train a small student from a large teacher (MiPKD by default).

    srdistill distill --teacher swinir_x4.safetensors --student-arch edsr-lite --data photos/ --steps 2000

Every training option of ``srdistill train`` applies, spelled the same. ``--dry-run`` prints the
matched boundaries and the method's options and stops before reading any data. Works under
``torchrun`` like ``train``. A resumed run (``--run-dir DIR --resume auto``) takes the teacher,
student and method settings from ``DIR/distill.json`` unless they are given again.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from ..distill.api import SETTINGS_FILE, DistillPlan, plan_distillation, run_plan
from ..distill.teacher_cache import CACHE_MODES
from ..errors import Interrupted, SrdistillError, UsageError
from ..registry import METHODS
from ..train.config import build_config
from ._console import console, err_console, fmt_params, print_json, safe
from .options import parse_opts
from .train import ConsoleProgress, _fmt_time

def _saved_settings(run_dir: str | None, resume: str | None) -> dict[str, Any]:
    if not resume or not run_dir:
        return {}
    path = Path(run_dir) / SETTINGS_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path} is unreadable ({exc}); pass --teacher, --student-arch and --method again") from None


def _print_plan(plan: DistillPlan, patch_size: int) -> None:
    info = plan.summary(patch_size)
    t, s = info["teacher"], info["student"]
    console.print(f"[bold]teacher[/bold] {safe(t['arch'])} x{t['scale']}, {fmt_params(t['params'])} parameters, {t['blocks']} blocks ({safe(t['file'])})")
    console.print(f"[bold]student[/bold] {safe(s['arch'])} ({safe(s['preset'] or 'custom')}), {fmt_params(s['params'])} parameters, {s['blocks']} blocks")
    console.print(f"[bold]method[/bold] {safe(plan.method.id)}: {safe(plan.method.title)}")
    if info["boundaries"]:
        table = Table(title=f"matched boundaries ({info['boundary_source']}; features on a {patch_size}x{patch_size} LR patch)")
        for col in ("#", "teacher block", "index", "ch", "size", "student block", "index", "ch", "size"):
            table.add_column(col, justify="left" if "block" in col else "right")
        for row in info["boundaries"]:
            table.add_row(
                str(row["boundary"]), safe(row["teacher_block"]), str(row["teacher_index"]), str(row["teacher_channels"]),
                "x".join(map(str, row["teacher_size"])), safe(row["student_block"]), str(row["student_index"]),
                str(row["student_channels"]), "x".join(map(str, row["student_size"])),
            )
        console.print(table)
    console.print(f"mixer/adapter parameters (trained with the student, not saved in it): {fmt_params(info['mixer_parameters'])}")
    if plan.options:
        table = Table(title=f"{plan.method.id} options (--method-opt key=value)")
        for col in ("option", "value", "meaning"):
            table.add_column(col)
        for key, value in plan.options.items():
            choices = plan.method.choices.get(key)
            meaning = plan.method.option_help[key] + (f" [{', '.join(choices)}]" if choices else "")
            table.add_row(safe(key), safe(value), safe(meaning))
        console.print(table)


def distill(
    teacher: Path = typer.Option(None, "--teacher", help="Teacher model file (official checkpoint or srdistill safetensors)."),
    student_arch: str = typer.Option(None, "--student-arch", help="Student preset or arch id, e.g. edsr-lite (see `srdistill archs`)."),
    student_opt: list[str] = typer.Option([], "--student-opt", help="Override a student hyperparameter, e.g. n_feats=48 (repeatable)."),
    student: Path = typer.Option(None, "--student", help="Start the student from this model file instead of a random initialisation."),
    method: str = typer.Option(None, "--method", help=f"Distillation method: {', '.join(METHODS.ids())} (default mipkd)."),
    method_opt: list[str] = typer.Option([], "--method-opt", help="Method option key=value (repeatable; --dry-run lists them)."),
    k: int = typer.Option(None, "--K", help="Number of matched boundaries (default: automatic, at most 4)."),
    boundaries: str = typer.Option(None, "--boundaries", help="Explicit TEACHER:STUDENT block indices, e.g. 7:1,15:3 (see --dry-run)."),
    teacher_cache: str = typer.Option("auto", "--teacher-cache", help=f"Teacher signals per training image: {', '.join(CACHE_MODES)}."),
    teacher_cache_dir: Path = typer.Option(None, "--teacher-cache-dir", help="Keep cached teacher signals here and reuse them in later runs (same teacher, data, boundaries)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the matched boundaries, mixer size and method options, then exit."),
    data: str = typer.Option(None, "--data", help="Training images: a folder of HR images, or HR/ + LR_bicubic/X{s}/."),
    scale: int = typer.Option(None, "--scale", help="Upscaling factor (default: the teacher's)."),
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
    seed: int = typer.Option(None, "--seed", help="Seed for initialisation, data and the method's random choices (default 0)."),
    device: str = typer.Option(None, "--device", help="auto (default), cpu, cuda or cuda:N."),
    precision: str = typer.Option(None, "--precision", help="auto (default: bf16 where native, else fp32), fp32, bf16 or fp16."),
    channels_last: bool = typer.Option(None, "--channels-last/--no-channels-last", help="channels_last memory format (default on)."),
    threads: int = typer.Option(None, "--threads", help="CPU threads (default: physical cores / processes per node)."),
    output: Path = typer.Option(None, "-o", "--output", help="Also write the distilled student here (.safetensors)."),
    overwrite: bool = typer.Option(None, "--overwrite", help="Replace an existing output file."),
    run_dir: str = typer.Option(None, "--run-dir", help="Run folder (default runs/<student>-x<scale>-<time>)."),
    checkpoint_every: int = typer.Option(None, "--checkpoint-every", help="Checkpoint every N steps (default 1000; also every 10 min)."),
    config: Path = typer.Option(None, "--config", help="TOML file with the training keys of `srdistill train` (flags win)."),
    resume: str = typer.Option(None, "--resume", help="Continue a run: a checkpoint file, or 'auto' (newest in --run-dir)."),
    json_out: bool = typer.Option(False, "--json", help="No live display; print a JSON summary at the end."),
) -> None:
    """Distil a teacher model into a small student (MiPKD by default; logits, fitnet, fakd, scratch)."""
    rank = int(os.environ.get("RANK", "0") or 0)
    saved = _saved_settings(run_dir, resume)
    teacher_path = teacher or (Path(saved["teacher"]) if saved.get("teacher") else None)
    if teacher_path is None:
        raise UsageError("no teacher given; pass --teacher FILE (any model file `srdistill inspect` can read)")
    student_arch = student_arch or saved.get("student_arch")
    student_opts = parse_opts(student_opt) if student_opt else dict(saved.get("student_options", {}))
    method = method or saved.get("method") or "mipkd"
    method_opts = parse_opts(method_opt) if method_opt else dict(saved.get("method_options", {}))
    if boundaries is None and k is None:
        boundaries = saved.get("boundaries")
    if student is None and saved.get("student_file"):
        student = Path(saved["student_file"])
    flags = {
        "data": data, "scale": None, "hr_downscale": hr_downscale, "patch_size": patch_size, "batch_size": batch_size,
        "workers": workers, "val_data": val_data, "val_fraction": val_fraction, "val_every": val_every, "steps": steps,
        "max_time": max_time, "lr": lr, "schedule": schedule, "warmup": warmup, "ema": ema, "grad_clip": grad_clip,
        "seed": seed, "device": device, "precision": precision, "channels_last": channels_last, "threads": threads,
        "output": str(output) if output else None, "overwrite": overwrite, "run_dir": run_dir,
        "checkpoint_every": checkpoint_every, "resume": resume,
    }
    if not dry_run:
        # Engine options are checked before the teacher is even read (the arch is filled in below).
        build_config({**flags, "arch": student_arch or "student", "scale": scale or 4}, config)
    plan = plan_distillation(
        teacher_path,
        student_arch,
        method=method,
        method_options=method_opts,
        student_options=student_opts,
        student_file=student,
        scale=scale,
        k=k,
        boundaries=boundaries,
        teacher_cache=teacher_cache,
        teacher_cache_dir=teacher_cache_dir,
        seed=seed or 0,
        total_steps=steps,
    )
    if saved.get("teacher_sha256") and plan.teacher_sha256 != saved["teacher_sha256"]:
        raise UsageError(f"{teacher_path} is not the teacher this run was started with (its sha256 differs); resume with the original teacher")
    if dry_run:
        if json_out:
            print_json(plan.summary(patch_size or 48))
        else:
            _print_plan(plan, patch_size or 48)
        return
    arch_name = student_arch or plan.student.preset or plan.student.arch
    cfg = build_config({**flags, "arch": arch_name, "arch_opt": student_opts or None, "scale": plan.teacher.scale}, config)
    settings = {
        "teacher": str(teacher_path.resolve()),
        "teacher_sha256": plan.teacher_sha256,
        "student_arch": arch_name,
        "student_options": student_opts,
        "student_file": str(student.resolve()) if student else None,
        "method": plan.method.id,
        "method_options": plan.options,
        "boundaries": ",".join(f"{b.teacher_index}:{b.student_index}" for b in plan.boundaries) or None,
    }
    if rank != 0:
        warnings.simplefilter("ignore")
        try:
            run_plan(plan, cfg, settings=settings)
        except SrdistillError as exc:
            raise typer.Exit(exc.exit_code) from None
        return
    if not json_out:
        console.print(
            f"[bold]distilling[/bold] {safe(plan.teacher.arch)} ({fmt_params(plan.teacher.num_params)}) -> "
            f"{safe(arch_name)} ({fmt_params(plan.student.num_params)}) with {safe(plan.method.id)}"
            + (f", {len(plan.boundaries)} boundaries, mixers {fmt_params(plan.mixer_parameters)}" if plan.boundaries else "")
        )
    progress = ConsoleProgress(json_out)
    try:
        result = run_plan(plan, cfg, callback=progress, settings=settings)
    except Interrupted as exc:
        progress.stop()
        err_console.print(f"[yellow]stopped:[/yellow] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    finally:
        progress.stop()
    summary = {
        "output": str(result.output),
        "run_dir": str(result.run_dir),
        "method": plan.method.id,
        "teacher_signal": plan.objective.describe().get("teacher_signal"),
        "steps": result.steps,
        "train_seconds": round(result.elapsed, 2),
        "stopped": result.stopped,
        "final_loss": result.final_loss,
        "validation": result.last_val,
        "resumed_from": str(result.resumed_from) if result.resumed_from else None,
    }
    if json_out:
        print_json(summary)
        return
    val = result.last_val
    val_text = f", validation PSNR-Y {val['psnr_y']:.3f} dB / SSIM-Y {val['ssim_y']:.4f}" if val else ""
    console.print(
        f"[green]done:[/green] {result.steps} steps in {_fmt_time(result.elapsed)}{val_text}; "
        f"plain student written to {escape(str(result.output))}"
    )
