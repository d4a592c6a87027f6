"""srdistill: distil large super-resolution models into small, fast students (MiPKD).

Library first: the ``srdistill`` command line only parses arguments and calls these.
"""

__version__ = "0.1.0"

from .archs.spec import ArchSpec, Detection  # noqa: E402
from .errors import SrdistillError  # noqa: E402
from .models import SRModel, build_model, convert_model, inspect_model, load_model, save_model  # noqa: E402
from .registry import find_preset, get_arch, list_archs  # noqa: E402
from .upscale import upscale_paths, upscale_tensor  # noqa: E402
from .evaluate import evaluate as evaluate_models  # noqa: E402

__all__ = [
    "ArchSpec",
    "Detection",
    "SRModel",
    "SrdistillError",
    "build_model",
    "convert_model",
    "evaluate_models",
    "find_preset",
    "get_arch",
    "inspect_model",
    "list_archs",
    "load_model",
    "save_model",
    "upscale_paths",
    "upscale_tensor",
    "__version__",
]
