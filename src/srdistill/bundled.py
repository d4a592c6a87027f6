"""Models and sample images shipped inside the package.

    srdistill upscale photo.png -s 4                 # the bundled student-x4
    srdistill eval --model teacher --model student --data Set5
    srdistill distill --teacher teacher-x2 --student-arch edsr-lite --data photos/

Trained weights live in ``srdistill/weights/{teacher,student}_x{s}.safetensors``; which of them a
given install holds is read from the folder, never hard-coded, so a build without weights still
works (every name then says what is bundled instead of failing obscurely). Everywhere a model file
is asked for, an existing path wins over a bundled name: a file called ``teacher`` in the working
directory is that file.
"""

from __future__ import annotations

import importlib.resources
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._version import __version__
from .errors import UsageError

ROLES = ("teacher", "student")
DEFAULT_SCALE = 4

_FILE_NAME = re.compile(r"^(teacher|student)_x(\d+)\.safetensors$")
_REF_NAME = re.compile(r"^(teacher|student)(?:-x(\d+))?$")


@dataclass(frozen=True)
class BundledModel:
    name: str  # "student-x4": what --model / --teacher accept
    role: str  # "teacher" or "student"
    scale: int
    path: Path


def weights_dir() -> Path:
    """The folder bundled weights are read from (tests point this function at a folder of their own)."""
    return Path(str(importlib.resources.files("srdistill") / "weights"))


def samples_dir() -> Path:
    """The bundled sample images (256x256 PNG crops of CC0 / CC-BY-4.0 photos; see ATTRIBUTION.md there)."""
    return Path(str(importlib.resources.files("srdistill") / "samples"))


def held_out_dir() -> Path:
    """Evaluation crops of CC0 photos that no bundled model was trained on (see ATTRIBUTION.md
    there). A subfolder of the samples, which training on ``samples_dir()`` does not read."""
    return samples_dir() / "held-out"


def bundled_models() -> list[BundledModel]:
    """The bundled models this install actually holds, teachers first, then by scale."""
    folder = weights_dir()
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _FILE_NAME.match(path.name)
        if match and path.is_file():
            role, scale = match.group(1), int(match.group(2))
            found.append(BundledModel(f"{role}-x{scale}", role, scale, path))
    return sorted(found, key=lambda m: (ROLES.index(m.role), m.scale))


def bundled_names() -> str:
    """``"teacher-x4, student-x4"``, or a sentence saying none are bundled (for error messages)."""
    names = [m.name for m in bundled_models()]
    return ", ".join(names) if names else f"none in srdistill {__version__}"


def find_bundled(role: str, scale: int) -> BundledModel | None:
    return next((m for m in bundled_models() if m.role == role and m.scale == scale), None)


def bundled_name(path: str | Path | None) -> str | None:
    """The bundled name of ``path`` (``"teacher-x4"``) if it is one of the bundled files."""
    if path is None:
        return None
    try:
        target = Path(path).resolve()
    except OSError:
        return None
    return next((m.name for m in bundled_models() if m.path.resolve() == target), None)


def resolve_model_ref(ref: str | Path, scale: int | None = None) -> Path:
    """What a model argument names: an existing file, else a bundled name, else ``ref`` unchanged.

    Bundled names are ``teacher`` and ``student`` (at ``scale``, default 4) and ``teacher-x4``,
    ``student-x2``, ... (their own scale). A bundled name whose file this install lacks is a
    UsageError listing what is bundled. Anything else comes back as a Path for the caller to report
    (missing file, preset name, ...) the way it always has.
    """
    path = Path(ref).expanduser()
    if path.exists():
        return path
    match = _REF_NAME.match(str(ref).strip())
    if match is None:
        return path
    role = match.group(1)
    wanted = int(match.group(2)) if match.group(2) else (scale or DEFAULT_SCALE)
    model = find_bundled(role, wanted)
    if model is None:
        raise UsageError(
            f"{ref}: no bundled {role}-x{wanted} model (bundled: {bundled_names()}); "
            f"pass a model file (.safetensors/.pth) instead"
        )
    return model.path


def recorded_set5_psnr(metadata: dict[str, Any]) -> float | None:
    """Set5 PSNR-Y a model file records about itself, if any.

    Either an explicit ``provenance.benchmarks.Set5`` (a number or ``{"psnr_y": ...}``), or the
    final validation of its training run when that ran on the whole of a folder named Set5 (the
    engine validates exactly as ``srdistill eval`` measures: Y channel, border crop = scale).
    """
    prov = metadata.get("provenance")
    if not isinstance(prov, dict):
        return None
    explicit = (prov.get("benchmarks") or {}).get("Set5") if isinstance(prov.get("benchmarks"), dict) else None
    if isinstance(explicit, dict):
        explicit = explicit.get("psnr_y", explicit.get("psnr"))
    if isinstance(explicit, (int, float)):
        return float(explicit)
    config, val = prov.get("config") or {}, prov.get("validation") or {}
    if not isinstance(config, dict) or not isinstance(val, dict) or "psnr_y" not in val:
        return None
    if config.get("val_data") and Path(str(config["val_data"])).name == "Set5" and not config.get("val_crop"):
        return float(val["psnr_y"])
    return None


def trained_as(metadata: dict[str, Any], fallback: str) -> str:
    """How a bundled model was configured when trained (``edsr-baseline, bicubic_skip=True``), else ``fallback``."""
    prov = metadata.get("provenance")
    config = prov.get("config") if isinstance(prov, dict) else None
    if not isinstance(config, dict) or not config.get("arch"):
        return fallback
    extra = config.get("arch_opt") or {}
    opts = ", ".join(f"{k}={v}" for k, v in extra.items()) if isinstance(extra, dict) else ""
    return str(config["arch"]) + (f" ({opts})" if opts else "")


__all__ = [
    "BundledModel",
    "bundled_models",
    "bundled_name",
    "find_bundled",
    "recorded_set5_psnr",
    "resolve_model_ref",
    "samples_dir",
    "trained_as",
    "weights_dir",
]
