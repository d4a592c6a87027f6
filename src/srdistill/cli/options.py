"""Parsing helpers shared by commands."""

from __future__ import annotations

from ..errors import UsageError

# `--loader` on every command that reads a model file (srdistill.archs.loaders explains the choice).
LOADER_HELP = (
    "Which side may claim a model file: auto (built-in architectures first, then plugins), builtin, "
    "or a plugin distribution, e.g. spandrel for srdistill-spandrel."
)


def parse_opts(items: list[str]) -> dict[str, str]:
    """``["res_scale=0.1"]`` -> ``{"res_scale": "0.1"}``; typing happens against the arch spec."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"option {item!r} must look like key=value (e.g. res_scale=0.1)")
        out[key.strip()] = value.strip()
    return out
