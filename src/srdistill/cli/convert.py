"""``srdistill convert IN OUT.safetensors``: any loadable checkpoint to srdistill safetensors."""

from __future__ import annotations

from pathlib import Path

import typer

from ._console import console, flags_for, print_json, safe
from .options import LOADER_HELP, parse_opts


@flags_for(hparams="--arch-opt")
def convert(
    src: Path = typer.Argument(..., help="Checkpoint to read (.pth/.pt/.ckpt/.safetensors)."),
    dst: Path = typer.Argument(..., help="Output .safetensors file."),
    opt: list[str] = typer.Option([], "--arch-opt", "--opt", help="KEY=VALUE: a hyperparameter the weights cannot tell, e.g. res_scale=0.1 for EDSR (repeatable)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace DST if it exists."),
    loader: str = typer.Option("auto", "--loader", help=LOADER_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Convert a checkpoint to a srdistill safetensors file (metadata included)."""
    from ..models import convert_model, describe

    model = convert_model(src, dst, overwrite=overwrite, hparams=parse_opts(opt), loader=loader)
    if json_out:
        print_json({"output": str(dst), "arch": model.arch, "scale": model.scale, "hparams": model.hparams})
        return
    console.print(f"wrote {safe(dst)}: {safe(describe(model.spec, model.scale, model.hparams))}")
    if model.assumed:
        console.print(f"[yellow]note:[/yellow] assumed {', '.join(model.assumed)} (not stored in the weights); pass --arch-opt to change")
