"""The training-engine options that ``srdistill train`` and ``srdistill distill`` share.

Both commands drive the same engine (``srdistill.train``), so they take the same ~25 flags, spelled
and explained the same way. Rather than writing every ``typer.Option`` twice, each flag is declared
once in ``ENGINE_OPTIONS``, and ``with_engine_options`` puts them into a command's signature where
that command has a parameter ``engine: EngineFlags``. Typer sees ordinary options (so ``--help``
lists each with its help text); the command receives them together, keyed like ``TrainConfig``.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import typer

from ..train.config import TrainConfig, build_config, load_toml


@dataclass(frozen=True)
class EngineOption:
    name: str  # the TrainConfig key, also the parameter name typer passes it as
    type: type
    decls: tuple[str, ...]
    help: str


ENGINE_OPTIONS: tuple[EngineOption, ...] = (
    EngineOption("data", str, ("--data",), "Training images: a folder of HR images, or HR/ + LR_bicubic/X{s}/."),
    EngineOption("scale", int, ("--scale",), "Upscaling factor (default 4)."),
    EngineOption("hr_downscale", float, ("--hr-downscale",), "Shrink each HR photo by this factor first (cleans JPEG photos; default 1)."),
    EngineOption("patch_size", int, ("--patch-size",), "LR patch side in pixels (default 48)."),
    EngineOption("batch_size", int, ("--batch-size",), "Patches per step and process (default 16)."),
    EngineOption("workers", int, ("--workers",), "Data-loader worker processes (-1 auto, 0 in-process)."),
    EngineOption("val_data", str, ("--val-data",), "Validation folder (e.g. ../shared/data/benchmarks/Set5)."),
    EngineOption("val_fraction", float, ("--val-fraction",), "Hold out this fraction of the training images for validation."),
    EngineOption("val_every", int, ("--val-every",), "Validate every N steps (default 500; 0 only at the end)."),
    EngineOption("steps", int, ("--steps",), "Number of optimizer steps."),
    EngineOption("max_time", str, ("--max-time",), "Training time budget: seconds or 30m, 2h, 1h30m."),
    EngineOption("lr", float, ("--lr",), "Peak learning rate (default 2e-4, Adam)."),
    EngineOption("schedule", str, ("--schedule",), "cosine (default) or multistep."),
    EngineOption("warmup", int, ("--warmup",), "Linear warm-up steps (default 0)."),
    EngineOption("ema", float, ("--ema",), "EMA decay of the weights, e.g. 0.999 (default 0: off); the output holds the EMA."),
    EngineOption("grad_clip", float, ("--grad-clip",), "Clip the gradient norm to this (default 0: off)."),
    EngineOption("seed", int, ("--seed",), "Seed for initialisation and data (default 0)."),
    EngineOption("device", str, ("--device",), "auto (default), cpu, cuda or cuda:N."),
    EngineOption("precision", str, ("--precision",), "auto (default: bf16 where native, else fp32), fp32, bf16 or fp16."),
    EngineOption("channels_last", bool, ("--channels-last/--no-channels-last",), "channels_last memory format (default on: faster convolutions)."),
    EngineOption("threads", int, ("--threads",), "CPU threads (default: physical cores / processes per node)."),
    EngineOption("output", Path, ("-o", "--output"), "Also write the final model here (.safetensors)."),
    EngineOption("overwrite", bool, ("--overwrite",), "Replace an existing output file."),
    EngineOption("keep_unfused", bool, ("--keep-unfused",), "Write a re-parameterisable student (span) in its training form, for later fine-tuning (default: fused, the plain inference form)."),
    EngineOption("run_dir", str, ("--run-dir",), "Run folder (default runs/<arch>-x<scale>-<time>)."),
    EngineOption("checkpoint_every", int, ("--checkpoint-every",), "Checkpoint every N steps (default 1000; also every 10 min)."),
    EngineOption("log", str, ("--log",), "Also log to: tensorboard (loss terms, lr, validation PSNR/SSIM and images in RUN_DIR/tensorboard; pip install 'srdistill[tensorboard]')."),
    EngineOption("config", Path, ("--config",), "TOML file with the same keys as these flags (flags win)."),
    EngineOption("resume", str, ("--resume",), "Continue a run: a checkpoint file, or 'auto' (newest in --run-dir)."),
)


@dataclass
class EngineFlags:
    """The engine options as given on the command line (None: not given, the config file or default decides)."""

    flags: dict[str, Any]  # TrainConfig keys
    config: Path | None  # --config TOML file
    tables: tuple[str, ...] = ()  # sections of the TOML the command reads itself ([distill])
    _document: dict[str, Any] | None = field(default=None, repr=False)

    def toml(self) -> dict[str, Any]:
        """The --config document, parsed on first use and then kept ({} without --config)."""
        if self._document is None:
            self._document = load_toml(self.config) if self.config is not None else {}
        return self._document

    def build(self, **overrides: Any) -> TrainConfig:
        """The checked TrainConfig: these flags plus the command's own (``arch``, ``scale``, ...), over --config."""
        return build_config({**self.flags, **overrides}, self.config, tables=self.tables, document=self.toml())


def with_engine_options(help: dict[str, str] | None = None, tables: tuple[str, ...] = ()) -> Callable[[Callable], Callable]:
    """Replace the command's ``engine: EngineFlags`` parameter by one typer option per ENGINE_OPTIONS
    entry, in place (so --help keeps the command's order). ``help`` rewords an option for this command;
    ``tables`` are TOML sections the command reads itself, which the engine then skips."""
    help = help or {}
    unknown = set(help) - {o.name for o in ENGINE_OPTIONS}
    if unknown:
        raise ValueError(f"help given for options that are not engine options: {sorted(unknown)}")

    def decorate(command: Callable) -> Callable:
        own = inspect.signature(command, eval_str=True)
        engine_params = [
            inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, annotation=o.type,
                              default=typer.Option(None, *o.decls, help=help.get(o.name, o.help)))
            for o in ENGINE_OPTIONS
        ]
        params: list[inspect.Parameter] = []
        for param in own.parameters.values():
            params.extend(engine_params if param.name == "engine" else [param.replace(kind=inspect.Parameter.KEYWORD_ONLY)])

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> Any:
            given = {o.name: kwargs.pop(o.name) for o in ENGINE_OPTIONS}
            config = given.pop("config")
            if given["output"] is not None:
                given["output"] = str(given["output"])
            return command(engine=EngineFlags(given, config, tables), **kwargs)

        # typer reads the options from the signature and resolves their types from __annotations__.
        wrapper.__signature__ = own.replace(parameters=params)
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        return wrapper

    return decorate
