"""Which model ``--model`` means: a model file, a preset name (random weights), or the bundled default."""

from __future__ import annotations

import importlib.resources
import warnings
from pathlib import Path

from ..errors import ModelFileError, SrdistillError, UsageError
from ..models import SRModel, build_model, load_model
from ..registry import find_preset
from .progress import UpscaleProgress


def default_model_file(scale: int) -> Path | None:
    """The bundled default model for ``scale`` (``srdistill/weights/default_x{s}.safetensors``), if any."""
    resource = importlib.resources.files("srdistill") / "weights" / f"default_x{scale}.safetensors"
    return Path(str(resource)) if resource.is_file() else None


def resolve_model(spec: str | Path | None, scale: int | None, progress: UpscaleProgress | None = None) -> SRModel:
    """``--model``: a model file, a preset name (random weights: for speed tests), or the bundled default."""
    if spec is None:
        wanted = scale or 4
        path = default_model_file(wanted)
        if path is None:
            raise UsageError(
                f"no bundled x{wanted} model in this version yet; pass one with --model path/to/model.safetensors "
                f"(srdistill or official EDSR/RCAN/SwinIR/Real-ESRGAN weights)"
            )
        return load_model(path)
    path = Path(spec).expanduser()
    if path.exists() or path.suffix.lower() in (".safetensors", ".pth", ".pt", ".ckpt", ".bin"):
        return load_model(path)
    try:
        find_preset(str(spec))
    except SrdistillError:
        raise ModelFileError(f"--model {spec}: no such file, and not a preset name (see `srdistill archs`)") from None
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
