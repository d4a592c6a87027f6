"""Write files so that a reader never sees half of one, and nothing is clobbered by accident."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import OutputExistsError, SrdistillError, param


def check_writable(path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Fail early (before any work) if ``path`` exists without ``overwrite`` or cannot be created."""
    path = Path(path)
    if path.is_dir():
        raise OutputExistsError(f"{path} is a directory; give a file name for the output")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} already exists; pass {param('overwrite', True)} to replace it")
    parent = path.parent if str(path.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise SrdistillError(f"cannot write {path}: {parent} is a file, not a folder")
    return path


@contextmanager
def atomic_write(path: str | os.PathLike, *, overwrite: bool = False, make_parents: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success fsync it and rename it into place.

    On any exception the temporary file is removed and ``path`` is untouched.
    """
    path = check_writable(path, overwrite=overwrite)
    parent = path.parent if str(path.parent) else Path(".")
    try:
        if make_parents:
            parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    except OSError as exc:
        raise SrdistillError(f"cannot write {path}: {exc.strerror or exc} (choose another output folder)") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        if path.exists() and not overwrite:
            raise OutputExistsError(f"{path} appeared while writing; pass {param('overwrite', True)} to replace it")
        os.replace(tmp, path)
        _fsync_dir(parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _fsync_dir(folder: Path) -> None:
    # The rename is only durable once the directory entry is on disk (no-op where unsupported).
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
