"""Which model ``--model`` means: a model file, a bundled name, a preset name (random weights), or the default."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..bundled import bundled_models, bundled_names, find_bundled, resolve_model_ref
from ..errors import ModelFileError, SrdistillError, UsageError, param, spell
from ..models import SRModel, build_model, load_model
from ..archs.registry import find_preset
from .progress import UpscaleProgress


def default_model_file(scale: int) -> Path | None:
    """The default model for ``scale``: the bundled ``student-x{scale}``, if this install has it."""
    model = find_bundled("student", scale)
    return model.path if model is not None else None


def resolve_model(
    spec: str | Path | None,
    scale: int | None,
    progress: UpscaleProgress | None = None,
    *,
    hparams: Mapping[str, Any] | None = None,
) -> SRModel:
    """``--model``: a model file, a bundled name (``teacher``, ``student-x2``, ...), a preset name
    (random weights: for speed tests), or by default the bundled student at ``scale``.

    ``hparams`` (``--arch-opt``) sets what the weights cannot tell, e.g. EDSR ``res_scale``."""
    hparams = hparams or None
    if spec is None:
        wanted = scale or 4
        path = default_model_file(wanted)
        if path is None:
            other = next((m.name for m in bundled_models() if m.role == "student"), None)
            resized = f"{param('spec', other)} (its output resized to x{wanted}) or " if other else ""
            raise UsageError(
                f"no bundled x{wanted} model in this version (bundled: {bundled_names()}); pass {resized}"
                f"{param('spec', 'path/to/model.safetensors')} (srdistill or official EDSR/RCAN/SwinIR/Real-ESRGAN weights)"
            )
        return load_model(path, hparams=hparams)
    try:
        path = resolve_model_ref(spec, scale)
    except UsageError as exc:
        raise UsageError(f"{param('spec')} {exc.template}") from None
    if path.exists() or path.suffix.lower() in (".safetensors", ".pth", ".pt", ".ckpt", ".bin"):
        return load_model(path, hparams=hparams)
    try:
        find_preset(str(spec))
    except SrdistillError:
        raise ModelFileError(
            f"{param('spec')} {spec}: no such file, not a bundled model (bundled: {bundled_names()}) "
            f"and not a preset name (see `srdistill archs`)"
        ) from None
    message = spell(f"{param('spec')} {spec} is a preset: random weights, the output is noise (useful for speed tests only)")
    if progress is not None:
        progress.note(message)
    else:
        warnings.warn(message, stacklevel=2)
    return build_model(str(spec), scale or 4, hparams)


def common_scale(models: list[SRModel], scale: int | None) -> int:
    """The scale asked for, or the one scale all ``models`` share (else a UsageError)."""
    if scale is not None:
        return scale
    scales = sorted({m.scale for m in models})
    if len(scales) != 1:
        raise UsageError(f"pass {param('scale')}: " + ("no model gives one" if not scales else f"the models have scales {scales}"))
    return scales[0]


__all__ = ["common_scale", "default_model_file", "resolve_model"]
