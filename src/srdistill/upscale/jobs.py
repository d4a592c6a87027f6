"""Many files: find the inputs, name the outputs, check every location, then upscale one by one.

    upscale_paths(model, ["photos/"], output="out/", scale=4, keep_going=True)

Inputs are files, folders (``recursive``) and glob patterns; outputs go next to the inputs
(``NAME_x{s}.EXT``), to one named file, or into a folder that keeps the inputs' sub-folders.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..data.folders import IMAGE_SUFFIXES
from ..data.imageio import DEFAULT_MAX_PIXELS, WRITABLE_SUFFIXES
from ..errors import ImageError, OutputExistsError, SrdistillError, UsageError, param, spell
from ..models import SRModel
from .files import DEFAULT_MAX_OUTPUT_PIXELS, upscale_file
from .progress import ImageResult
from .upscaler import Upscaler


@dataclass(frozen=True)
class Job:
    source: Path
    output: Path
    name: str  # the source relative to what the user named (for messages and tables)


def _is_glob(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def _glob_base(pattern: str) -> Path:
    parts = Path(pattern).parts
    fixed = []
    for part in parts:
        if _is_glob(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def _images_under(folder: Path, recursive: bool) -> list[Path]:
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(
        p for p in found
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def collect_inputs(inputs: Sequence[str | Path], *, recursive: bool = False) -> list[tuple[Path, Path]]:
    """``(file, path relative to its input root)`` for files, folders and glob patterns, in order."""
    found: list[tuple[Path, Path]] = []
    for entry in inputs:
        text = str(entry)
        path = Path(text).expanduser()
        if path.is_dir():
            images = _images_under(path, recursive)
            if not images:
                hint = "" if recursive else f" (pass {param('recursive', True)} to search sub-folders)"
                raise UsageError(f"folder {path} holds no images (.png, .jpg, .webp, .bmp, .tif){hint}")
            found += [(p, p.relative_to(path)) for p in images]
        elif path.exists():
            found.append((path, Path(path.name)))
        elif _is_glob(text):
            base = _glob_base(text)
            matches = sorted(Path(p) for p in glob.glob(os.path.expanduser(text), recursive=recursive) if Path(p).is_file())
            if not matches:
                raise UsageError(f"no files match {text!r}")
            found += [(p, p.relative_to(base) if p.is_relative_to(base) else Path(p.name)) for p in matches]
        else:
            raise UsageError(f"input {text} does not exist (give image files, folders or quoted glob patterns)")
    return found


def _normalise_ext(ext: str | None) -> str | None:
    if ext is None:
        return None
    ext = ext if ext.startswith(".") else "." + ext
    if ext.lower() not in WRITABLE_SUFFIXES:
        raise UsageError(f"{param('ext')} {ext} is not a format srdistill writes; use one of {', '.join(WRITABLE_SUFFIXES)}")
    return ext


def plan_jobs(
    inputs: Sequence[str | Path],
    output: str | Path | None,
    *,
    scale: int,
    recursive: bool = False,
    suffix: str | None = None,
    ext: str | None = None,
) -> list[Job]:
    """Where each input goes.

    No ``output``: next to the input as ``NAME_x{s}.EXT``. One input file and an ``output`` with an
    image extension (not an existing folder): exactly that file. Otherwise ``output`` is a folder
    and the inputs keep their sub-folder structure under it (suffix empty unless given).
    """
    ext = _normalise_ext(ext)
    sources = collect_inputs(inputs, recursive=recursive)
    single_file = len(inputs) == 1 and Path(str(inputs[0])).expanduser().is_file()
    out = Path(output).expanduser() if output is not None else None
    jobs = []
    for source, rel in sources:
        own_ext = source.suffix if source.suffix.lower() in WRITABLE_SUFFIXES else ".png"
        if out is not None and single_file and not out.is_dir() and out.suffix.lower() in WRITABLE_SUFFIXES:
            target = out
        elif out is None:
            target = source.with_name(f"{source.stem}{f'_x{scale}' if suffix is None else suffix}{ext or own_ext}")
        else:
            target = out / rel.parent / f"{rel.stem}{suffix or ''}{ext or own_ext}"
        jobs.append(Job(source, target, str(rel)))
    seen: dict[Path, Path] = {}
    for job in jobs:
        key = job.output.resolve()
        if key == job.source.resolve():
            raise UsageError(f"{job.source} would be overwritten by its own output; give {param('output')} another folder or a {param('suffix')}")
        if key in seen:
            raise UsageError(f"{seen[key]} and {job.source} would both be written to {job.output}; use {param('suffix')} or keep their extensions")
        seen[key] = job.source
    return jobs


def check_output_location(path: Path) -> None:
    """Fail before any work if ``path`` cannot be created (a file in the way, no write permission)."""
    parent = path.parent
    while not parent.exists():
        if parent == parent.parent:
            break
        parent = parent.parent
    if not parent.is_dir():
        raise ImageError(f"cannot write {path}: {parent} is a file, not a folder; choose another output")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ImageError(f"cannot write {path}: no permission to write in {parent}; choose another output folder")


def upscale_paths(
    model: SRModel,
    inputs: Sequence[str | Path],
    output: str | Path | None = None,
    *,
    recursive: bool = False,
    suffix: str | None = None,
    ext: str | None = None,
    skip_existing: bool = False,
    overwrite: bool = False,
    keep_going: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_output_pixels: int = DEFAULT_MAX_OUTPUT_PIXELS,
    **options,
) -> list[ImageResult]:
    """Upscale files, folders and globs; one :class:`ImageResult` per input.

    ``options`` are :class:`Upscaler`'s (``scale``, ``tile``, ``tile_pad``, ``device``, ``dtype``,
    ``tta``, ``allow_resize``, ``threads``, ``progress``). Every output location is checked before
    any image is processed. Without ``keep_going`` the first failure raises (outputs already
    written are complete files); with it, failures are recorded (``status="failed"``) and the rest
    continue.
    """
    upscaler = Upscaler(model, **options)
    progress = upscaler.progress
    if upscaler.scale != model.scale:
        progress.note(spell(f"model is x{model.scale}, {param('scale')} {upscaler.scale} asked: the model's output is resized "
                            f"with MATLAB bicubic ({param('allow_resize', False)} refuses instead)"))
    jobs = plan_jobs(inputs, output, scale=upscaler.scale, recursive=recursive, suffix=suffix, ext=ext)
    results: dict[int, ImageResult] = {}

    def fail(i: int, job: Job, exc: SrdistillError) -> None:
        if not keep_going:
            raise exc
        results[i] = ImageResult(str(job.source), str(job.output), (0, 0), (0, 0), 0.0, 0, "failed", str(exc))
        progress.image_failed(job.name, str(exc))

    for i, job in enumerate(jobs):  # validate before any side effect
        try:
            if job.output.exists():
                if skip_existing:
                    results[i] = ImageResult(str(job.source), str(job.output), (0, 0), (0, 0), 0.0, 0, "skipped", "output exists")
                    continue
                if not overwrite:
                    raise OutputExistsError(f"{job.output} already exists; pass {param('overwrite', True)} to replace it (or {param('skip_existing', True)})")
            check_output_location(job.output)
        except SrdistillError as exc:
            fail(i, job, exc)
    for i, job in enumerate(jobs):
        if i in results:
            continue
        try:
            job.output.parent.mkdir(parents=True, exist_ok=True)
            results[i] = upscale_file(upscaler, job.source, job.output, overwrite=overwrite, max_pixels=max_pixels,
                                      max_output_pixels=max_output_pixels, index=i, total=len(jobs), name=job.name)
        except OSError as exc:
            fail(i, job, ImageError(f"cannot write {job.output}: {exc.strerror or exc}"))
        except SrdistillError as exc:
            fail(i, job, exc)
    return [results[i] for i in range(len(jobs))]


__all__ = ["Job", "check_output_location", "collect_inputs", "plan_jobs", "upscale_paths"]
