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


def _flag_of(default: Any) -> str | None:
    decls = [d.split("/")[0] for d in getattr(default, "param_decls", None) or () if d.startswith("--")]
    return max(decls, key=len) if decls else None


def param_flags(fn: Callable) -> dict[str, str]:
    """Library parameter name -> this command's flag: each typer option's own parameter name, plus
    the names the command declares with :func:`flags_for` where the library calls it otherwise."""
    import inspect

    flags = {name: flag for name, p in inspect.signature(fn).parameters.items() if (flag := _flag_of(p.default))}
    flags.update(getattr(fn, "__param_flags__", {}))
    return flags


def flags_for(**aliases: str) -> Callable[[Callable], Callable]:
    """Declare flags for library parameters that a command's option names differently:
    ``@flags_for(method_options="--method-opt")``."""

    def mark(fn: Callable) -> Callable:
        fn.__param_flags__ = {**getattr(fn, "__param_flags__", {}), **aliases}
        return fn

    return mark


def _model_loader(loader: str | None):
    """A command's ``--loader`` holds for every model file it reads, however deep in the library
    the file is loaded (distill's teacher, eval's models); ``auto`` needs no import at all."""
    import contextlib

    if loader is None or loader == "auto":
        return contextlib.nullcontext()
    from ..archs.loaders import loader_choice

    return loader_choice(loader)


def command(fn: Callable) -> Callable:
    """Wrap a command: expected errors become one red line and an exit code, never a traceback;
    the parameters library messages (errors, notes, warnings) name are spelled as this command's flags."""
    from ..errors import SrdistillError, spelling

    flags = param_flags(fn)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            with spelling(flags), _model_loader(kwargs.get("loader")):
                return fn(*args, **kwargs)
        except SrdistillError as exc:
            if state.debug:
                raise
            err_console.print(f"[red]error:[/red] {escape(exc.render(flags))}", highlight=False, soft_wrap=True)
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
