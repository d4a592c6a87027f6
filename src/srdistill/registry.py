"""One generic, lazy entry-point registry; each group is defined next to the spec it holds
(architectures: :mod:`srdistill.archs.registry`, methods: :mod:`srdistill.distill.registry`).
This module knows nothing of either.

Built-ins register through the same entry-point groups as third-party plugins, so there is one
code path. Nothing is imported until asked for: ``get`` imports one entry point, ``load_all``
imports the whole group. A plugin that fails to import, or that registers an id already taken,
produces one warning naming its distribution, and everything else keeps working.

``SRDISTILL_DISABLE_PLUGINS=1`` (or ``all``) ignores every third-party distribution;
``SRDISTILL_DISABLE_PLUGINS=dist-a,dist-b`` ignores just those.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Generic, TypeVar

from .errors import PluginError

T = TypeVar("T")
OWN_DISTRIBUTION = "srdistill"
DISABLE_ENV = "SRDISTILL_DISABLE_PLUGINS"


class PluginWarning(UserWarning):
    """A plugin was skipped (broken import, duplicate id, wrong object)."""


@dataclass(frozen=True)
class Provenance:
    distribution: str
    version: str
    entry_point: str  # "module:attr"

    @property
    def builtin(self) -> bool:
        return self.distribution == OWN_DISTRIBUTION


def _disabled_distributions() -> set[str] | None:
    """None: nothing disabled; empty set: every third-party plugin disabled."""
    raw = os.environ.get(DISABLE_ENV, "").strip()
    if not raw or raw.lower() in {"0", "false", "no"}:
        return None
    if raw.lower() in {"1", "true", "yes", "all"}:
        return set()
    return {part.strip().lower() for part in raw.split(",") if part.strip()}


def _dist_of(ep: metadata.EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "unknown", "?"
    return dist.metadata["Name"] or "unknown", dist.version or "?"


class Registry(Generic[T]):
    """Entry points of one group, resolved lazily into validated objects."""

    def __init__(
        self,
        group: str,
        kind: str,
        check: Callable[[Any], T],
        id_of: Callable[[T], str],
        list_hint: str,
    ):
        self.group = group
        self.kind = kind
        self.list_hint = list_hint
        self._check = check
        self._id_of = id_of
        self._loaded: dict[str, tuple[T, Provenance]] = {}
        self._failed: set[str] = set()
        self._entries: dict[str, metadata.EntryPoint] | None = None

    # -- discovery (reads metadata only, imports nothing) --------------------------------------
    def _discover(self) -> dict[str, metadata.EntryPoint]:
        if self._entries is not None:
            return self._entries
        disabled = _disabled_distributions()
        chosen: dict[str, metadata.EntryPoint] = {}
        eps = sorted(
            metadata.entry_points(group=self.group),
            # Our own distribution first: on an id clash the built-in wins.
            key=lambda ep: (_dist_of(ep)[0].lower() != OWN_DISTRIBUTION, _dist_of(ep)[0].lower()),
        )
        for ep in eps:
            dist, _ = _dist_of(ep)
            if disabled is not None and dist.lower() != OWN_DISTRIBUTION:
                if not disabled or dist.lower() in disabled:
                    continue
            if ep.name in chosen:
                if chosen[ep.name].value == ep.value and _dist_of(chosen[ep.name])[0] == dist:
                    continue  # the same distribution seen twice on sys.path
                other = _dist_of(chosen[ep.name])[0]
                warnings.warn(
                    f"{self.kind} plugin {ep.name!r} from distribution {dist!r} ignored: "
                    f"the id is already registered by {other!r} (uninstall one of them)",
                    PluginWarning,
                    stacklevel=3,
                )
                continue
            chosen[ep.name] = ep
        self._entries = chosen
        return chosen

    def ids(self) -> list[str]:
        """Registered ids, from metadata alone."""
        return sorted(self._discover())

    # -- resolution -----------------------------------------------------------------------------
    def _load(self, name: str) -> tuple[T, Provenance] | None:
        if name in self._loaded:
            return self._loaded[name]
        if name in self._failed:
            return None
        ep = self._discover()[name]
        dist, version = _dist_of(ep)
        try:
            obj = self._check(ep.load())
            obj_id = self._id_of(obj)
            if obj_id != name:
                raise TypeError(f"its entry point is named {name!r} but the object's id is {obj_id!r}")
        except Exception as exc:  # noqa: BLE001 - any plugin failure is reported, never fatal
            self._failed.add(name)
            fix = (
                "this is a bug in srdistill itself; please report it"
                if dist.lower() == OWN_DISTRIBUTION
                else f"fix or uninstall {dist}, or set {DISABLE_ENV}={dist} to skip it"
            )
            warnings.warn(
                f"{self.kind} plugin {name!r} from distribution {dist!r} {version} skipped: "
                f"{type(exc).__name__}: {exc} ({fix})",
                PluginWarning,
                stacklevel=3,
            )
            return None
        loaded = (obj, Provenance(dist, version, ep.value))
        self._loaded[name] = loaded
        return loaded

    def get(self, name: str) -> T:
        """Import and return one entry; unknown ids raise a PluginError listing the known ones."""
        if name not in self._discover():
            raise PluginError(
                f"unknown {self.kind} {name!r}; known: {', '.join(self.ids()) or 'none'} "
                f"({self.list_hint}, or install a plugin that provides it)"
            )
        loaded = self._load(name)
        if loaded is None:
            raise PluginError(f"{self.kind} {name!r} is registered but its plugin failed to import (see the warning above)")
        return loaded[0]

    def provenance(self, name: str) -> Provenance:
        self.get(name)
        return self._loaded[name][1]

    def load_all(self) -> dict[str, T]:
        """Import every entry; broken ones are skipped with a warning."""
        out = {}
        for name in self.ids():
            loaded = self._load(name)
            if loaded is not None:
                out[name] = loaded[0]
        return out

    def refresh(self) -> None:
        """Forget everything (after installing a plugin in the same process; used by tests)."""
        self._loaded.clear()
        self._failed.clear()
        self._entries = None
