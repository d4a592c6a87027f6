"""``srdistill compare IMAGE --model M... -o OUT.png``: side-by-side crops people can look at."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import UsageError
from ._console import console, flags_for, print_json, safe
from .options import LOADER_HELP, parse_opts


@flags_for(spec="--model", hparams="--arch-opt")
def compare(
    image: Path = typer.Argument(..., help="Low-resolution input (or the HR image with --from-hr)."),
    output: Path = typer.Option(..., "-o", "--output", help="The PNG to write."),
    model: list[str] = typer.Option([], "-m", "--model", help="Model file, bundled model (teacher, student, student-x2, ...) or preset (repeatable)."),
    scale: int | None = typer.Option(None, "-s", "--scale", help="Scale (default: the models')."),
    arch_opt: list[str] = typer.Option([], "--arch-opt", help="KEY=VALUE: a hyperparameter the weights cannot tell, e.g. res_scale=0.1 for EDSR (repeatable; applies to every model)."),
    loader: str = typer.Option("auto", "--loader", help=LOADER_HELP),
    hr: Path | None = typer.Option(None, "--hr", help="Ground-truth HR image for IMAGE (adds an HR panel and PSNR)."),
    from_hr: bool = typer.Option(False, "--from-hr", help="IMAGE is HR: make the input with MATLAB bicubic downscaling."),
    crop: list[str] = typer.Option([], "--crop", help="x,y,w,h in IMAGE's pixels (repeatable). Default: the most detailed region."),
    zoom: int | None = typer.Option(None, "--zoom", help="Nearest-neighbour zoom of the panels (default: to about 256 px)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUTPUT if it exists."),
    json_out: bool = typer.Option(False, "--json", help="Print the crops and PSNRs as JSON."),
) -> None:
    """Write a PNG comparing bicubic | each model | HR on chosen crops, labelled with PSNR."""
    import numpy as np

    from ..compare import Crop, compare_arrays, load_inputs, render
    from ..data.imageio import write_image
    from ..evaluate import model_label
    from ..upscale.model_choice import common_scale, resolve_model

    if output.suffix.lower() != ".png":
        raise UsageError(f"-o {output}: the comparison is written as PNG; use a .png name")
    if output.exists() and not overwrite:
        raise UsageError(f"{output} already exists; pass --overwrite to replace it")
    hparams = parse_opts(arch_opt)
    models = [resolve_model(m, scale, hparams=hparams) for m in model]
    named = {}
    for m in models:
        named[model_label(m, set(named) | {"bicubic", "HR"})] = m
    scale = common_scale(models, scale)
    if zoom is not None and zoom < 1:
        raise UsageError(f"--zoom must be >= 1, got {zoom}")
    lr, truth = load_inputs(image, scale, hr=hr, from_hr=from_hr)
    sheet = compare_arrays(lr, named, scale, hr=truth, crops=[Crop.parse(c) for c in crop], from_hr=from_hr,
                           zoom=zoom, device=device)
    canvas = np.asarray(render(sheet))
    write_image(output, canvas, overwrite=overwrite)
    report = {
        "output": str(output),
        "scale": scale,
        "crops": [
            {"lr_crop": [c.x, c.y, c.w, c.h], "panels": [{"label": p.label, "psnr": p.psnr} for p in row]}
            for c, row in zip(sheet.crops, sheet.rows)
        ],
    }
    if json_out:
        print_json(report)
        return
    for entry in report["crops"]:
        x, y, w, h = entry["lr_crop"]
        scores = ", ".join(f"{p['label']} {p['psnr']:.2f} dB" for p in entry["panels"] if p["psnr"] is not None)
        console.print(f"crop {x},{y},{w},{h} (low-resolution px): {safe(scores or 'no HR, no PSNR')}")
    console.print(f"wrote {safe(output)}")
