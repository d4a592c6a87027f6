"""Training checkpoints: local, resumable, crash-safe. (Model files for users are ``model_files``.)

* A checkpoint holds only tensors and plain containers (RNG states as tensors), so it loads with
  ``torch.load(weights_only=True)``: resuming never runs code from a file.
* Written atomically: serialised in memory, written to a temporary file next to the target,
  fsynced, renamed. A checkpoint exists only once complete; a crash or a full disk mid-write
  leaves the previous ones untouched. Old checkpoints are pruned only after the new one is in place.
* Loading the latest one falls back to the previous complete one, with a warning, when the latest
  is unreadable (truncated by a crash of the machine, damaged by a copy).
"""

from __future__ import annotations

import errno
import io
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from ..errors import SrdistillError, param
from .atomic import atomic_write

FORMAT = 1
CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^step-(\d+)\.pt$")
REQUIRED_KEYS = ("format", "step", "model", "optimizer", "rng", "data", "config", "arch")


class CheckpointError(SrdistillError):
    """A checkpoint cannot be written, found or read."""


class CheckpointWarning(UserWarning):
    """A checkpoint was skipped (unreadable) in favour of an older one."""


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR


def checkpoint_path(run_dir: str | Path, step: int) -> Path:
    return checkpoint_dir(run_dir) / f"step-{step:08d}.pt"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (temporary files are not checkpoints)."""
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name)) and p.is_file()]
    return [p for _, p in sorted(found)]


def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        view = memoryview(data)
        chunk = 16 << 20
        for start in range(0, len(view), chunk):
            fh.write(view[start : start + chunk])


def save_checkpoint(state: dict[str, Any], run_dir: str | Path, *, keep: int = 2) -> Path:
    """Write ``state`` as the checkpoint of ``state['step']``; then prune to the newest ``keep``."""
    path = checkpoint_path(run_dir, int(state["step"]))
    buffer = io.BytesIO()
    torch.save(state, buffer)
    previous = list_checkpoints(run_dir)
    try:
        with atomic_write(path, overwrite=True) as tmp:
            _write_bytes(tmp, buffer.getbuffer())
    except OSError as exc:
        kept = f"the previous checkpoint {previous[-1]} is intact" if previous else "no earlier checkpoint exists"
        reason = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        raise CheckpointError(f"could not write checkpoint {path}: {reason}; {kept} (free space, then resume with {param('resume', 'auto')})") from None
    _prune(run_dir, keep, path)
    return path


def _prune(run_dir: str | Path, keep: int, newest: Path) -> None:
    complete = list_checkpoints(run_dir)
    for old in complete[: max(0, len(complete) - keep)]:
        if old != newest:
            old.unlink(missing_ok=True)
    for stale in checkpoint_dir(run_dir).glob(".step-*.tmp"):
        stale.unlink(missing_ok=True)  # left by a process killed mid-write


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and check one checkpoint (CPU tensors); CheckpointError if it is not a usable one."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist (give a step-*.pt file, or {param('resume', 'auto')} with {param('run_dir')})")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to unpickle means an unusable file
        detail = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise CheckpointError(f"checkpoint {path} is unreadable ({detail})") from None
    if not isinstance(state, dict) or any(k not in state for k in REQUIRED_KEYS):
        raise CheckpointError(f"{path} is not an srdistill training checkpoint (missing keys)")
    if state["format"] != FORMAT:
        raise CheckpointError(f"checkpoint {path} has format {state['format']}, this srdistill reads format {FORMAT}")
    return state


def load_latest(run_dir: str | Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest readable checkpoint of a run (None if it has none); unreadable newer ones are
    reported with a warning and skipped, never deleted."""
    candidates = list_checkpoints(run_dir)
    failures: list[str] = []
    for path in reversed(candidates):
        try:
            state = load_checkpoint(path)
        except CheckpointError as exc:
            failures.append(str(exc))
            continue
        if failures:
            warnings.warn(
                f"{'; '.join(failures)}; falling back to the previous complete checkpoint {path.name}",
                CheckpointWarning,
                stacklevel=2,
            )
        return path, state
    if failures:
        raise CheckpointError(f"no usable checkpoint in {checkpoint_dir(run_dir)}: {failures[-1]}")
    return None
