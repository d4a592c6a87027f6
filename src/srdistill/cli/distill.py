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
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from ..distill.api import SETTINGS_FILE, DistillPlan, plan_distillation, run_plan
from ..distill.teacher_cache import CACHE_MODES
from ..errors import UsageError
from ..registry import METHODS
from ..train.config import read_toml
from ._console import console, fmt_params, print_json, safe
from .engine_options import EngineFlags, with_engine_options
from .options import parse_opts
from .train import report_result, run_with_progress


# The [distill] table of a --config TOML: what the command's own flags say, as data.
TOML_KEYS = {
    "teacher": str, "student_arch": str, "student_opt": dict, "student": str, "method": str,
    "method_opt": dict, "K": int, "boundaries": str, "teacher_cache": str, "teacher_cache_dir": str,
}


def _config_table(path: Path | None) -> dict[str, Any]:
    """``[distill]`` of the --config file (teacher, student_arch, method, method_opt = {...}, ...)."""
    if path is None or not path.is_file():
        return {}  # a missing file is reported by the engine's reader, with the rest of the config
    import tomllib

    try:
        table = tomllib.loads(path.read_text(encoding="utf-8")).get("distill", {})
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        return {}  # likewise reported by the engine's reader
    if not isinstance(table, dict):
        raise UsageError(f"{path}: distill must be a table ([distill]) of {', '.join(TOML_KEYS)}")
    for key, value in table.items():
        if key not in TOML_KEYS:
            raise UsageError(f"{path}: unknown key {key!r} in [distill]; known keys: {', '.join(TOML_KEYS)}")
        kind = TOML_KEYS[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise UsageError(f"{path}: [distill] {key} = {value!r} is not {'a table' if kind is dict else kind.__name__}")
    # Spelled like the flags in the file; named like distill.json's settings from here on.
    renamed = {"student_opt": "student_options", "method_opt": "method_options", "student": "student_file"}
    return {renamed.get(key, key): value for key, value in table.items()}


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


@with_engine_options(help={
    "scale": "Upscaling factor (default: the teacher's).",
    "seed": "Seed for initialisation, data and the method's random choices (default 0).",
    "output": "Also write the distilled student here (.safetensors).",
    "run_dir": "Run folder (default runs/<student>-x<scale>-<time>).",
    "config": "TOML file: the training keys of `srdistill train`, plus a [distill] table (teacher, student_arch, method, method_opt, ...); flags win.",
}, tables=("distill",))
def distill(
    *,
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
    engine: EngineFlags,  # --data, --scale, --steps, ... (see engine_options.py)
    json_out: bool = typer.Option(False, "--json", help="No live display; print a JSON summary at the end."),
) -> None:
    """Distil a teacher model into a small student (MiPKD by default; logits, fitnet, fakd, scratch)."""
    rank = int(os.environ.get("RANK", "0") or 0)
    given = engine.flags
    # Flags win over the --config file's [distill] table, which wins over a resumed run's settings.
    saved = {**_saved_settings(given["run_dir"], given["resume"]), **_config_table(engine.config)}
    if method and method != saved.get("method", "mipkd"):
        saved["method_options"] = {}  # the file's options belong to the file's method (--method scratch: none)
    if k is None and "K" in saved:
        k = saved["K"]
    if teacher_cache == "auto" and saved.get("teacher_cache"):
        teacher_cache = saved["teacher_cache"]
    if teacher_cache_dir is None and saved.get("teacher_cache_dir"):
        teacher_cache_dir = Path(saved["teacher_cache_dir"])
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
    if not dry_run:
        # Engine options are checked before the teacher is even read (the arch is filled in below).
        engine.build(arch=student_arch or "student", scale=given["scale"] or 4)
    elif engine.config is not None:
        read_toml(engine.config, tables=engine.tables)  # a dry run needs no data, but a bad key is still an error
    plan = plan_distillation(
        teacher_path,
        student_arch,
        method=method,
        method_options=method_opts,
        student_options=student_opts,
        student_file=student,
        scale=given["scale"],
        k=k,
        boundaries=boundaries,
        teacher_cache=teacher_cache,
        teacher_cache_dir=teacher_cache_dir,
        seed=given["seed"] or 0,
        total_steps=given["steps"],
    )
    if saved.get("teacher_sha256") and plan.teacher_sha256 != saved["teacher_sha256"]:
        raise UsageError(f"{teacher_path} is not the teacher this run was started with (its sha256 differs); resume with the original teacher")
    if dry_run:
        if json_out:
            print_json(plan.summary(given["patch_size"] or 48))
        else:
            _print_plan(plan, given["patch_size"] or 48)
        return
    arch_name = student_arch or plan.student.preset or plan.student.arch
    cfg = engine.build(arch=arch_name, arch_opt=student_opts or None, scale=plan.teacher.scale)
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
    if rank == 0 and not json_out:
        console.print(
            f"[bold]distilling[/bold] {safe(plan.teacher.arch)} ({fmt_params(plan.teacher.num_params)}) -> "
            f"{safe(arch_name)} ({fmt_params(plan.student.num_params)}) with {safe(plan.method.id)}"
            + (f", {len(plan.boundaries)} boundaries, mixers {fmt_params(plan.mixer_parameters)}" if plan.boundaries else "")
        )
    result = run_with_progress(lambda callback: run_plan(plan, cfg, callback=callback, settings=settings), json_out, rank)
    if result is not None:
        teacher_signal = plan.objective.describe().get("teacher_signal")
        report_result(result, json_out, "plain student written to", method=plan.method.id, teacher_signal=teacher_signal)
