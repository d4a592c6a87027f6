"""What a model file records about where it came from, in a form fit to share.

A model file travels: it goes into a package, a model hub, a colleague's machine. So its metadata
names inputs by what identifies them anywhere, never by where they lay on the machine that made
it: a data folder by its name, image count and a content hash; a model file by its name and
SHA-256. Absolute paths stay in the run folder (``config.toml``, ``distill.json``), which is where
a run is resumed from and which does not leave the user's machine.

    folder_fingerprint(root, files)                   # {"name", "files", "sha256"}
    portable_config(config.stored())                  # paths reduced to their last component
    local_paths(metadata)                             # [] for a file fit to share
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from .errors import SrdistillError

# TrainConfig keys that hold a path on the machine that ran the training.
PATH_KEYS = ("data", "val_data", "init", "output", "run_dir")

_CHUNK = 1 << 20


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def folder_fingerprint(root: str | Path, files: Iterable[str | Path]) -> dict[str, Any]:
    """``{"name", "files", "sha256"}`` of ``files`` under ``root``.

    The hash covers each file's path relative to ``root`` (``/``-separated, sorted), its size and
    its bytes, so renaming, adding, removing or editing a file changes it while the folder's own
    location does not. Streaming SHA-256 reads about 1 GB/s: seconds even for DIV2K.
    """
    root = Path(root)
    relative = sorted({_relative(Path(f), root) for f in files})
    h = hashlib.sha256()
    for name in relative:
        path = root / name
        encoded = name.encode("utf-8")
        h.update(len(encoded).to_bytes(8, "little") + encoded + path.stat().st_size.to_bytes(8, "little"))
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(_CHUNK), b""):
                h.update(chunk)
    return {"name": root.name, "files": len(relative), "sha256": h.hexdigest()}


def _relative(path: Path, root: Path) -> str:
    """``path`` relative to ``root``; a sibling folder's file (DIV2K's LR beside its HR) as ``../``."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return "../" + path.relative_to(root.parent).as_posix()


def dataset_fingerprint(root: str | Path, pairs: Iterable[Any]) -> dict[str, Any]:
    """``{"name", "images", "sha256"}`` of the image pairs (:class:`~srdistill.data.folders.ImagePair`)
    found in the dataset folder ``root``: HR and LR files alike."""
    pairs = list(pairs)
    files = [p.hr for p in pairs] + [p.lr for p in pairs if p.lr is not None]
    out = folder_fingerprint(root, files)
    return {"name": out["name"], "images": len(pairs), "sha256": out["sha256"]}


def lr_source(root: str | Path, lr_dir: str | Path | None) -> str:
    """Where a dataset's LR images come from, relative to the dataset folder (``LR_bicubic/X4``)."""
    if lr_dir is None:
        return "generated (MATLAB bicubic)"
    root, lr_dir = Path(root), Path(lr_dir)
    try:
        return _relative(lr_dir, root)
    except ValueError:
        return lr_dir.name


def file_reference(path: str | Path | None, bundled: str | None = None) -> dict[str, Any] | None:
    """``{"file": NAME, "sha256": ...}`` of a model file (plus its bundled name, if it is one)."""
    if path is None:
        return None
    path = Path(path)
    out: dict[str, Any] = {"file": path.name, "sha256": file_sha256(path) if path.is_file() else None}
    if bundled:
        out["bundled"] = bundled
    return out


def model_file_reference(ref: str | Path) -> dict[str, Any]:
    """:func:`file_reference` of what a model argument names: a file, else a bundled model."""
    from .bundled import bundled_name, resolve_model_ref

    try:
        path = resolve_model_ref(ref)
    except SrdistillError:
        return {"file": path_name(str(ref)), "sha256": None}
    return file_reference(path, bundled_name(path)) or {}


def path_name(value: Any) -> Any:
    """The last component of a path-like string (POSIX or Windows); other values unchanged."""
    if not isinstance(value, str) or not value:
        return value
    name = PureWindowsPath(value).name if _WINDOWS_ABS.match(value) else PurePosixPath(value.replace("\\", "/")).name
    return name or value.rstrip("/\\")


def portable_config(stored: Mapping[str, Any]) -> dict[str, Any]:
    """A training configuration with every path reduced to its folder or file name."""
    out = dict(stored)
    for key in PATH_KEYS:
        if key in out:
            out[key] = path_name(out[key])
    return out


def portable_provenance(
    provenance: Mapping[str, Any],
    *,
    datasets: Mapping[str, Mapping[str, Any]] | None = None,
    files: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """An older file's provenance (which recorded paths) in the form new files are written in.

    ``datasets`` maps a folder name to its :func:`dataset_fingerprint` and ``files`` a file name
    to its :func:`file_reference`, for the inputs still at hand; the others keep their name with
    ``sha256: null`` (better unknown than a path). Raises ValueError if a path would remain.
    """
    datasets, files = datasets or {}, files or {}
    out = copy.deepcopy(dict(provenance))
    config = out.get("config")
    if isinstance(config, Mapping):
        if config.get("val_data") and "validation_data" not in out.get("data", {}):
            name = path_name(config["val_data"])
            out.setdefault("data", {})["validation_data"] = dict(datasets.get(name) or {"name": name, "sha256": None})
        if config.get("init") and "init" not in out:
            name = path_name(config["init"])
            out["init"] = dict(files.get(name) or {"file": name, "sha256": None})
        out["config"] = portable_config(config)
    data = out.get("data")
    if isinstance(data, dict):
        if isinstance(data.get("data"), str):
            name = path_name(data["data"])
            data["data"] = dict(datasets.get(name) or {"name": name, "images": data.get("images"), "sha256": None})
        if isinstance(data.get("lr_source"), str) and local_paths(data["lr_source"]):
            data["lr_source"] = path_name(data["lr_source"])
    init = out.get("student_init")
    if isinstance(init, str) and init != "random":
        out["student_init"] = dict(files.get(path_name(init)) or {"file": path_name(init), "sha256": None})
    left = local_paths(out)
    if left:
        raise ValueError(f"local paths remain in the provenance: {left[:3]}")
    return out


# -- finding local paths ---------------------------------------------------------------------------
# An absolute POSIX path with at least one directory ("/work/x", not "/" or the "0-1" in
# value_range), a home-relative one, or a Windows drive / UNC path.
_POSIX_ABS = re.compile(r"(?:^|[\s\"'=(:,])(/[^/\s\"',]+/[^\s\"',]*)")
_HOME = re.compile(r"(?:^|[\s\"'=(:,])(~[\w.-]*/[^\s\"',]*)")
_WINDOWS_ABS = re.compile(r"^(?:[A-Za-z]:[\\/]|\\\\)")
_WINDOWS_ANY = re.compile(r"(?:^|[\s\"'=(:,])((?:[A-Za-z]:[\\/]|\\\\[^\\\s]+\\)[^\s\"',]*)")


def local_paths(value: Any, where: str = "") -> list[tuple[str, str]]:
    """Every ``(key.path, text)`` in a (nested) metadata value that names a place on a machine:
    an absolute POSIX path with a directory, ``~/...``, ``C:\\...`` or a UNC path."""
    found: list[tuple[str, str]] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            found += local_paths(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found += local_paths(item, f"{where}[{i}]")
    elif isinstance(value, str):
        for pattern in (_POSIX_ABS, _HOME, _WINDOWS_ANY):
            found += [(where, m.group(1)) for m in pattern.finditer(value)]
    return found


__all__ = [
    "PATH_KEYS",
    "dataset_fingerprint",
    "file_reference",
    "file_sha256",
    "folder_fingerprint",
    "local_paths",
    "model_file_reference",
    "lr_source",
    "path_name",
    "portable_config",
    "portable_provenance",
]
