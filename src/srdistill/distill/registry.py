"""The ``srdistill.methods`` entry-point group: every installed :class:`MethodSpec`.

Lives next to the spec, above the generic :mod:`srdistill.registry`, which imports no method.
"""

from __future__ import annotations

from typing import Any

from ..registry import Registry
from .spec import MethodSpec


def _check_method(obj: Any) -> MethodSpec:
    if not isinstance(obj, MethodSpec):
        raise TypeError(f"expected an srdistill.distill.MethodSpec, got {type(obj).__name__}")
    return obj


METHODS: Registry[MethodSpec] = Registry(
    "srdistill.methods",
    "distillation method",
    _check_method,
    lambda spec: spec.id,
    list_hint="`srdistill distill --help` lists them",
)


def get_method(method_id: str) -> MethodSpec:
    """The :class:`MethodSpec` registered as ``method_id``."""
    return METHODS.get(method_id)
