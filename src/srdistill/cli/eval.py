"""``srdistill eval --model FILE... --data DIR [--scale S] [--bicubic]``: PSNR/SSIM as papers report them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from ..errors import UsageError
from ._console import console, err_console, flags_for, fmt_params, print_json, safe
from .options import LOADER_HELP, parse_opts

if TYPE_CHECKING:
    from ..evaluate import EvalResults


def _table(results: EvalResults) -> Table:
    table = Table(title=f"x{results.scale}: PSNR / SSIM on Y (crop {results.scale} px)", title_justify="left")
    for col, right in (("set", False), ("method", False), ("PSNR", True), ("SSIM", True), ("params", True),
                       ("GFLOPs/MP", True), ("s/image", True)):
        table.add_column(col, justify="right" if right else "left")
    previous = None
    for row in results.rows:
        table.add_row(
            safe(row.set) if row.set != previous else "",
            safe(row.method),
            f"{row.psnr:.2f}",
            f"{row.ssim:.4f}",
            fmt_params(row.params) if row.params is not None else "-",
            f"{row.gflops_per_mp:.0f}" if row.gflops_per_mp is not None else "-",
            f"{row.seconds_per_image:.3f}",
            end_section=False,
        )
        previous = row.set
    return table


@flags_for(spec="--model", models="--model", data_dir="--data", hparams="--arch-opt")
def eval_command(
    model: list[str] = typer.Option([], "-m", "--model", help="Model file, bundled model (teacher, student, student-x2, ...) or preset (repeatable: models side by side)."),
    data: list[Path] = typer.Option(..., "--data", help="A set (HR images, or HR/ + LR_bicubic/X{s}/) or a folder of sets; repeatable."),
    scale: int | None = typer.Option(None, "-s", "--scale", help="Scale (default: the models')."),
    bicubic: bool = typer.Option(False, "--bicubic", help="Add the bicubic baseline (MATLAB imresize)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    arch_opt: list[str] = typer.Option([], "--arch-opt", help="KEY=VALUE: a hyperparameter the weights cannot tell, e.g. res_scale=0.1 for EDSR (repeatable; applies to every model)."),
    loader: str = typer.Option("auto", "--loader", help=LOADER_HELP),
    tile: int | None = typer.Option(None, "-t", "--tile", help="Tile size in input pixels; 0: the whole image at once (default: from free memory)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Evaluate models (and/or the bicubic baseline) on benchmark sets: PSNR/SSIM-Y, params, GFLOPs, time."""
    from ..evaluate import evaluate, find_sets
    from ..upscale.model_choice import common_scale, resolve_model

    if not model and not bicubic:
        raise UsageError("nothing to evaluate: pass --model FILE (repeatable) and/or --bicubic")
    hparams = parse_opts(arch_opt)
    models = [resolve_model(m, scale, hparams=hparams) for m in model]
    scale = common_scale(models, scale)
    total = len(find_sets(data, scale))
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=err_console,
                  transient=True, disable=not err_console.is_terminal) as bars:
        task = bars.add_task("evaluating", total=None)

        def on_image(set_name: str, method: str, image: str) -> None:
            bars.update(task, description=safe(f"{set_name} / {method} / {image} ({total} set(s))"))
            bars.advance(task)

        results = evaluate(models, data, scale, bicubic=bicubic, device=device, tile=tile, on_image=on_image)
    if json_out:
        print_json(results.to_dict())
        return
    console.print(_table(results))
