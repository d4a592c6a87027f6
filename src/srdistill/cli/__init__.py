"""The ``srdistill`` command line: one module per command, each a thin layer over the library.

Expected failures (``SrdistillError``) become one line on stderr and an exit code
(2 usage, 1 failure, 130/143 interrupted); tracebacks only with ``--debug``.
"""

from __future__ import annotations

import warnings

import typer

from . import archs, convert, distill, inspect, train
from . import compare, upscale
from . import eval as eval_cmd
from ._console import command, err_console, set_debug

app = typer.Typer(
    name="srdistill",
    help="Distil large super-resolution models into small fast ones (MiPKD), and run them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    # Plugin and library warnings: one readable line, not a source excerpt.
    from rich.markup import escape

    err_console.print(f"[yellow]warning:[/yellow] {escape(str(message))}", highlight=False, soft_wrap=True)


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for errors.")) -> None:
    set_debug(debug)
    warnings.showwarning = _show_warning


app.command("archs")(command(archs.archs))
app.command("inspect")(command(inspect.inspect))
app.command("convert")(command(convert.convert))
app.command("distill")(command(distill.distill))
app.command("train")(command(train.train))
app.command("upscale")(command(upscale.upscale))
app.command("eval")(command(eval_cmd.eval_command))
app.command("compare")(command(compare.compare))


def run() -> None:
    """Console-script entry point."""
    app(prog_name="srdistill")
