"""The only place srdistill decodes or encodes image files (Pillow + numpy).

Reading gives a :class:`LoadedImage`: pixels as ``H x W x C`` (C = 1 or 3) ``uint8`` or
``uint16``, straight alpha separately, and the metadata worth carrying to an upscaled copy
(ICC profile, EXIF with the orientation already applied, DPI). Everything that can go wrong with a
user's file (missing, empty, not an image, truncated, larger than the pixel limit) is an
:class:`ImageError` with a one-line message. The pixel limit is checked from the header, before any
pixel data is decoded.

16-bit colour is kept: Pillow reduces 16-bit RGB(A) PNG and TIFF to 8 bits, so those two cases go
through :mod:`codecs16` (imagecodecs and tifffile, the optional ``codecs16`` extra). Writing is
atomic: the encoder writes into a temporary file in the target folder (Pillow and tifffile as
they go; libpng's 16-bit PNG is encoded in memory first), which is synced and renamed into place
only when complete, so a failure never leaves a partial file.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageFile

from srdistill.data import codecs16
from srdistill.data.limits import DEFAULT_MAX_PIXELS
from srdistill.errors import ImageError, OutputExistsError, param

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "LoadedImage",
    "WRITABLE_SUFFIXES",
    "from_tensor",
    "read_image",
    "to_8bit",
    "to_tensor",
    "write_image",
]

_READ_FORMATS = {"PNG", "JPEG", "MPO", "WEBP", "BMP", "DIB", "TIFF"}
_WRITE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP",
                  ".tif": "TIFF", ".tiff": "TIFF"}
WRITABLE_SUFFIXES = tuple(_WRITE_FORMATS)  # the extensions write_image knows
_ORIENTATION_TAG = 0x0112
# Pillow's decompression-bomb limit is process-wide; it is changed only under this lock.
_PILLOW_SETTINGS_LOCK = threading.Lock()


@dataclass(frozen=True, eq=False)
class LoadedImage:
    """A decoded image and the metadata an output made from it should carry."""

    pixels: np.ndarray  # H x W x C, C in (1, 3), uint8 or uint16
    alpha: np.ndarray | None  # H x W, same dtype as pixels, straight (not premultiplied)
    bit_depth: int  # 8 or 16
    mode: str  # the file's own mode as Pillow names it, e.g. "RGB", "P", "I;16", "RGB;16"
    format: str  # "PNG", "JPEG", "WEBP", "BMP", "TIFF"
    icc_profile: bytes | None
    exif: bytes | None  # orientation already applied to pixels and removed from the tags
    dpi: tuple[float, float] | None
    notes: tuple[str, ...]  # conversions a user may want to know about
    source: Path | None

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])


@contextlib.contextmanager
def _header_only_pillow_limit():
    """Pillow's own bomb check off while it reads a header: ``read_image`` applies ``max_pixels``
    itself, from the header, with a message that says how to raise it; Pillow's process-wide
    limit would otherwise cap every caller at 179 megapixels. Pillow checks only in ``open``.
    """
    with _PILLOW_SETTINGS_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _too_large(path: Path, width: int, height: int, max_pixels: int) -> ImageError:
    return ImageError(
        f"{path}: {width}x{height} is {width * height / 1e6:.1f} megapixels, over the limit of "
        f"{max_pixels / 1e6:g} megapixels; if the file is trusted, raise the limit ({param('max_pixels')})"
    )


def _orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation to an ``H x W [x C]`` array, as ``ImageOps.exif_transpose`` does."""
    ops = {
        2: lambda a: a[:, ::-1],  # mirror left-right
        3: lambda a: a[::-1, ::-1],  # rotate 180
        4: lambda a: a[::-1],  # mirror top-bottom
        5: lambda a: a.swapaxes(0, 1),  # transpose
        6: lambda a: np.rot90(a, k=-1),  # rotate 90 clockwise
        7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],  # transverse
        8: lambda a: np.rot90(a, k=1),  # rotate 90 counter-clockwise
    }
    op = ops.get(orientation)
    return np.ascontiguousarray(op(arr)) if op else arr


# What a damaged EXIF block can raise while Pillow parses it; it then costs only the EXIF.
_EXIF_ERRORS = (OSError, ValueError, SyntaxError, KeyError, TypeError, struct.error)


def _orientation(im: Image.Image, info: dict) -> int:
    try:
        if im.format == "TIFF":
            tags = im.getexif()  # TIFF keeps orientation in its own first IFD, not an EXIF blob
        elif info.get("exif"):
            tags = Image.Exif()
            tags.load(info["exif"])
        else:
            return 1
        value = tags.get(_ORIENTATION_TAG, 1)
    except _EXIF_ERRORS:
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _without_orientation(exif: bytes) -> bytes | None:
    """The EXIF block with its orientation tag removed (the pixels are already upright)."""
    try:
        tags = Image.Exif()
        tags.load(exif)
        tags.pop(_ORIENTATION_TAG, None)
        return tags.tobytes()
    except _EXIF_ERRORS:
        return None  # carrying the old block would rotate the output a second time


def _round_dpi(value: float) -> float:
    # PNG stores dots per metre: 300 dpi comes back as 299.9994. Undo that quantisation.
    return float(round(value)) if abs(value - round(value)) < 0.02 else float(value)


def _pixels_from_pillow(im: Image.Image, notes: list[str]) -> tuple[np.ndarray, np.ndarray | None, int]:
    """``(pixels H x W x C, alpha or None, bit depth)`` from a loaded Pillow image of any mode."""
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(im).astype(np.uint16)[:, :, None], None, 16
    if mode == "I":
        arr = np.asarray(im)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise ImageError("32-bit integer image with values outside 0..65535 is not supported; "
                             "convert it to 16-bit")
        notes.append("32-bit integer gray stored as 16-bit")
        return arr.astype(np.uint16)[:, :, None], None, 16
    if mode == "F":
        raise ImageError("floating-point images are not supported; convert to 8- or 16-bit integer")
    if mode == "P" or mode == "PA":
        has_alpha = mode == "PA" or "transparency" in im.info or im.palette.mode == "RGBA"
        im = im.convert("RGBA" if has_alpha else "RGB")
        notes.append("palette expanded to " + im.mode)
    elif mode == "1":
        im = im.convert("L")
        notes.append("1-bit image stored as 8-bit gray")
    elif mode == "CMYK":
        im = im.convert("RGB")
        notes.append("CMYK converted to RGB (without colour management)")
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        try:
            im = im.convert("RGBA" if "A" in mode or "a" in mode else "RGB")
        except (ValueError, OSError):
            raise ImageError(f"image mode {mode} is not supported; convert to RGB") from None
        notes.append(f"{mode} converted to {im.mode}")
    arr = np.asarray(im)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if im.mode in ("LA", "RGBA"):
        return np.ascontiguousarray(arr[:, :, :-1]), np.ascontiguousarray(arr[:, :, -1]), 8
    return arr, None, 8


def _decode(im: Image.Image, path: Path, head: bytes, notes: list[str]):
    """``(pixels, alpha, bit depth, source mode, info)`` of an opened image; may raise OSError."""
    frames = getattr(im, "n_frames", 1)
    if frames > 1:
        notes.append(f"first of {frames} frames used")
    info = dict(im.info)
    wide_png = im.format == "PNG" and codecs16.is_png16_color(head)
    if not (wide_png or (im.format == "TIFF" and codecs16.is_tiff16_color(im))):
        im.load()
        info.update(im.info)  # PNG chunks after the image data (eXIf, text) arrive on load
        pixels, alpha, bit_depth = _pixels_from_pillow(im, notes)
        return pixels, alpha, bit_depth, im.mode, info
    # Metadata comes from Pillow's parse of the chunks/tags before the image data (where the PNG
    # spec puts iCCP, pHYs and eXIf); the pixels from the 16-bit codec.
    wide = codecs16.read_png16(path) if wide_png else codecs16.read_tiff16(path)
    channels = wide.shape[2]
    source_mode = {2: "LA;16", 3: "RGB;16", 4: "RGBA;16"}[channels]
    if channels in (2, 4):
        return np.ascontiguousarray(wide[:, :, :-1]), np.ascontiguousarray(wide[:, :, -1]), 16, source_mode, info
    return wide, None, 16, source_mode, info


def read_image(path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Decode ``path`` (PNG, JPEG, WebP, BMP, TIFF) into a :class:`LoadedImage`.

    The first frame of a multi-frame file is used (with a note). Raises :class:`ImageError`.
    """
    path = Path(path)
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if path.is_dir():
        raise ImageError(f"{path} is a folder, not an image file")
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(64)
    except OSError as exc:
        raise ImageError(f"{path}: cannot read ({exc.strerror})") from None
    if size == 0:
        raise ImageError(f"{path} is an empty (0-byte) file")

    notes: list[str] = []
    try:
        with _header_only_pillow_limit():
            im = Image.open(path)
    except Image.UnidentifiedImageError:
        raise ImageError(f"{path} is not an image file Pillow can read (PNG, JPEG, WebP, BMP, TIFF)") from None
    except OSError as exc:
        raise ImageError(f"{path}: cannot open image ({exc})") from None
    with im:
        if im.format not in _READ_FORMATS:
            raise ImageError(f"{path}: {im.format} images are not supported; convert to PNG")
        width, height = im.size
        if width * height > max_pixels:
            raise _too_large(path, width, height, max_pixels)
        # A truncated file must fail, not decode with its missing rows filled in gray.
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            pixels, alpha, bit_depth, source_mode, info = _decode(im, path, head, notes)
        except Image.DecompressionBombError as exc:  # a decoder that re-checks with Pillow's default
            raise ImageError(f"{path}: Pillow refused to decode it ({exc})") from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ImageError(f"{path}: image data is truncated or corrupt ({exc})") from None
        orientation = _orientation(im, info)
        fmt = {"MPO": "JPEG", "DIB": "BMP"}.get(im.format, im.format)

    exif = info.get("exif")
    if orientation != 1:
        pixels = _orient(pixels, orientation)
        alpha = _orient(alpha, orientation) if alpha is not None else None
        notes.append(f"EXIF orientation {orientation} applied")
        if exif:
            exif = _without_orientation(exif)
    icc = info.get("icc_profile") or None
    if icc and source_mode == "CMYK":
        icc = None  # a CMYK profile would mislabel the converted RGB pixels
        notes.append("CMYK ICC profile dropped")
    dpi = info.get("dpi")
    if dpi:
        dpi = (_round_dpi(float(dpi[0])), _round_dpi(float(dpi[1])))
    return LoadedImage(
        pixels=pixels,
        alpha=alpha,
        bit_depth=bit_depth,
        mode=source_mode,
        format=fmt,
        icc_profile=icc,
        exif=exif or None,
        dpi=dpi or None,
        notes=tuple(notes),
        source=path,
    )


def _icc_matches(icc: bytes, channels: int) -> bool:
    # Bytes 16..20 of an ICC header name its colour space; a gray image must not get an RGB one.
    space = icc[16:20] if len(icc) >= 20 else b""
    return space == (b"GRAY" if channels == 1 else b"RGB ")


def to_8bit(pixels: np.ndarray) -> np.ndarray:
    """uint16 pixels reduced to uint8 as MATLAB ``im2uint8`` does (round half up); uint8 as is."""
    if pixels.dtype == np.uint8:
        return pixels
    if pixels.dtype != np.uint16:
        raise ValueError(f"to_8bit takes uint8 or uint16 pixels, got {pixels.dtype}")
    return ((pixels.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def _encode(out: BinaryIO, path: Path, fmt: str, pixels: np.ndarray, alpha: np.ndarray | None, *,
            icc: bytes | None, exif: bytes | None, dpi: tuple[float, float] | None, quality: int,
            notes: list[str]) -> None:
    """Encode the image as ``fmt`` into ``out`` (the temporary file that becomes ``path``)."""
    channels = pixels.shape[2]
    if alpha is not None and fmt in ("JPEG", "BMP"):
        notes.append(f"alpha channel dropped: {fmt} stores no alpha")
        alpha = None
    wide = pixels.dtype == np.uint16
    if wide and fmt not in ("PNG", "TIFF"):
        notes.append(f"16-bit reduced to 8-bit: {fmt} stores 8 bits per channel")
        pixels = to_8bit(pixels)
        alpha = to_8bit(alpha) if alpha is not None else None
        wide = False
    if wide and fmt == "TIFF" and channels == 1 and alpha is not None:
        notes.append("16-bit gray+alpha stored as RGBA (TIFF readers lack 16-bit gray+alpha)")
        pixels, channels = np.repeat(pixels, 3, axis=2), 3
        icc = None
    if icc and not _icc_matches(icc, channels):
        notes.append("ICC profile dropped: its colour space does not match the output channels")
        icc = None
    if fmt == "BMP" and (icc or exif):
        notes.append("ICC profile / EXIF not stored: BMP has no place for them")
        icc = exif = None

    if wide and (channels == 3 or alpha is not None):
        stacked = np.concatenate([pixels, alpha[:, :, None]], axis=2) if alpha is not None else pixels
        if fmt == "PNG":
            codecs16.write_png16(out, path, stacked, icc_profile=icc, exif=exif, dpi=dpi)
            return
        if exif:
            notes.append("EXIF not stored in the 16-bit RGB TIFF")
        codecs16.write_tiff16(out, path, stacked, icc_profile=icc, dpi=dpi)
        return

    if wide:  # 16-bit gray: Pillow's I;16
        image = Image.fromarray(np.ascontiguousarray(pixels[:, :, 0]))  # uint16 -> I;16
    else:
        image = Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels)
        if alpha is not None:
            image.putalpha(Image.fromarray(alpha))
    if fmt == "WEBP" and image.mode in ("L", "LA"):
        notes.append("WebP has no grayscale: stored as RGB")
    options: dict = {}
    if icc:
        options["icc_profile"] = icc
    if exif:
        options["exif"] = exif
    if dpi:
        options["dpi"] = dpi
    if fmt == "JPEG":
        options["quality"] = quality
    elif fmt == "WEBP":
        options.update(lossless=True) if quality >= 100 else options.update(quality=quality)
    elif fmt == "TIFF":
        options["compression"] = "tiff_adobe_deflate"
    try:
        image.save(out, format=fmt, **options)
    except OSError as exc:
        if exc.errno is not None:
            raise  # the file system (disk full, I/O error): reported as "cannot write" by the caller
        raise ImageError(f"cannot encode a {image.mode} image as {fmt}: {exc}") from None
    except (ValueError, KeyError) as exc:
        raise ImageError(f"cannot encode a {image.mode} image as {fmt}: {exc}") from None


def _check_pixels(pixels: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    pixels = np.asarray(pixels)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 3) or pixels.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"write_image takes H x W x C uint8/uint16 pixels with C = 1 or 3 (alpha "
                         f"separately), got {pixels.dtype} {pixels.shape}")
    if alpha is not None:
        if alpha.shape != pixels.shape[:2] or alpha.dtype != pixels.dtype:
            raise ValueError(f"alpha must be {pixels.shape[:2]} {pixels.dtype}, got {alpha.shape} {alpha.dtype}")
    return np.ascontiguousarray(pixels)


def write_image(
    path: str | os.PathLike,
    pixels: np.ndarray,
    *,
    alpha: np.ndarray | None = None,
    like: LoadedImage | None = None,
    overwrite: bool = False,
    quality: int = 95,
) -> tuple[str, ...]:
    """Write ``pixels`` (``H x W x C``, C = 1 or 3, uint8 or uint16) in the format of ``path``'s extension.

    PNG and TIFF keep 16 bits; JPEG, WebP and BMP are 8-bit (16-bit input is reduced, with a
    note). ICC profile, EXIF and DPI come from ``like`` where the format can store them.
    ``quality`` applies to JPEG and WebP (WebP at 100 is lossless). Returns notes about anything
    not stored as given. The file appears complete or not at all; an existing file is replaced
    only with ``overwrite=True`` (else :class:`OutputExistsError`).
    """
    path = Path(path)
    fmt = _WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ImageError(f"{path}: unknown output extension {path.suffix!r}; use one of "
                         f"{', '.join(sorted(_WRITE_FORMATS))}")
    pixels = _check_pixels(pixels, alpha)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} already exists; pass {param('overwrite', True)} to replace it")
    notes: list[str] = []
    with _atomic_file(path, overwrite) as out:
        _encode(out, path, fmt, pixels, alpha, icc=like.icc_profile if like else None,
                exif=like.exif if like else None, dpi=like.dpi if like else None,
                quality=quality, notes=notes)
    return tuple(notes)


@contextlib.contextmanager
def _atomic_file(path: Path, overwrite: bool) -> Iterator[BinaryIO]:
    """A temporary file next to ``path`` that becomes ``path`` only if the block completes.

    Same folder, so the final rename stays on one file system and is atomic; synced before the
    rename, so a crash cannot leave a complete-looking name over incomplete data. Whatever goes
    wrong (an encoder error, a full disk, an interrupt), the temporary file is removed.
    """
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        # "x": created exclusively, mode 0o666 less the umask, so the final file gets the usual
        # permissions. A file opened by name (not os.fdopen) also has a name, which tifffile needs.
        with open(temp, "xb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        if overwrite:
            os.replace(temp, path)
        else:
            # link() fails if the name was taken meanwhile, so a racing writer is never clobbered.
            try:
                os.link(temp, path)
            except FileExistsError:
                raise OutputExistsError(f"{path} already exists; pass {param('overwrite', True)} "
                                        f"to replace it") from None
            except OSError:
                if path.exists():
                    raise
                os.replace(temp, path)  # filesystems without hard links
    except OSError as exc:
        raise ImageError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temp)


def to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """``H x W [x C]`` uint8/uint16 pixels as a float32 ``C x H x W`` tensor in [0, 1]."""
    arr = np.asarray(pixels)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.dtype == np.uint8:
        scale = 255.0
    elif arr.dtype == np.uint16:
        scale = 65535.0
    else:
        raise ValueError(f"to_tensor takes uint8 or uint16 pixels, got {arr.dtype}")
    t = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)).astype(np.float32))
    return t.div_(scale)


def from_tensor(t: torch.Tensor, bit_depth: int = 8) -> np.ndarray:
    """A ``C x H x W`` (or ``1 x C x H x W``) tensor in [0, 1] as ``H x W x C`` uint8/uint16.

    Values are clipped to [0, 1] and rounded half up (as MATLAB's ``im2uint8``).
    """
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    if t.dim() == 4 and t.shape[0] == 1:
        t = t[0]
    if t.dim() != 3:
        raise ValueError(f"from_tensor takes C x H x W, got shape {tuple(t.shape)}")
    peak = 255.0 if bit_depth == 8 else 65535.0
    arr = t.detach().to("cpu", torch.float64).clamp(0, 1).mul(peak).add(0.5).floor().numpy()
    return np.ascontiguousarray(arr.transpose(1, 2, 0)).astype(np.uint8 if bit_depth == 8 else np.uint16)
