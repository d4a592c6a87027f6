"""Which model ``--model`` means: a model file, a bundled name, a preset name (random weights), or the default."""

from __future__ import annotations

import warnings
from pathlib import Path

from ..bundled import bundled_models, bundled_names, find_bundled, resolve_model_ref
from ..errors import ModelFileError, SrdistillError, UsageError
from ..models import SRModel, build_model, load_model
from ..registry import find_preset
from .progress import UpscaleProgress


def default_model_file(scale: int) -> Path | None:
    """The default model for ``scale``: the bundled ``student-x{scale}``, if this install has it."""
    model = find_bundled("student", scale)
    return model.path if model is not None else None


def resolve_model(spec: str | Path | None, scale: int | None, progress: UpscaleProgress | None = None) -> SRModel:
    """``--model``: a model file, a bundled name (``teacher``, ``student-x2``, ...), a preset name
    (random weights: for speed tests), or by default the bundled student at ``scale``."""
    if spec is None:
        wanted = scale or 4
        path = default_model_file(wanted)
        if path is None:
            other = next((m.name for m in bundled_models() if m.role == "student"), None)
            resized = f"--model {other} (its output resized to x{wanted}) or " if other else ""
            raise UsageError(
                f"no bundled x{wanted} model in this version (bundled: {bundled_names()}); pass {resized}"
                f"--model path/to/model.safetensors (srdistill or official EDSR/RCAN/SwinIR/Real-ESRGAN weights)"
            )
        return load_model(path)
    try:
        path = resolve_model_ref(spec, scale)
    except UsageError as exc:
        raise UsageError(f"--model {exc}") from None
    if path.exists() or path.suffix.lower() in (".safetensors", ".pth", ".pt", ".ckpt", ".bin"):
        return load_model(path)
    try:
        find_preset(str(spec))
    except SrdistillError:
        raise ModelFileError(
            f"--model {spec}: no such file, not a bundled model (bundled: {bundled_names()}) "
            f"and not a preset name (see `srdistill archs`)"
        ) from None
    message = f"--model {spec} is a preset: random weights, the output is noise (useful for speed tests only)"
    if progress is not None:
        progress.note(message)
    else:
        warnings.warn(message, stacklevel=2)
    return build_model(str(spec), scale or 4)


def common_scale(models: list[SRModel], scale: int | None) -> int:
    """The scale asked for, or the one scale all ``models`` share (else a UsageError)."""
    if scale is not None:
        return scale
    scales = sorted({m.scale for m in models})
    if len(scales) != 1:
        raise UsageError("pass -s/--scale: " + ("no model gives one" if not scales else f"the models have scales {scales}"))
    return scales[0]


__all__ = ["common_scale", "default_model_file", "resolve_model"]
