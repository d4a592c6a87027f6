"""``srdistill distill``: train a small student from a large teacher (logits-KD by default).

    srdistill distill --teacher swinir_x4.safetensors --student-arch edsr-lite --data photos/ --steps 2000

Every training option of ``srdistill train`` applies, spelled the same. ``--dry-run`` prints the
matched boundaries and the method's options and stops before reading any data. Works under
``torchrun`` like ``train``. A resumed run (``--run-dir DIR --resume auto``) takes the teacher,
student and method settings from ``DIR/distill.json`` unless they are given again. Flags win over
the ``--config`` file's ``[distill]`` table, which wins over the run folder; the library merges
them (``distill/settings.py``), this module only parses and prints.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from ..distill.registry import METHODS
from ..distill.settings import PROTOCOLS, DistillSettings
from ..distill.spec import CACHE_MODES
from ._console import console, flags_for, fmt_params, print_json, safe
from ._progress import report_result, run_with_progress
from .engine_options import EngineFlags, with_engine_options
from .options import LOADER_HELP, parse_opts

if TYPE_CHECKING:
    from ..distill.api import DistillPlan

# What each built-in method runs and costs, for --help (measured: benchmarks/RESULTS.md, kd_quality;
# teacher-x4-long and the bundled teacher-x4 -> edsr-lite, x4, 2400 steps of 8 x 32x32 patches, one CPU core).
METHOD_HELP = (
    "Distillation method (default logits: the best measured at CPU budgets). "
    "logits: L1 to the ground truth and to the teacher's output; about a scratch step with the teacher cache; "
    "Set5 +0.12-0.15 dB over scratch at 2400 steps. "
    "mipkd: the MiPKD paper's method (random conv3x3 Feature Prior Mixers with l_feat=1 and the auto-encoder loss, "
    "a Block Prior Mixer pass through teacher or student blocks on every step, the teacher live); about 5x a logits step, "
    "and at 2400 CPU steps 0.30-0.43 dB below logits and 0.15-0.31 below scratch on Set5 (two teachers, 2 seeds). "
    "mipkd-lite: fitted linear mixers, a Block Prior Mixer pass every 16th step, logits-KD (l_kd=3) otherwise; "
    "1.2x a logits step, tied logits (+0.004/+0.010 dB at 2400 steps). "
    "fitnet, fakd: feature regression / affinity KD. scratch: no teacher. "
    "Installed: {ids}."
)


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
    if info["teacher_labelled"]:
        given = ", ".join(f"{key}={value}" for key, value in info["teacher_labelled"].items() if value)
        console.print(f"[bold]teacher-labelled samples[/bold] {safe(given)} (their only label is the teacher's output)")
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
@flags_for(teacher_options="--teacher-opt", student_options="--student-opt", student_file="--student", method_options="--method-opt",
           arch="--student-arch", arch_opt="--student-opt")
def distill(
    *,
    teacher: Path = typer.Option(None, "--teacher", help="Teacher model file (official checkpoint or srdistill safetensors)."),
    teacher_opt: list[str] = typer.Option([], "--teacher-opt", help="Set a teacher hyperparameter its weights cannot tell, e.g. res_scale=0.1 (repeatable; `srdistill inspect` lists the assumed ones)."),
    loader: str = typer.Option("auto", "--loader", help=LOADER_HELP),
    student_arch: str = typer.Option(None, "--student-arch", help="Student preset or arch id, e.g. edsr-lite (see `srdistill archs`)."),
    student_opt: list[str] = typer.Option([], "--student-opt", help="Override a student hyperparameter, e.g. n_feats=48 (repeatable)."),
    student: Path = typer.Option(None, "--student", help="Start the student from this model file instead of a random initialisation."),
    method: str = typer.Option(None, "--method", help=METHOD_HELP.format(ids=", ".join(METHODS.ids()))),
    method_opt: list[str] = typer.Option([], "--method-opt", help="Method option key=value (repeatable; --dry-run lists them)."),
    k: int = typer.Option(None, "--K", help="Number of matched boundaries (default: automatic, at most 4)."),
    boundaries: str = typer.Option(None, "--boundaries", help="Explicit TEACHER:STUDENT block indices, e.g. 7:1,15:3 (see --dry-run)."),
    teacher_cache: str = typer.Option(None, "--teacher-cache", help=f"Teacher signals per training image: {', '.join(CACHE_MODES)} (default auto)."),
    teacher_cache_dir: Path = typer.Option(None, "--teacher-cache-dir", help="Keep cached teacher signals here and reuse them in later runs (same teacher, data, boundaries)."),
    protocol: str = typer.Option(None, "--protocol", help=f"Training recipe for any pair, under flags and the config file's keys: "
                                 f"{'; '.join(f'{p.name}: {p.summary}' for p in PROTOCOLS.values())}."),
    unlabeled: Path = typer.Option(None, "--unlabeled", help="Folder of images at the resolution the student receives, with no HR originals: "
                                   "the teacher's output is their only label. Alone, or mixed with --data (see --unlabeled-ratio)."),
    unlabeled_ratio: float = typer.Option(None, "--unlabeled-ratio", help="Share of samples drawn from --unlabeled when --data is given too (default 0.5)."),
    zoom_in: float = typer.Option(None, "--zoom-in", help="Probability per paired-image sample of feeding a patch-sized crop of the HR image instead, "
                                  "labelled by the teacher (DUKD's zoom-in; the teacher runs live on these)."),
    zoom_out: float = typer.Option(None, "--zoom-out", help="Probability per paired-image sample of feeding the LR image shrunk once more by the scale "
                                   "(MATLAB bicubic), labelled by the teacher."),
    consistency: float = typer.Option(None, "--consistency", help="Probability per teacher-labelled sample of a random flip/transpose of the "
                                      "student's input, undone on its output and features (label consistency)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the matched boundaries, mixer size and method options, then exit."),
    engine: EngineFlags,  # --data, --scale, --steps, ... (see engine_options.py)
    json_out: bool = typer.Option(False, "--json", help="No live display; print a JSON summary at the end."),
) -> None:
    """Distil a teacher model into a small student (logits-KD by default; mipkd is the MiPKD paper's method)."""
    from ..distill.api import prepare_run

    rank = int(os.environ.get("RANK", "0") or 0)
    given = engine.flags
    explicit = DistillSettings(
        teacher=teacher, teacher_options=parse_opts(teacher_opt), student_arch=student_arch, student_options=parse_opts(student_opt), student_file=student,
        method=method, method_options=parse_opts(method_opt), k=k, boundaries=boundaries,
        teacher_cache=teacher_cache, teacher_cache_dir=teacher_cache_dir, protocol=protocol,
        unlabeled=unlabeled, unlabeled_ratio=unlabeled_ratio, zoom_in=zoom_in, zoom_out=zoom_out, consistency=consistency,
    )
    # Flags > the --config file's [distill] table > the resumed run's distill.json (distill/settings.py).
    prepared = prepare_run(explicit, given, config_file=engine.config, document=engine.toml(),
                           scale=given["scale"], dry_run=dry_run)
    plan = prepared.plan
    if prepared.method_note and rank == 0 and not json_out:
        console.print(safe(prepared.method_note))
    if dry_run:
        if json_out:
            print_json(plan.summary(given["patch_size"] or 48))
        else:
            _print_plan(plan, given["patch_size"] or 48)
        return
    if rank == 0 and not json_out:
        console.print(
            f"[bold]distilling[/bold] {safe(plan.teacher.arch)} ({fmt_params(plan.teacher.num_params)}) -> "
            f"{safe(prepared.config.arch)} ({fmt_params(plan.student.num_params)}) with {safe(plan.method.id)}"
            + (f", {len(plan.boundaries)} boundaries, mixers {fmt_params(plan.mixer_parameters)}" if plan.boundaries else "")
        )
    result = run_with_progress(prepared.run, json_out, rank, command="distill")
    if result is not None:
        teacher_signal = plan.objective.describe().get("teacher_signal")
        report_result(result, json_out, "plain student written to", method=plan.method.id, teacher_signal=teacher_signal)
