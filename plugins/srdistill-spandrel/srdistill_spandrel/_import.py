"""Importing spandrel: a missing or broken install becomes one named, actionable error.

srdistill itself never needs spandrel, so nothing here runs until a spandrel family is used.
"""

from __future__ import annotations

import functools
import importlib
import sys
from types import ModuleType

from srdistill.errors import PluginError

INSTALL_HINT = "pip install 'spandrel>=0.4' (or: pip install -e plugins/srdistill-spandrel)"


class SpandrelMissingError(PluginError):
    """spandrel (the loader library behind the srdistill-spandrel families) cannot be imported."""


def _declare_missing_vision_ops() -> None:
    """A torchvision wheel built for CUDA torch, installed next to a CPU-only torch, fails to load
    its compiled ops and then dies registering fake kernels for two of them. spandrel only uses
    torchvision's pure-Python transforms, so declaring those two schemas lets the import finish;
    calling the ops would still fail loudly (no kernel)."""
    import torch

    for name in ("nms", "qnms"):
        if not hasattr(torch.ops.torchvision, name):
            torch.library.define(f"torchvision::{name}", "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")


def _forget(prefix: str) -> None:
    for name in [m for m in sys.modules if m == prefix or m.startswith(prefix + ".")]:
        del sys.modules[name]


def import_quietly(name: str = "spandrel") -> ModuleType:
    """Import spandrel (or its extra package) without the deprecation notices torch prints about its modules' code
    (``@torch.jit.script``): they concern spandrel, and would break srdistill's one-line output."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.* is deprecated", category=DeprecationWarning)
        return importlib.import_module(name)


@functools.cache
def spandrel() -> ModuleType:
    """The spandrel module, or a :class:`SpandrelMissingError` saying what to install."""
    import warnings

    warnings.filterwarnings("ignore", category=UserWarning, module=r"spandrel\.")
    try:
        return import_quietly()
    except ModuleNotFoundError as exc:
        raise SpandrelMissingError(
            f"no built-in architecture recognises this model and spandrel, which srdistill-spandrel loads other families with, is not installed ({exc.name} is missing): {INSTALL_HINT}"
        ) from None
    except RuntimeError as exc:
        if "torchvision::" not in str(exc):
            raise
    _forget("torchvision")
    _forget("spandrel")
    _declare_missing_vision_ops()
    try:
        return import_quietly()
    except Exception as exc:  # noqa: BLE001 - any failure here is an installation problem
        raise SpandrelMissingError(
            f"spandrel is installed but cannot be imported ({type(exc).__name__}: {exc}); "
            f"install a torchvision build that matches your torch, then {INSTALL_HINT}"
        ) from None


def available() -> bool:
    try:
        spandrel()
    except SpandrelMissingError:
        return False
    return True
