"""Named, expected failures.

Every message says what went wrong *and* how to fix it, in one line. The CLI prints the message
alone (no traceback) and exits with ``exit_code``.

A message names the library's parameters, not a command's flags: write ``param("teacher_cache")``
where the parameter's name belongs. ``str(error)`` shows the name (``teacher_cache``), which is what
a Python caller passed; the CLI renders the same message with the flag the user typed
(``--teacher-cache``) through :meth:`SrdistillError.render`. ``param("device", "cpu")`` names a
setting a fix asks for: ``device='cpu'`` for Python, ``--device cpu`` on a command line.

Notes and warnings are plain text, so they are spelled when made: :func:`spell` renders a message
for whoever runs the code, by the flags a command line installs with :func:`spelling`.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

# Brackets a parameter name (and the repr of a value) inside a message; a control character, so it
# never occurs in paths or values that messages quote.
_MARK = "\x1f"
_PARAM = re.compile(f"{_MARK}([A-Za-z_][A-Za-z0-9_]*)(?:=([^{_MARK}]*))?{_MARK}")
_NO_VALUE = object()

# The flags (parameter name -> flag) of the command running now; empty for Python callers.
_SPELLING: ContextVar[Mapping[str, str]] = ContextVar("srdistill_param_spelling", default={})


def param(name: str, value: object = _NO_VALUE) -> str:
    """A parameter's name inside a message, or with ``value`` the setting a fix asks for (see the
    module doc). Values are literals: str, int, float, bool."""
    if value is _NO_VALUE:
        return f"{_MARK}{name}{_MARK}"
    return f"{_MARK}{name}={value!r}{_MARK}"


def _spell_one(match: re.Match, flags: Mapping[str, str]) -> str:
    name, value = match[1], match[2]
    if value is None:
        return flags.get(name, name)
    if f"{name}={value}" in flags:  # a setting a command spells its own way, e.g. --no-resize
        return flags[f"{name}={value}"]
    literal = ast.literal_eval(value)
    if name not in flags or literal is False:
        return f"{name}={value}"
    return flags[name] if literal is True else f"{flags[name]} {literal}"


def render_params(template: str, flags: Mapping[str, str] | None = None) -> str:
    """``template`` with each parameter spelled by ``flags``, else by the running command's, else by its name."""
    flags = _SPELLING.get() if flags is None else flags
    return _PARAM.sub(lambda m: _spell_one(m, flags), template)


def spell(template: str) -> str:
    """A note or warning written with :func:`param`, as plain text for whoever runs the code."""
    return render_params(template)


@contextmanager
def spelling(flags: Mapping[str, str]) -> Iterator[None]:
    """Within this block messages spell parameters by ``flags`` (a command line's; see the module doc)."""
    token = _SPELLING.set(dict(flags))
    try:
        yield
    finally:
        _SPELLING.reset(token)


class SrdistillError(Exception):
    """Base class for every expected failure srdistill reports to a user."""

    exit_code = 1

    @property
    def template(self) -> str:
        """The message with its parameter marks, for wrapping it in another error's message."""
        return str(self.args[0]) if self.args else ""

    @property
    def params(self) -> tuple[str, ...]:
        """The parameters the message names, in order."""
        return tuple(dict.fromkeys(m[1] for m in _PARAM.finditer(self.template)))

    def render(self, flags: Mapping[str, str] | None = None) -> str:
        """The message with each parameter spelled by ``flags`` (name -> flag), else as :func:`spell` does."""
        return render_params(self.template, flags)

    def __str__(self) -> str:
        return self.render()


class UsageError(SrdistillError):
    """The command line or an option value is wrong."""

    exit_code = 2


class ModelFileError(SrdistillError):
    """A model file is missing, unreadable, unsafe or malformed."""


class UnsafeFileError(ModelFileError):
    """A file would need to run code (pickle globals, TorchScript) to load; refused."""


class UnknownArchitectureError(ModelFileError):
    """No registered architecture recognises a state dict."""


class ShapeMismatchError(ModelFileError):
    """A state dict does not agree with the architecture it was detected as."""


class MetadataConflictError(ModelFileError):
    """The file's srdistill metadata disagrees with its tensors."""


class OutputExistsError(SrdistillError):
    """Refusing to overwrite an existing file without ``overwrite=True`` / ``--overwrite``."""


class PluginError(SrdistillError):
    """An architecture or method id is unknown, or a plugin is broken."""


class ImageError(SrdistillError):
    """An image file cannot be read or written safely."""


class DataError(SrdistillError):
    """A dataset folder is missing, empty or unusable."""


class ExportError(SrdistillError):
    """A model cannot be exported (an operation ONNX lacks) or the exported graph disagrees with it."""


class Interrupted(SrdistillError):
    """Work stopped by a signal after state was saved.

    ``run_dir`` and ``step`` say where the work can continue; the message ends with how to resume
    from Python, and a command line prints its own command instead (:meth:`resume_hint`).
    """

    def __init__(self, message: str, exit_code: int = 130, *, run_dir: str | Path | None = None, step: int | None = None):
        super().__init__(message)
        self.exit_code = exit_code
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.step = step

    def resume_hint(self, command: str | None = None) -> str:
        """How to continue: ``srdistill COMMAND --run-dir ... --resume auto``, or the Python arguments."""
        if self.run_dir is None:
            return ""
        if command:
            import shlex

            return f"resume with: srdistill {command} --run-dir {shlex.quote(str(self.run_dir))} --resume auto"
        return f"resume with run_dir={str(self.run_dir)!r}, resume='auto'"

    def render(self, flags: Mapping[str, str] | None = None, command: str | None = None) -> str:
        hint = self.resume_hint(command)
        return super().render(flags) + (f"; {hint}" if hint else "")
