"""Training configuration as data: one dataclass, a TOML file with the same keys, CLI overrides.

Layering, lowest first: defaults < the run's saved config (when resuming) < ``--config`` TOML <
command-line flags. Keys are the flag names without ``--``; ``batch-size`` and ``batch_size``
are the same key. Unknown keys are rejected with the list of known ones, and every value is
checked here, before any data is read or any model is built.
"""

from __future__ import annotations

import importlib.util
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from ..errors import UsageError, param

SCHEDULES = ("cosine", "multistep")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
CACHE_MODES = ("auto", "memory", "none")
# Where a run also logs, besides metrics.jsonl and curve.png (each an optional extra).
LOGGERS = ("tensorboard",)

# Keys that decide the network itself: a checkpoint can only be resumed with the same values.
MODEL_KEYS = ("arch", "arch_opt", "scale")
# Keys of the invocation, never stored with the run.
TRANSIENT_KEYS = ("resume", "overwrite", "json")


@dataclass
class TrainConfig:
    # what to train
    arch: str | None = None
    arch_opt: dict[str, Any] = field(default_factory=dict)
    scale: int = 4
    init: str | None = None  # model file to start from (matching tensors; e.g. x2 from an x4 body)
    # data
    data: str | None = None
    hr_downscale: float = 1.0
    patch_size: int = 48
    batch_size: int = 16  # per process; a torchrun job's global batch is this times the world size
    workers: int = -1  # -1: chosen from the device and the cache (see train.machine.loader_settings)
    cache: str = "auto"
    # validation
    val_data: str | None = None
    val_fraction: float = 0.0
    val_every: int = 500
    val_crop: int = 0  # >0: validate on the central crop of this many HR pixels per side
    # budget and optimisation
    steps: int | None = None
    max_time: float | None = None  # seconds
    lr: float = 2e-4
    schedule: str = "cosine"
    milestones: list[float] = field(default_factory=lambda: [0.5, 0.75, 0.9])
    gamma: float = 0.5
    warmup: int = 0
    min_lr: float = 0.0
    weight_decay: float = 0.0
    ema: float = 0.0
    grad_clip: float = 0.0
    max_bad_steps: int = 5
    seed: int = 0
    # machine
    device: str = "auto"
    precision: str = "auto"
    channels_last: bool = True
    threads: int = 0  # 0: physical cores divided among the processes on this node
    # files
    output: str | None = None
    run_dir: str | None = None
    checkpoint_every: int = 1000
    checkpoint_minutes: float = 10.0
    keep_checkpoints: int = 2
    log_every: int = 10
    log: list[str] = field(default_factory=list)  # LOGGERS, e.g. ["tensorboard"]: event files in RUN_DIR/tensorboard
    # Re-parameterisable students (spec.fuse) are written fused unless this keeps the training form.
    keep_unfused: bool = False
    # invocation only
    resume: str | None = None
    overwrite: bool = False
    json: bool = False
    # Not a key: a command whose samples come from elsewhere (distill --unlabeled) subclasses with False.
    data_required: ClassVar[bool] = True

    def stored(self) -> dict[str, Any]:
        """The resolved configuration as saved in ``config.toml`` and the output's metadata."""
        out = asdict(self)
        for key in TRANSIENT_KEYS:
            out.pop(key, None)
        return out


KNOWN_KEYS = tuple(f.name for f in fields(TrainConfig))


def known_keys(cls: type[TrainConfig] = TrainConfig) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


def _field_default(cls: type[TrainConfig], name: str) -> Any:
    return cls().__dict__[name]


def normalise_key(key: str) -> str:
    return key.strip().replace("-", "_")


def parse_duration(value: Any) -> float:
    """Seconds from ``90``, ``"90s"``, ``"30m"``, ``"2h"`` or ``"1h30m"``."""
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip().lower()
        if re.fullmatch(r"\d+(\.\d+)?", text):
            seconds = float(text)
        else:
            parts = re.findall(r"(\d+(?:\.\d+)?)\s*([hms])", text)
            if not parts or re.sub(r"(\d+(?:\.\d+)?)\s*([hms])", "", text).strip():
                raise ValueError
            unit = {"h": 3600.0, "m": 60.0, "s": 1.0}
            seconds = sum(float(n) * unit[u] for n, u in parts)
    if not seconds > 0 or not math.isfinite(seconds):
        raise ValueError
    return seconds


def _typed(key: str, value: Any, source: str, cls: type[TrainConfig]) -> Any:
    """Give a raw value (str from the CLI, TOML scalar) the type its key needs."""
    default = _field_default(cls, key)

    def bad(expected: str):
        return UsageError(f"{source}: {key} = {value!r} is not {expected}")

    if value is None:
        return None
    if key == "max_time":
        try:
            return parse_duration(value)
        except ValueError:
            raise bad("a duration (seconds, or like 30m, 2h, 1h30m)") from None
    if key == "arch_opt":
        if not isinstance(value, Mapping):
            raise bad("a table of hyperparameters (e.g. arch_opt = { n_feats = 32 })")
        return {str(k): v for k, v in value.items()}
    if key == "log":
        # "tensorboard", "tensorboard,other" or a TOML list; "none" (or "") turns a resumed run's logging off.
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or not all(isinstance(v, str) for v in items):
            raise bad(f"a list of loggers (e.g. log = [\"tensorboard\"]; known: {', '.join(LOGGERS)})")
        names = [v.strip().lower() for v in items if v.strip()]
        return [] if names == ["none"] else list(dict.fromkeys(names))
    if key == "milestones":
        items = value.split(",") if isinstance(value, str) else value
        try:
            out = [float(v) for v in items]
        except (TypeError, ValueError):
            raise bad("a list of fractions of the run (e.g. 0.5,0.75)") from None
        return out
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        low = str(value).strip().lower()
        if low in {"1", "true", "yes", "on"}:
            return True
        if low in {"0", "false", "no", "off"}:
            return False
        raise bad("true or false")
    if key == "steps" or isinstance(default, int):
        try:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value) if not isinstance(value, str) else int(value.strip())
        except (TypeError, ValueError):
            raise bad("an integer") from None
    if isinstance(default, float):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise bad("a number") from None
        if not math.isfinite(number):
            raise bad("a finite number")
        return number
    return str(value)


def typed_values(values: Mapping[str, Any], source: str, cls: type[TrainConfig] = TrainConfig) -> dict[str, Any]:
    """Normalise keys, reject unknown ones, type every value. ``cls`` may be a subclass of
    TrainConfig with more fields (a command built on the engine, e.g. ``distill``)."""
    known = known_keys(cls)
    out: dict[str, Any] = {}
    for raw_key, value in values.items():
        key = normalise_key(raw_key)
        if key not in known:
            close = [k for k in known if k.split("_")[0] == key.split("_")[0]]
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise UsageError(f"{source}: unknown key {raw_key!r}{hint}; known keys: {', '.join(known)}")
        out[key] = _typed(key, value, source, cls)
    return out


def load_toml(path: str | Path) -> dict[str, Any]:
    """The whole TOML document; a missing file or a syntax error (tomllib names the line) is one line."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"config file {path} does not exist (check the {param('config')} path)")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"config file {path} is not valid TOML: {exc}") from None


def engine_keys(document: Mapping[str, Any], source: str, cls: type[TrainConfig] = TrainConfig,
                tables: tuple[str, ...] = ()) -> dict[str, Any]:
    """The typed engine keys of a TOML document; ``tables`` are sections another layer reads (``[distill]``)."""
    return typed_values({k: v for k, v in document.items() if k not in tables}, source, cls)


def read_toml(path: str | Path, cls: type[TrainConfig] = TrainConfig, tables: tuple[str, ...] = ()) -> dict[str, Any]:
    """The engine keys of a TOML file; ``tables`` are sections another layer reads (``[distill]``)."""
    return engine_keys(load_toml(path), str(path), cls, tables)


def resolve(*layers: Mapping[str, Any], cls: type[TrainConfig] = TrainConfig) -> TrainConfig:
    """Apply typed layers in order (later wins) over the defaults, then validate."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if key == "arch_opt" and value is not None:
                merged["arch_opt"] = {**merged.get("arch_opt", {}), **value}
            else:
                merged[key] = value
    config = cls(**{k: v for k, v in merged.items() if v is not None})
    validate(config)
    return config


def _need(cond: bool, message: str) -> None:
    if not cond:
        raise UsageError(message)


def validate(c: TrainConfig) -> None:
    _need(c.arch is not None, f"no architecture given; pass {param('arch')} PRESET (see `srdistill archs`) or arch = ... in the config")
    _need(c.data is not None or not c.data_required, f"no training data given; pass {param('data')} DIR (a folder of HR images, or HR/ + LR_bicubic/X{{s}}/)")
    _need(c.steps is not None or c.max_time is not None, f"no training budget; pass {param('steps')} N and/or {param('max_time')} 30m")
    _need(c.steps is None or c.steps > 0, f"{param('steps')} must be positive, got {c.steps}")
    _need(c.scale >= 1, f"{param('scale')} must be a positive integer, got {c.scale}")
    _need(c.batch_size >= 1, f"{param('batch_size')} must be at least 1, got {c.batch_size}")
    _need(c.patch_size >= 4, f"{param('patch_size')} must be at least 4 LR pixels, got {c.patch_size}")
    _need(c.hr_downscale >= 1.0, f"{param('hr_downscale')} must be 1 or more (it shrinks the HR photos), got {c.hr_downscale:g}")
    _need(c.lr > 0, f"{param('lr')} must be positive, got {c.lr:g}")
    _need(c.schedule in SCHEDULES, f"{param('schedule')} must be one of {', '.join(SCHEDULES)}, got {c.schedule!r}")
    _need(all(0 < m < 1 for m in c.milestones), f"milestones are fractions of the run in (0, 1), got {c.milestones}")
    _need(0 < c.gamma <= 1, f"gamma must be in (0, 1], got {c.gamma:g}")
    _need(c.warmup >= 0, f"{param('warmup')} must be 0 or more steps, got {c.warmup}")
    _need(0 <= c.ema < 1, f"{param('ema')} is a decay in [0, 1) (e.g. 0.999; 0 turns it off), got {c.ema:g}")
    _need(c.grad_clip >= 0, f"{param('grad_clip')} must be 0 (off) or a positive norm, got {c.grad_clip:g}")
    _need(c.precision in PRECISIONS, f"{param('precision')} must be one of {', '.join(PRECISIONS)}, got {c.precision!r}")
    _need(c.cache in CACHE_MODES, f"cache must be one of {', '.join(CACHE_MODES)}, got {c.cache!r}")
    _need(0 <= c.val_fraction < 1, f"{param('val_fraction')} must be in [0, 1), got {c.val_fraction:g}")
    _need(not (c.val_data and c.val_fraction), f"give either {param('val_data')} or {param('val_fraction')}, not both")
    _need(c.val_every >= 0, f"{param('val_every')} must be 0 (off) or more, got {c.val_every}")
    _need(c.checkpoint_every >= 0, f"{param('checkpoint_every')} must be 0 (off) or more steps, got {c.checkpoint_every}")
    _need(c.keep_checkpoints >= 1, f"keep_checkpoints must be at least 1, got {c.keep_checkpoints}")
    _need(c.log_every >= 1, f"log_every must be at least 1, got {c.log_every}")
    unknown = [name for name in c.log if name not in LOGGERS]
    _need(not unknown, f"{param('log')} {', '.join(unknown)} is not a logger; known: {', '.join(LOGGERS)} (or none)")
    _need("tensorboard" not in c.log or importlib.util.find_spec("tensorboard") is not None,
          f"{param('log')} tensorboard needs the tensorboard package, which is not installed: "
          f"pip install 'srdistill[tensorboard]' (or leave tensorboard out of {param('log')})")
    _need(c.max_bad_steps >= 1, f"max_bad_steps must be at least 1, got {c.max_bad_steps}")
    _need(c.threads >= 0, f"{param('threads')} must be 0 (auto) or more, got {c.threads}")
    _need(c.workers >= -1, f"{param('workers')} must be -1 (auto), 0 (in-process) or more, got {c.workers}")


# -- writing ------------------------------------------------------------------------------------
def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_value(key)


def to_toml(values: Mapping[str, Any]) -> str:
    """A flat TOML document that :func:`read_toml` reads back to the same values (None omitted)."""
    lines = ["# srdistill training configuration (resolved); `srdistill train --config` reads it back"]
    for key, value in values.items():
        if value is None:
            continue
        lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def run_dir_of_checkpoint(path: str | Path) -> Path | None:
    path = Path(path)
    return path.parent.parent if path.parent.name == "checkpoints" else None


def build_config(
    flags: Mapping[str, Any], config_file: str | Path | None = None, cls: type[TrainConfig] = TrainConfig,
    tables: tuple[str, ...] = (), document: Mapping[str, Any] | None = None,
) -> TrainConfig:
    """The resolved configuration of an invocation: defaults < the run's saved config.toml (when
    resuming) < ``config_file`` < ``flags`` (None values in ``flags`` mean "not given").
    ``document``: ``config_file`` already parsed (:func:`load_toml`), so that it is read once."""
    cli = typed_values({k: v for k, v in flags.items() if v is not None and v != {}}, "command line", cls)
    if document is not None:
        file_layer = engine_keys(document, str(config_file or "config"), cls, tables)
    else:
        file_layer = read_toml(config_file, cls, tables) if config_file else {}
    resume = cli.get("resume", file_layer.get("resume"))
    base: dict[str, Any] = {}
    if resume:
        run_dir = cli.get("run_dir") or file_layer.get("run_dir")
        if run_dir is None and resume != "auto":
            run_dir = run_dir_of_checkpoint(resume)
        if run_dir is None:
            raise UsageError(f"{param('resume')} auto needs {param('run_dir')} (the run folder to continue)")
        saved = Path(run_dir) / "config.toml"
        if saved.is_file():
            base = read_toml(saved, cls)
            asked = cli.get("arch", file_layer.get("arch"))
            if asked is not None and asked != base.get("arch"):
                base.pop("arch_opt", None)  # overrides of the run's own preset mean nothing for another
        base["run_dir"] = str(run_dir)
    return resolve(base, file_layer, cli, cls=cls)


def normalise(config: TrainConfig) -> TrainConfig:
    """Type and check a TrainConfig built in Python (``max_time="30m"``, ``steps="100"``...)."""
    values = {k: v for k, v in asdict(config).items() if v is not None}
    return resolve(typed_values(values, "training configuration", type(config)), cls=type(config))
