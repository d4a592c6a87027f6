"""Upscale images with a super-resolution model: tensors, files and folders.

    from srdistill.upscale import upscale_paths, upscale_tensor

    model = srdistill.load_model("edsr_x4.safetensors")
    sr = upscale_tensor(model, lr)                          # C x H x W in [0, 1] -> C x 4H x 4W
    upscale_paths(model, ["photos/"], output="out/", scale=4, keep_going=True)

Channels: RGB goes through the network; grayscale is replicated to RGB and the output averaged
back to one channel; alpha (RGBA, LA) goes through the network as a second batch item (alpha
replicated to three channels, the mean taken back) so edges stay as sharp as the colour. Straight
(un-premultiplied) alpha hides arbitrary colours under transparent pixels -- usually black -- which
the network would smear into the visible edge as a dark fringe; so before upscaling, transparent
pixels get the colour of their nearest visible neighbours ("bleeding", an alpha-weighted pyramid
fill). Fully opaque alpha is not run through the network (it stays exactly 1).

Scale: the network's own scale, or another one reached by running the network and then the
MATLAB-compatible bicubic resize (``allow_resize``), like Real-ESRGAN's ``--outscale``.
Progress is reported through :class:`UpscaleProgress`; nothing here prints.
"""

from __future__ import annotations

import ctypes
import glob
import importlib.resources
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .data.folders import IMAGE_SUFFIXES
from .data.imageio import DEFAULT_MAX_PIXELS, read_image, write_image
from .data.resize import imresize
from .errors import ImageError, ModelFileError, OutputExistsError, SrdistillError, UsageError
from .models import SRModel, build_model, load_model
from .registry import find_preset
from .tiling import (
    BAND_BUDGET,
    DEFAULT_TILE_PAD,
    MIN_TILE,
    TilePlan,
    Runner,
    TileOutOfMemory,
    auto_tile,
    choose_device,
    choose_dtype,
    parse_dtype,
    plan_tiles,
    run_tiled,
)


class UpscaleProgress:
    """Callbacks the library calls while it works; subclass and override what you need."""

    def image_started(self, name: str, index: int, total: int, tiles: int) -> None:
        pass

    def tile_done(self) -> None:
        pass

    def image_done(self, result: ImageResult) -> None:
        pass

    def image_failed(self, name: str, message: str) -> None:
        pass

    def note(self, message: str) -> None:
        pass


@dataclass
class ImageResult:
    source: str
    output: str | None
    size_in: tuple[int, int]  # (width, height)
    size_out: tuple[int, int]
    seconds: float
    tiles: int = 1
    status: str = "ok"  # ok | skipped | failed
    message: str = ""
    notes: list[str] = field(default_factory=list)


# -- channels --------------------------------------------------------------------------------------
def bleed_transparent(color: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Give fully transparent pixels the colour of the nearest visible ones (C x H x W, 1 x H x W).

    An alpha-weighted image pyramid: each level averages 2x2 blocks of colour*alpha and alpha;
    going back up, a pixel without any visible colour takes its parent's. Visible pixels
    (alpha > 0) keep their own colour exactly.
    """
    visible = alpha > 0
    if bool(visible.all()) or not bool(visible.any()):
        return color
    levels = [(color * alpha, alpha)]
    while min(levels[-1][1].shape[-2:]) > 1:
        c, a = levels[-1]
        levels.append((F.avg_pool2d(c[None], 2, ceil_mode=True)[0], F.avg_pool2d(a[None], 2, ceil_mode=True)[0]))
    filled = None
    for c, a in reversed(levels):
        own = c / a.clamp_min(1e-12)
        if filled is None:
            filled = own
        else:
            up = F.interpolate(filled[None], size=c.shape[-2:], mode="nearest")[0]
            filled = torch.where(a > 0, own, up)
    return torch.where(visible, color, filled)


@dataclass(frozen=True)
class _Channels:
    color: int  # 1 or 3
    alpha: bool  # alpha present
    alpha_opaque: bool  # alpha present and exactly 1 everywhere: not run through the network


def _split(img: torch.Tensor) -> tuple[torch.Tensor, _Channels]:
    """C x H x W -> network planes B x 3 x H x W and how to put the output back together."""
    c = img.shape[0]
    if c not in (1, 2, 3, 4):
        raise UsageError(f"images must have 1 (gray), 2 (gray+alpha), 3 (RGB) or 4 (RGBA) channels, got {c}")
    color_n = 3 if c >= 3 else 1
    color = img[:color_n]
    if c in (1, 3):
        return color.expand(3, -1, -1)[None], _Channels(color_n, False, False)
    alpha = img[color_n:]
    if bool((alpha == 1).all()):
        return color.expand(3, -1, -1)[None], _Channels(color_n, True, True)
    color = bleed_transparent(color, alpha)
    return torch.stack([color.expand(3, -1, -1), alpha.expand(3, -1, -1)]), _Channels(color_n, True, False)


def _merge(out: torch.Tensor, kind: _Channels) -> torch.Tensor:
    """B x 3 x h x w network output -> C x h x w image in [0, 1]."""
    color = out[0] if kind.color == 3 else out[0].mean(0, keepdim=True)
    parts = [color]
    if kind.alpha:
        parts.append(torch.ones_like(color[:1]) if kind.alpha_opaque else out[1].mean(0, keepdim=True))
    return torch.cat(parts).clamp_(0, 1)


# -- the upscaler ---------------------------------------------------------------------------------
def _resolve_scale(model: SRModel, scale: int | None, allow_resize: bool) -> int:
    if scale is None:
        return model.scale
    if scale < 1 or int(scale) != scale:
        raise UsageError(f"-s/--scale must be a positive integer, got {scale}")
    scale = int(scale)
    if scale != model.scale and not allow_resize:
        raise UsageError(
            f"model is x{model.scale}, -s {scale} asked; pass a x{scale} model, -s {model.scale}, "
            f"or allow the bicubic resize after the model (drop --no-resize)"
        )
    return scale


class Upscaler:
    """A model prepared once (device, dtype, tile size) and applied to many images."""

    def __init__(
        self,
        model: SRModel,
        *,
        scale: int | None = None,
        tile: int | None = None,
        tile_pad: int | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        tta: bool = False,
        allow_resize: bool = True,
        threads: int | None = None,
        progress: UpscaleProgress | None = None,
    ):
        self.model = model
        self.scale = _resolve_scale(model, scale, allow_resize)
        self.progress = progress or UpscaleProgress()
        self.device = choose_device(device)
        self.dtype = choose_dtype(tuple(model.spec.safe_dtypes), self.device, parse_dtype(dtype))
        multiple = model.spec.pad_multiple(model.hparams, model.scale)
        if threads is not None and threads < 1:
            raise UsageError(f"--threads must be >= 1, got {threads}")
        # threads=None: the count is measured on the first tiles (see tiling.ThreadTuner).
        self.runner = Runner.prepare(model.net, model.scale, multiple, self.device, self.dtype,
                                     int(model.spec.min_size), threads=threads)
        self.tile_pad = DEFAULT_TILE_PAD if tile_pad is None else int(tile_pad)
        self.tta = tta
        self._tile = tile

    @property
    def tile(self) -> int:
        """The tile core size: as given, or the automatic one for a small image."""
        if self._tile is not None:
            return self._tile
        return auto_tile(self.runner, self.tile_pad)

    def tile_for(self, height: int, width: int, channels: int = 3, output_bytes: int = 4) -> int:
        """The tile size for one image: what the memory policy leaves after the image's own buffers."""
        if self._tile is not None:
            return self._tile
        s = self.model.scale
        # Still to come: the output, the accumulation band and the emit temporaries.
        reserved = height * width * channels * s * s * output_bytes + 2 * BAND_BUDGET
        return auto_tile(self.runner, self.tile_pad, reserved)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        return height * self.scale, width * self.scale

    def describe(self) -> str:
        return (f"{self.model.arch} x{self.model.scale} on {self.device.type} ({str(self.dtype).replace('torch.', '')}), "
                f"tile {self.tile} + pad {self.tile_pad}{', TTA x8' if self.tta else ''}")

    def run(
        self,
        img: torch.Tensor,
        sink: Callable[[int, torch.Tensor], None],
        name: str = "",
        *,
        output_bytes: int = 4,
        on_plan: Callable[[TilePlan], None] | None = None,
    ) -> int:
        """Upscale a C x H x W float image at the model's scale, handing finished rows to ``sink``.

        ``output_bytes``: bytes per output value the caller keeps (4 float, 1 or 2 for 8/16-bit
        files), for the memory policy. ``on_plan`` sees the tile grid before work starts. Returns
        the number of tiles. On an out-of-memory tile the tile is halved and the image restarted
        (the sink then receives rows again; they are simply rewritten).
        """
        if img.dim() != 3:
            raise UsageError(f"expected a C x H x W image, got shape {tuple(img.shape)}")
        img = img.detach().to("cpu", torch.float32)
        planes, kind = _split(img)
        channels, height, width = img.shape
        tile = self.tile_for(height, width, channels, output_bytes)
        while True:
            plan = plan_tiles(height, width, tile, self.tile_pad, self.runner.multiple, scale=self.model.scale,
                              band_budget=BAND_BUDGET // planes.shape[0])
            if on_plan is not None:
                on_plan(plan)
            try:
                with torch.inference_mode():
                    run_tiled(
                        self.runner, planes, plan,
                        lambda y0, band: sink(y0, _merge(band, kind)),
                        tta=self.tta, on_tile=self.progress.tile_done,
                    )
                return plan.count
            except TileOutOfMemory:
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                if tile <= max(MIN_TILE, self.runner.multiple):
                    raise SrdistillError(
                        f"{name or 'image'}: out of memory on {self.device} even with {tile}px tiles; "
                        f"use --device cpu or free device memory"
                    ) from None
                tile = max(self.runner.multiple, tile // 2)
                self._tile = tile
                self.progress.note(f"{name or 'image'}: out of memory on {self.device}; retrying with {tile}px tiles")
            finally:
                self.runner.restore_threads()

    def upscale(self, img: torch.Tensor, name: str = "", on_plan: Callable[[TilePlan], None] | None = None) -> torch.Tensor:
        """C x H x W (or 1 x C x H x W) float in [0, 1] -> the upscaled image, float32 on the CPU."""
        batched = img.dim() == 4
        if batched:
            return torch.stack([self.upscale(x, name, on_plan) for x in img])
        c, h, w = img.shape
        s_model = self.model.scale
        out = torch.empty(c, h * s_model, w * s_model)

        def sink(y0: int, rows: torch.Tensor) -> None:
            out[:, y0 : y0 + rows.shape[-2]] = rows

        self.run(img, sink, name, on_plan=on_plan)
        return self.rescale(out, h, w)

    def rescale(self, out: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """The model's output brought to the requested scale (MATLAB bicubic), if they differ."""
        if self.scale == self.model.scale:
            return out
        return imresize(out, size=(height * self.scale, width * self.scale)).clamp_(0, 1)


def upscale_tensor(
    model: SRModel,
    img: torch.Tensor,
    *,
    scale: int | None = None,
    tile: int | None = None,
    tile_pad: int | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    tta: bool = False,
    allow_resize: bool = True,
    threads: int | None = None,
    progress: UpscaleProgress | None = None,
) -> torch.Tensor:
    """Upscale ``img`` (C x H x W or N x C x H x W, float in [0, 1]; C = 1, 2, 3 or 4).

    Tiles are streamed through the device; the result is float32 on the CPU, clamped to [0, 1].
    ``tile=None`` picks the tile size from free device memory. See :mod:`srdistill.tiling` for
    when tiled output equals untiled output.
    """
    upscaler = Upscaler(model, scale=scale, tile=tile, tile_pad=tile_pad, device=device, dtype=dtype,
                        tta=tta, allow_resize=allow_resize, threads=threads, progress=progress)
    return upscaler.upscale(img)


# -- files -----------------------------------------------------------------------------------------
# Output images grow by scale squared; refuse above this many output pixels unless raised
# (400 MP of 8-bit RGB is 1.2 GB in memory before encoding).
DEFAULT_MAX_OUTPUT_PIXELS = 400_000_000
WRITABLE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def quantize(x: torch.Tensor, bits: int) -> np.ndarray:
    """C x h x w float in [0, 1] -> h x w x C uint8/uint16 (round half up, as MATLAB im2uint8)."""
    peak = 255.0 if bits == 8 else 65535.0
    arr = (x * peak + 0.5).floor_().clamp_(0, peak).permute(1, 2, 0).numpy()
    return arr.astype(np.uint8 if bits == 8 else np.uint16)


def _image_tensor(pixels: np.ndarray, alpha: np.ndarray | None) -> torch.Tensor:
    peak = 65535.0 if pixels.dtype == np.uint16 else 255.0
    planes = [torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)).astype(np.float32))]
    if alpha is not None:
        planes.append(torch.from_numpy(alpha.astype(np.float32))[None])
    return torch.cat(planes).div_(peak) if len(planes) > 1 else planes[0].div_(peak)


def upscale_file(
    upscaler: Upscaler | SRModel,
    source: str | Path,
    output: str | Path,
    *,
    overwrite: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_output_pixels: int = DEFAULT_MAX_OUTPUT_PIXELS,
    index: int = 0,
    total: int = 1,
    name: str | None = None,
) -> ImageResult:
    """Read ``source``, upscale it and write ``output`` (format from its extension), atomically.

    8-bit stays 8-bit, 16-bit stays 16-bit where the format allows; alpha and grayscale are kept;
    ICC profile, EXIF and DPI are carried over. Raises :class:`ImageError` (and friends) for bad
    input, an existing output without ``overwrite``, or an output larger than ``max_output_pixels``.
    """
    if isinstance(upscaler, SRModel):
        upscaler = Upscaler(upscaler)
    source, output = Path(source), Path(output)
    name = name or source.name
    if output.exists() and not overwrite:
        raise OutputExistsError(f"{output} already exists; pass --overwrite to replace it (or --skip-existing)")
    start = time.perf_counter()
    image = read_image(source, max_pixels=max_pixels)
    h, w = image.height, image.width
    out_h, out_w = upscaler.output_size(h, w)
    if out_h * out_w > max_output_pixels:
        raise ImageError(
            f"{source}: the x{upscaler.scale} output would be {out_w}x{out_h} = {out_h * out_w / 1e6:.0f} megapixels, "
            f"over the limit of {max_output_pixels / 1e6:g}; raise it with --max-output-pixels or use a smaller -s"
        )
    img = _image_tensor(image.pixels, image.alpha)
    bits = image.bit_depth
    color_n = image.pixels.shape[2]
    tiles = [0]

    def started(plan: TilePlan) -> None:
        tiles[0] = plan.count
        upscaler.progress.image_started(name, index, total, plan.count)

    notes = list(image.notes)
    if bits == 16 and upscaler.dtype != torch.float32:
        notes.append(f"16-bit image computed in {str(upscaler.dtype).replace('torch.', '')} (~8-bit precision); "
                     f"--dtype float32 keeps all 16 bits")
    dtype = np.uint8 if bits == 8 else np.uint16
    if upscaler.scale == upscaler.model.scale:
        # Finished rows go straight into the 8/16-bit output: no full-size float image in memory.
        pixels = np.empty((out_h, out_w, color_n), dtype=dtype)
        alpha = np.empty((out_h, out_w), dtype=dtype) if image.alpha is not None else None

        def sink(y0: int, rows: torch.Tensor) -> None:
            q = quantize(rows, bits)
            pixels[y0 : y0 + q.shape[0]] = q[:, :, :color_n]
            if alpha is not None:
                alpha[y0 : y0 + q.shape[0]] = q[:, :, color_n]

        upscaler.run(img, sink, name, output_bytes=bits // 8, on_plan=started)
    else:
        q = quantize(upscaler.upscale(img, name, on_plan=started), bits)
        pixels = np.ascontiguousarray(q[:, :, :color_n])
        alpha = np.ascontiguousarray(q[:, :, color_n]) if image.alpha is not None else None
        del q
        notes.append(f"model is x{upscaler.model.scale}; resized to x{upscaler.scale} with bicubic (MATLAB imresize)")
    del img
    _return_freed_memory()
    notes += write_image(output, pixels, alpha=alpha, like=image, overwrite=overwrite)
    result = ImageResult(str(source), str(output), (w, h), (out_w, out_h), time.perf_counter() - start, tiles[0], notes=notes)
    upscaler.progress.image_done(result)
    return result


def _return_freed_memory() -> None:
    """Give freed heap pages back to the OS before the encoder's large allocations.

    glibc keeps freed blocks below its (adaptive, up to 32 MiB) mmap threshold in the heap, so the
    tile and band temporaries would otherwise still count in the peak reached while encoding.
    """
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass


# -- many files ------------------------------------------------------------------------------------
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
                hint = "" if recursive else " (add --recursive to search sub-folders)"
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
        raise UsageError(f"--ext {ext} is not a format srdistill writes; use one of {', '.join(WRITABLE_SUFFIXES)}")
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
            raise UsageError(f"{job.source} would be overwritten by its own output; give -o another folder or a --suffix")
        if key in seen:
            raise UsageError(f"{seen[key]} and {job.source} would both be written to {job.output}; use --suffix or keep their extensions")
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
    scale: int | None = None,
    recursive: bool = False,
    suffix: str | None = None,
    ext: str | None = None,
    skip_existing: bool = False,
    overwrite: bool = False,
    keep_going: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_output_pixels: int = DEFAULT_MAX_OUTPUT_PIXELS,
    tile: int | None = None,
    tile_pad: int | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    tta: bool = False,
    allow_resize: bool = True,
    threads: int | None = None,
    progress: UpscaleProgress | None = None,
) -> list[ImageResult]:
    """Upscale files, folders and globs; one :class:`ImageResult` per input.

    Every output location is checked before any image is processed. Without ``keep_going`` the
    first failure raises (outputs already written are complete files); with it, failures are
    recorded (``status="failed"``) and the rest continue.
    """
    upscaler = Upscaler(model, scale=scale, tile=tile, tile_pad=tile_pad, device=device, dtype=dtype,
                        tta=tta, allow_resize=allow_resize, threads=threads, progress=progress)
    progress = upscaler.progress
    if upscaler.scale != model.scale:
        progress.note(f"model is x{model.scale}, -s {upscaler.scale} asked: the model's output is resized with "
                      f"MATLAB bicubic (pass --no-resize to refuse)")
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
                    raise OutputExistsError(f"{job.output} already exists; pass --overwrite to replace it (or --skip-existing)")
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


# -- which model ---------------------------------------------------------------------------------
def default_model_file(scale: int) -> Path | None:
    """The bundled default model for ``scale`` (``srdistill/weights/default_x{s}.safetensors``), if any."""
    resource = importlib.resources.files("srdistill") / "weights" / f"default_x{scale}.safetensors"
    return Path(str(resource)) if resource.is_file() else None


def resolve_model(spec: str | Path | None, scale: int | None, progress: UpscaleProgress | None = None) -> SRModel:
    """``--model``: a model file, a preset name (random weights: for speed tests), or the bundled default."""
    if spec is None:
        wanted = scale or 4
        path = default_model_file(wanted)
        if path is None:
            raise UsageError(
                f"no bundled x{wanted} model in this version yet; pass one with --model path/to/model.safetensors "
                f"(srdistill or official EDSR/RCAN/SwinIR/Real-ESRGAN weights)"
            )
        return load_model(path)
    path = Path(spec).expanduser()
    if path.exists() or path.suffix.lower() in (".safetensors", ".pth", ".pt", ".ckpt", ".bin"):
        return load_model(path)
    try:
        find_preset(str(spec))
    except SrdistillError:
        raise ModelFileError(f"--model {spec}: no such file, and not a preset name (see `srdistill archs`)") from None
    message = f"--model {spec} is a preset: random weights, the output is noise (useful for speed tests only)"
    if progress is not None:
        progress.note(message)
    else:
        warnings.warn(message, stacklevel=2)
    return build_model(str(spec), scale or 4)


def results_json(results: Sequence[ImageResult]) -> list[dict]:
    return [asdict(r) for r in results]


__all__ = [
    "DEFAULT_MAX_OUTPUT_PIXELS",
    "ImageResult",
    "Job",
    "UpscaleProgress",
    "Upscaler",
    "bleed_transparent",
    "collect_inputs",
    "default_model_file",
    "plan_jobs",
    "quantize",
    "resolve_model",
    "upscale_file",
    "upscale_paths",
    "upscale_tensor",
]
