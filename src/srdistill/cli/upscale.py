"""``srdistill upscale INPUT... [-o OUT] [-s S] [--model FILE|NAME|PRESET]``: upscale images and folders.

Without ``--model`` the bundled student for the scale is used (``student-x4`` by default)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..bundled import bundled_name
from ..data.limits import DEFAULT_MAX_OUTPUT_PIXELS, DEFAULT_MAX_PIXELS
from ..upscale.progress import ImageResult, UpscaleProgress, results_json
from ._console import console, err_console, flags_for, print_json, safe
from .options import LOADER_HELP, parse_opts


class RichProgress(UpscaleProgress):
    """Renders the library's progress callbacks: one bar over images, one over the current image's tiles."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.images = progress.add_task("images", total=None)
        self.tiles = progress.add_task("tiles", total=None, visible=False)
        self.failures: list[tuple[str, str]] = []

    def image_started(self, name: str, index: int, total: int, tiles: int) -> None:
        self.progress.update(self.images, total=total, description=safe(name))
        self.progress.reset(self.tiles, total=tiles, visible=tiles > 1, description="tiles")

    def tile_done(self) -> None:
        self.progress.advance(self.tiles)

    def image_done(self, result: ImageResult) -> None:
        self.progress.advance(self.images)

    def image_failed(self, name: str, message: str) -> None:
        self.failures.append((name, message))
        self.progress.advance(self.images)

    def note(self, message: str) -> None:
        self.progress.console.print(f"[yellow]note:[/yellow] {safe(message)}", highlight=False, soft_wrap=True)


def _summary(results: list[ImageResult], describe: str) -> Table:
    table = Table(title=safe(describe), title_justify="left")
    for col in ("image", "size in", "size out", "time", "status"):
        table.add_column(col, justify="right" if col in ("time",) else "left")
    for r in results:
        status = r.status if r.status != "ok" else ("ok; " + "; ".join(r.notes) if r.notes else "ok")
        table.add_row(
            safe(r.source),
            f"{r.size_in[0]}x{r.size_in[1]}" if r.status == "ok" else "-",
            f"{r.size_out[0]}x{r.size_out[1]}" if r.status == "ok" else "-",
            f"{r.seconds:.2f} s" if r.status == "ok" else "-",
            safe(status),
        )
    return table


# The library's allow_resize is the opposite of --no-resize: each setting a message asks for has its spelling.
@flags_for(spec="--model", hparams="--arch-opt", **{"allow_resize=True": "without --no-resize", "allow_resize=False": "--no-resize"})
def upscale(
    inputs: list[str] = typer.Argument(..., help="Image files, folders or (quoted) glob patterns."),
    output: Path | None = typer.Option(None, "-o", "--output", help="Output file (one input) or folder. Default: next to each input as NAME_x{s}.EXT."),
    scale: int | None = typer.Option(None, "-s", "--scale", help="Output scale. Default: the model's."),
    model: str | None = typer.Option(None, "-m", "--model", help="Model file (.safetensors/.pth), a bundled model (student, teacher, student-x2, ...; default: the bundled student) or a preset name (random weights, for speed tests)."),
    arch_opt: list[str] = typer.Option([], "--arch-opt", help="KEY=VALUE: a hyperparameter the weights cannot tell, e.g. res_scale=0.1 for EDSR (repeatable)."),
    loader: str = typer.Option("auto", "--loader", help=LOADER_HELP),
    tile: int | None = typer.Option(None, "-t", "--tile", help="Tile size in input pixels; 0: the whole image at once. Default: from free memory."),
    tile_pad: int | None = typer.Option(None, "--tile-pad", help="Context pixels around each tile (default 24)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    dtype: str = typer.Option("auto", "--dtype", help="auto, float32, bfloat16 or float16 (only where the architecture is safe)."),
    tta: bool = typer.Option(False, "--tta", help="x8 self-ensemble (flips and rotations): slower, slightly better."),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads (default: measured on the first tiles)."),
    backend: str = typer.Option("torch", "--backend", help="torch (default) or onnxruntime (CPU, float32; the model exported in memory and checked first; pip install 'srdistill[onnx]')."),
    recursive: bool = typer.Option(False, "-r", "--recursive", help="Search folders (and ** globs) recursively."),
    suffix: str | None = typer.Option(None, "--suffix", help="Appended to output names (default _x{s} next to the input, none in -o folders)."),
    ext: str | None = typer.Option(None, "--ext", help="Output format by extension (png, jpg, webp, bmp, tif). Default: the input's."),
    skip_existing: bool = typer.Option(False, "--skip-existing", help="Skip inputs whose output exists."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
    keep_going: bool = typer.Option(False, "--keep-going", help="Report bad files at the end instead of stopping at the first."),
    no_resize: bool = typer.Option(False, "--no-resize", help="Refuse a -s the model does not have (instead of resizing its output)."),
    max_pixels: int = typer.Option(DEFAULT_MAX_PIXELS, "--max-pixels", help="Refuse inputs larger than this (decompression bombs)."),
    max_output_pixels: int = typer.Option(DEFAULT_MAX_OUTPUT_PIXELS, "--max-output-pixels", help="Refuse outputs larger than this."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON results instead of a table."),
) -> None:
    """Upscale images with a super-resolution model (tiled, any size)."""
    from ..upscale.jobs import upscale_paths
    from ..upscale.model_choice import resolve_model

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True, disable=not err_console.is_terminal) as bars:
        progress = RichProgress(bars)
        sr_model = resolve_model(model, scale, progress, hparams=parse_opts(arch_opt))
        results = upscale_paths(
            sr_model, inputs, output, scale=scale, recursive=recursive, suffix=suffix, ext=ext,
            skip_existing=skip_existing, overwrite=overwrite, keep_going=keep_going, max_pixels=max_pixels,
            max_output_pixels=max_output_pixels, tile=tile, tile_pad=tile_pad, device=device, dtype=dtype,
            tta=tta, allow_resize=not no_resize, threads=threads, progress=progress, backend=backend,
        )
    failed = [r for r in results if r.status == "failed"]
    bundled = bundled_name(sr_model.source)
    if json_out:
        print_json({
            "model": str(sr_model.source or sr_model.preset or sr_model.arch),
            "bundled": bundled,
            "scale": scale or sr_model.scale,
            "images": results_json(results),
            "failed": len(failed),
        })
    else:
        name = bundled or (sr_model.source.name if sr_model.source else (sr_model.preset or sr_model.arch))
        console.print(_summary(results, f"{name} (x{sr_model.scale}) -> x{scale or sr_model.scale}"))
    for r in failed:
        err_console.print(f"[red]error:[/red] {safe(r.message)}", highlight=False, soft_wrap=True)
    if failed:
        raise typer.Exit(1)
