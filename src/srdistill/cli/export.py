"""``srdistill export MODEL -o model.onnx``: a model to ONNX, checked with ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import typer

from ._console import console, flags_for, print_json, safe
from .options import parse_opts

# Stated here, not imported: the library module imports torch, and `export --help` must not.
DEFAULT_OPSET = 17


@flags_for(hparams="--arch-opt")
def export(
    model: str = typer.Argument(..., help="Model file (.safetensors/.pth, srdistill or official) or a bundled name (student, teacher-x4, ...)."),
    output: Path = typer.Option(..., "-o", "--output", help="The .onnx file to write."),
    opset: int = typer.Option(DEFAULT_OPSET, "--opset", help=f"ONNX opset (default {DEFAULT_OPSET}; 13..20)."),
    fp16: bool = typer.Option(False, "--fp16", help="float16 weights and activations (float32 input/output); only where the architecture is safe in fp16."),
    arch_opt: list[str] = typer.Option([], "--arch-opt", help="KEY=VALUE: a hyperparameter the weights cannot tell, e.g. res_scale=0.1 for EDSR (repeatable)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUTPUT if it exists."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Export a model to ONNX (dynamic sizes, metadata), checked against PyTorch with ONNX Runtime.

    The graph's input and output are named 'input' and 'output' (N x 3 x H x W, float in [0, 1]);
    batch, height and width are dynamic. Re-parameterisable students are exported fused."""
    from ..export import export_model

    result = export_model(model, output, opset=opset, fp16=fp16, overwrite=overwrite, hparams=parse_opts(arch_opt))
    checks = [{"input": list(shape), "max_abs_diff": diff} for shape, diff in result.checks]
    if json_out:
        print_json({"output": str(result.path), "arch": result.arch, "scale": result.scale, "opset": result.opset,
                    "precision": result.precision, "params": result.params, "tolerance": result.tolerance, "checks": checks})
        return
    console.print(f"wrote {safe(result.path)}: {result.arch} x{result.scale}, {result.params:,} parameters, "
                  f"opset {result.opset}, {result.precision}")
    for shape, diff in result.checks:
        console.print(f"check: ONNX Runtime vs PyTorch at input {'x'.join(map(str, shape))}: max |diff| {diff:.2e} "
                      f"(allowed {result.tolerance:g}) ok")
