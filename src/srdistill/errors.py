"""Named, expected failures.

Every message says what went wrong *and* how to fix it, in one line. The CLI prints the message
alone (no traceback) and exits with ``exit_code``.
"""

from __future__ import annotations


class SrdistillError(Exception):
    """Base class for every expected failure srdistill reports to a user."""

    exit_code = 1


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


class Interrupted(SrdistillError):
    """Work stopped by a signal after state was saved."""

    def __init__(self, message: str, exit_code: int = 130):
        super().__init__(message)
        self.exit_code = exit_code
