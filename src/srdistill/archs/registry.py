"""The ``srdistill.archs`` entry-point group: every installed :class:`ArchSpec`, and presets.

Lives next to the spec, above the generic :mod:`srdistill.registry`, so that the registry never
imports an architecture and an architecture plugin imports nothing above ``archs``.
"""

from __future__ import annotations

from typing import Any

from ..errors import UsageError
from ..registry import Registry
from .spec import ArchSpec


def _check_arch(obj: Any) -> ArchSpec:
    if not isinstance(obj, ArchSpec):
        raise TypeError(f"expected an srdistill.archs.ArchSpec, got {type(obj).__name__}")
    return obj


ARCHS: Registry[ArchSpec] = Registry(
    "srdistill.archs", "architecture", _check_arch, lambda spec: spec.id,
    list_hint="run `srdistill archs` to list them",
)


def get_arch(arch_id: str) -> ArchSpec:
    """The :class:`ArchSpec` registered as ``arch_id`` (imports only that one)."""
    return ARCHS.get(arch_id)


def list_archs() -> dict[str, ArchSpec]:
    """Every registered architecture spec, by id (imports all plugins)."""
    return ARCHS.load_all()


def find_preset(name: str) -> tuple[ArchSpec, str]:
    """``(spec, preset_name)`` for a preset like ``edsr-lite``; imports only the owning arch.

    Preset names are ``<arch id>`` or ``<arch id>-<variant>``, so the owner is the longest
    registered id that prefixes the name.
    """
    owners = [i for i in ARCHS.ids() if name == i or name.startswith(i + "-")]
    for arch_id in sorted(owners, key=len, reverse=True):
        spec = ARCHS.get(arch_id)
        if name in spec.presets:
            return spec, name
    known = []
    for spec in list_archs().values():
        known.extend(spec.presets)
    raise UsageError(f"unknown preset {name!r}; known presets: {', '.join(sorted(known))} (see `srdistill archs`)")


def resolve_arch(name: str) -> tuple[ArchSpec, str | None]:
    """``(spec, preset)`` for a preset name or a bare arch id; ``preset`` is None for an arch id
    that is not also a preset. An unknown name raises the UsageError that lists the presets."""
    if name in ARCHS.ids():
        spec = ARCHS.get(name)
        return spec, (name if name in spec.presets else None)
    return find_preset(name)
