"""Typed hyperparameters: parse ``key=value`` overrides and restore types from JSON metadata.

The type of each hyperparameter is the type of its default in the arch spec, so configuration
stays data (strings from the CLI or TOML, JSON from file metadata) and a typo fails loudly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import UsageError


def _coerce(arch_id: str, key: str, value: Any, default: Any) -> Any:
    kind = type(default)
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                low = value.strip().lower()
                if low in {"1", "true", "yes", "on"}:
                    return True
                if low in {"0", "false", "no", "off"}:
                    return False
                raise ValueError
            return bool(value)
        if isinstance(default, int):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value) if not isinstance(value, str) else int(value.strip())
        if isinstance(default, float):
            return float(value)
        if isinstance(default, tuple):
            items = value.replace("x", ",").split(",") if isinstance(value, str) else list(value)
            inner = type(default[0]) if default else int
            return tuple(inner(str(v).strip()) if isinstance(v, str) else inner(v) for v in items if str(v).strip())
        if isinstance(default, str):
            return str(value)
    except (TypeError, ValueError):
        example = ",".join(map(str, default)) if isinstance(default, tuple) else default
        raise UsageError(
            f"bad value for {arch_id} option {key}: {value!r} is not {_kind_name(kind)} (e.g. {key}={example})"
        ) from None
    return value


def _kind_name(kind: type) -> str:
    return {bool: "true/false", int: "an integer", float: "a number", tuple: "a comma-separated list", str: "text"}.get(
        kind, kind.__name__
    )


def coerce_hparams(arch_id: str, defaults: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """Give every value the type of its default; unknown keys are a UsageError."""
    out = {}
    for key, value in values.items():
        if key not in defaults:
            raise UsageError(f"{arch_id} has no option {key!r}; known: {', '.join(sorted(defaults))}")
        out[key] = _coerce(arch_id, key, value, defaults[key])
    return out
