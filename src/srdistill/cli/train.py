"""``srdistill train``: train any registered architecture from scratch (e.g. to make a teacher).

Works as is under ``torchrun --nproc_per_node=N -m srdistill train ...``: rank 0 prints and writes
files, the other ranks stay quiet.
"""

from __future__ import annotations

import os

import typer

from ._progress import report_result, run_with_progress
from .engine_options import EngineFlags, with_engine_options
from .options import LOADER_HELP, parse_opts


@with_engine_options()
def train(
    *,
    arch: str = typer.Option(None, "--arch", help="Preset or arch id to train (see `srdistill archs`), e.g. edsr-lite."),
    arch_opt: list[str] = typer.Option([], "--arch-opt", help="Override a hyperparameter of the preset, e.g. n_feats=32 (repeatable)."),
    init: str = typer.Option(None, "--init", help="Start from this model file's weights (same arch; tensors matched by name and shape, e.g. an x2 run from an x4 body)."),
    loader: str = typer.Option("auto", "--loader", help=LOADER_HELP),
    engine: EngineFlags,  # --data, --scale, --steps, ... (see engine_options.py)
    json_out: bool = typer.Option(False, "--json", help="No live display; print a JSON summary at the end."),
) -> None:
    """Train a super-resolution model from scratch (checkpointed, resumable, torchrun-ready)."""
    from ..train.loop import train as run_training

    rank = int(os.environ.get("RANK", "0") or 0)
    own = {"arch": arch, "arch_opt": parse_opts(arch_opt) if arch_opt else None, "init": init}
    result = run_with_progress(lambda callback: run_training(engine.build(**own), callback=callback), json_out, rank)
    if result is not None:
        report_result(result, json_out, "model written to", config=result.config)
