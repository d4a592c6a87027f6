"""srdistill: distil large super-resolution models into small, fast students (MiPKD).

Library first: the ``srdistill`` command line only parses arguments and calls these.
"""

from ._version import __version__
from .errors import SrdistillError

# The rest imports torch (seconds): loaded on first use, so that `import srdistill.cli` (and with
# it `srdistill --help`) stays fast. name -> (module, attribute).
_LAZY = {
    "find_preset": (".archs.registry", "find_preset"),
    "get_arch": (".archs.registry", "get_arch"),
    "list_archs": (".archs.registry", "list_archs"),
    "resolve_arch": (".archs.registry", "resolve_arch"),
    "ArchSpec": (".archs.spec", "ArchSpec"),
    "Detection": (".archs.spec", "Detection"),
    "evaluate_models": (".evaluate", "evaluate"),
    "SRModel": (".models", "SRModel"),
    "build_model": (".models", "build_model"),
    "convert_model": (".models", "convert_model"),
    "inspect_model": (".models", "inspect_model"),
    "load_model": (".models", "load_model"),
    "save_model": (".models", "save_model"),
    "upscale_paths": (".upscale", "upscale_paths"),
    "upscale_tensor": (".upscale", "upscale_tensor"),
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'srdistill' has no attribute {name!r}")
    import importlib

    module, attribute = _LAZY[name]
    value = getattr(importlib.import_module(module, __name__), attribute)
    globals()[name] = value
    return value

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
    "resolve_arch",
    "save_model",
    "upscale_paths",
    "upscale_tensor",
    "__version__",
]
