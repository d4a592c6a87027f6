"""Which installed distributions may claim a model file: ``loader="auto" | "builtin" | <plugin>``.

By default (``auto``) every architecture may detect a file, srdistill's own and specific plugins'
first, catch-all loaders (``ArchSpec.detect_fallback``) last. A user whose file two sides could
read forces one: ``builtin`` keeps srdistill's own architectures, a plugin's distribution name
(``srdistill-spandrel``, or ``spandrel`` without the ``srdistill-`` prefix) keeps that plugin's.
The choice is by the distribution that registered each architecture, so any plugin gets it.

Commands that load models several layers down (``distill``, ``eval``) set the choice for a block
with :func:`loader_choice`; :func:`srdistill.models.load_model` also takes it as ``loader``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from ..errors import UsageError, param
from ..registry import OWN_DISTRIBUTION
from .registry import ARCHS, list_archs
from .spec import ArchSpec

AUTO = "auto"
BUILTIN = "builtin"
_PLUGIN_PREFIX = "srdistill-"

_CHOICE: ContextVar[str] = ContextVar("srdistill_model_loader", default=AUTO)


@contextmanager
def loader_choice(loader: str | None) -> Iterator[None]:
    """Within this block, model files load as ``loader`` says (None or ``auto``: any architecture)."""
    token = _CHOICE.set(_normalise(loader))
    try:
        yield
    finally:
        _CHOICE.reset(token)


def current(loader: str | None = None) -> str:
    """``loader`` when given, else the enclosing :func:`loader_choice`'s."""
    return _CHOICE.get() if loader is None else _normalise(loader)


def _normalise(loader: str | None) -> str:
    return AUTO if loader is None else str(loader).strip().lower()


def distribution_of(arch_id: str) -> str:
    return ARCHS.provenance(arch_id).distribution


def _matches(distribution: str, loader: str) -> bool:
    dist = distribution.lower()
    if loader == BUILTIN:
        return dist == OWN_DISTRIBUTION
    return dist == loader or dist == _PLUGIN_PREFIX + loader


def choices() -> list[str]:
    """The values ``loader`` accepts here: auto, builtin, and each plugin distribution with architectures."""
    plugins = sorted({distribution_of(a) for a in list_archs()} - {OWN_DISTRIBUTION})
    return [AUTO, BUILTIN, *plugins]


def allows(arch_id: str, loader: str | None = None) -> bool:
    choice = current(loader)
    return choice == AUTO or _matches(distribution_of(arch_id), choice)


def candidate_specs(loader: str | None = None) -> dict[str, ArchSpec]:
    """The architectures that may detect a file under ``loader``; an unknown loader is a UsageError."""
    choice = current(loader)
    specs = list_archs()
    if choice == AUTO:
        return specs
    kept = {arch_id: spec for arch_id, spec in specs.items() if _matches(distribution_of(arch_id), choice)}
    if not kept:
        raise UsageError(
            f"{param('loader')} {choice!r} matches no installed architecture; choose one of {', '.join(choices())} "
            f"(plugin distributions may drop the 'srdistill-' prefix)"
        )
    return kept
