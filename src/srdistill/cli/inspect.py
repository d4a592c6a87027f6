"""``srdistill inspect FILE|NAME``: what a model file (or a bundled model, e.g. ``teacher-x4``) holds."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from ..bundled import bundled_name, resolve_model_ref
from ._console import console, flags_for, fmt_params, print_json, safe
from .options import LOADER_HELP, parse_opts


@flags_for(hparams="--arch-opt")
def inspect(
    file: Path = typer.Argument(..., help="Model file (.safetensors, .pth, .pt, .ckpt) or a bundled model (teacher-x4, student, ...)."),
    opt: list[str] = typer.Option([], "--arch-opt", "--opt", help="KEY=VALUE: a hyperparameter the weights cannot tell, e.g. res_scale=0.1 for EDSR (repeatable)."),
    loader: str = typer.Option("auto", "--loader", help=LOADER_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Detect a model file's architecture, scale and hyperparameters."""
    from ..models import inspect_model

    path = resolve_model_ref(file)
    info = inspect_model(path, hparams=parse_opts(opt), loader=loader)
    bundled = bundled_name(path)
    info = {"file": info["file"], "bundled": bundled, **info}
    if json_out:
        print_json(info)
        return
    table = Table(title=safe(f"{bundled} (bundled: {path})" if bundled else file), show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    table.add_row("architecture", safe(info["arch"]))
    table.add_row("preset", safe(info["preset"] or "(custom)"))
    table.add_row("scale", f"x{info['scale']}")
    hp = ", ".join(f"{k}={v}" for k, v in info["hparams"].items())
    table.add_row("hyperparameters", safe(hp))
    if info["assumed"]:
        table.add_row(
            "assumed",
            safe(", ".join(info["assumed"]) + " (not stored in the weights; official default used, override with --arch-opt)"),
        )
    if info["given"]:
        table.add_row("given", safe(", ".join(info["given"]) + " (set with --arch-opt, not read from the file)"))
    table.add_row("parameters", fmt_params(info["params"]))
    table.add_row("dtype", safe(", ".join(info["dtype"])))
    table.add_row("identified by", safe(f"{info['metadata'].get('identified_by', '?')}: {info['loaded_by']['summary']}"))
    table.add_row("input", f"[0, 1], size multiple {info['size_multiple']}; native range {info['value_range']:g}")
    table.add_row("blocks", safe(f"{len(info['blocks'])} x {info['feature_view']}: " + ", ".join(
        f"{b['path']}({b['channels']})" for b in info["blocks"][:6]) + (" ..." if len(info["blocks"]) > 6 else "")))
    for key, value in info["metadata"].items():
        if key not in {"identified_by", "loaded_by"}:
            table.add_row(f"meta: {safe(key)}", safe(value))
    console.print(table)
