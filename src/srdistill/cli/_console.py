"""Shared console objects and output helpers for the commands."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import typer

from rich.console import Console
from rich.markup import escape

console = Console()
err_console = Console(stderr=True)


@dataclass
class _State:
    debug: bool = False


state = _State()


def set_debug(value: bool) -> None:
    state.debug = value


def command(fn: Callable) -> Callable:
    """Wrap a command: expected errors become one red line and an exit code, never a traceback."""
    from ..errors import SrdistillError

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except SrdistillError as exc:
            if state.debug:
                raise
            err_console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            if state.debug:
                raise
            err_console.print("[red]interrupted[/red]")
            raise typer.Exit(130) from None

    return wrapper


def print_json(data: Any) -> None:
    """Machine-readable output: plain JSON on stdout, nothing else."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def safe(text: Any) -> str:
    """Escape text that came from a file before Rich renders it (no markup injection)."""
    return escape(str(text))


def fmt_params(n: int) -> str:
    if n >= 1e6:
        return f"{n / 1e6:.2f} M"
    if n >= 1e3:
        return f"{n / 1e3:.1f} K"
    return str(n)
