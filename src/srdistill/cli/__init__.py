"""The ``srdistill`` command line: one module per command, each a thin layer over the library.

Expected failures (``SrdistillError``) become one line on stderr and an exit code
(2 usage, 1 failure, 130/143 interrupted); tracebacks only with ``--debug``.
"""

from __future__ import annotations

import warnings

import typer
from typer.core import TyperCommand, TyperGroup

from ._console import command, err_console, set_debug

# name -> (module, function, the line `srdistill --help` lists). Each command module is imported
# only when its command runs or shows its help: the library behind it imports torch (seconds).
COMMANDS = {
    "archs": ("archs", "archs", "List architectures (built-in and plugins), their presets, sizes and scales, and the bundled models."),
    "inspect": ("inspect", "inspect", "Detect a model file's architecture, scale and hyperparameters."),
    "convert": ("convert", "convert", "Convert a checkpoint to a srdistill safetensors file (metadata included)."),
    "export": ("export", "export", "Export a model to ONNX (dynamic sizes, metadata), checked against PyTorch with ONNX Runtime."),
    "distill": ("distill", "distill", "Distil a teacher model into a small student (logits-KD by default; mipkd is the MiPKD paper's method)."),
    "train": ("train", "train", "Train a super-resolution model from scratch (checkpointed, resumable, torchrun-ready)."),
    "upscale": ("upscale", "upscale", "Upscale images with a super-resolution model (tiled, any size)."),
    "eval": ("eval", "eval_command", "Evaluate models (and/or the bicubic baseline) on benchmark sets: PSNR/SSIM-Y, params, GFLOPs, time."),
    "compare": ("compare", "compare", "Write a PNG comparing bicubic | each model | HR on chosen crops, labelled with PSNR."),
}
_CONTEXT = {"help_option_names": ["-h", "--help"]}

class _FlagsShownAsFlags:
    """Typer's help shows a type column (``<bool>``) even for switches such as ``--json`` or
    ``--help``, which reads as if they took a value; a flag's column is left empty instead."""

    def get_params(self, ctx):
        params = super().get_params(ctx)
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        return params


class _Command(_FlagsShownAsFlags, TyperCommand):
    pass


def load_command(name: str) -> TyperCommand:
    """The full command ``name`` (imports its module)."""
    import importlib

    module, function, _ = COMMANDS[name]
    fn = getattr(importlib.import_module(f".{module}", __name__), function)
    single = typer.Typer(add_completion=False, pretty_exceptions_enable=False, context_settings=_CONTEXT)
    single.command(name, cls=_Command)(command(fn))
    return typer.main.get_command(single)


class _Group(_FlagsShownAsFlags, TyperGroup):
    """The commands of COMMANDS, each built when asked for; the list in ``--help`` needs only
    their names and one-line help."""

    _listing = False

    def list_commands(self, ctx) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx, name: str):
        if name not in COMMANDS:
            return None
        if self._listing:
            return _Command(name, help=COMMANDS[name][2], callback=None)
        if name not in self.commands:
            self.commands[name] = load_command(name)
        return self.commands[name]

    def format_help(self, ctx, formatter) -> None:
        self._listing = True
        try:
            return super().format_help(ctx, formatter)
        finally:
            self._listing = False


app = typer.Typer(
    name="srdistill",
    cls=_Group,
    help="Distil large super-resolution models into small fast ones (MiPKD), and run them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings=_CONTEXT,
)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    # Plugin and library warnings: one readable line, not a source excerpt.
    from rich.markup import escape

    err_console.print(f"[yellow]warning:[/yellow] {escape(str(message))}", highlight=False, soft_wrap=True)


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for errors.")) -> None:
    set_debug(debug)
    warnings.showwarning = _show_warning


def run() -> None:
    """Console-script entry point."""
    app(prog_name="srdistill")
