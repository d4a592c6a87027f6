"""16-bit colour PNG and TIFF through imagecodecs (libpng) and tifffile: the ``codecs16`` extra.

Pillow has no 16-bit multi-channel mode: it reduces 16-bit RGB, RGBA and gray+alpha PNGs and
TIFFs to 8 bits and cannot write them. Those files alone come here; everything else, 16-bit gray
included, stays with Pillow. Both libraries are required together, for a measured reason
(benchmarks/RESULTS.md, "codecs16"): tifffile on its own inflates a Deflate strip with unbounded
``zlib.decompress`` (a 300 MB stream behind a 10x10 header decodes at 300 MB of memory), while with
imagecodecs installed it inflates into a buffer of the declared size and refuses the rest.

The caller (:mod:`srdistill.data.imageio`) has already checked the pixel count from Pillow's parse
of the header and reads the metadata (ICC, DPI, EXIF) from Pillow; this module moves pixels only.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from types import ModuleType
from typing import BinaryIO

import numpy as np
from PIL import Image

from srdistill.errors import ImageError

__all__ = ["is_png16_color", "is_tiff16_color", "read_png16", "read_tiff16", "write_png16", "write_tiff16"]

EXTRA_HINT = "pip install 'srdistill[codecs16]'"
# What the two libraries raise on a damaged or unsupported file (imagecodecs' errors are
# RuntimeErrors, tifffile's TiffFileError is a ValueError, a codec it lacks is a KeyError).
_DECODE_ERRORS = (ValueError, RuntimeError, OSError, KeyError, IndexError, EOFError, struct.error, zlib.error)
_PNG_IHDR_END = 33  # signature (8) + IHDR length, type, 13-byte body and CRC


def _libraries(path: Path, what: str) -> tuple[ModuleType, ModuleType]:
    try:
        import imagecodecs
        import tifffile
    except ImportError:
        raise ImageError(f"{path}: {what} needs the optional codecs16 extra (imagecodecs, tifffile); "
                         f"install it with {EXTRA_HINT}") from None
    return imagecodecs, tifffile


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def is_png16_color(head: bytes) -> bool:
    """Whether a PNG (already recognised by Pillow) starting with ``head`` is 16-bit with colour or alpha.

    IHDR is the first chunk of every PNG, so bit depth and colour type sit at fixed offsets.
    """
    return len(head) >= _PNG_IHDR_END and head[24] == 16 and head[25] in (2, 4, 6)


def is_tiff16_color(im: Image.Image) -> bool:
    """Whether ``im`` (a TIFF opened by Pillow) has 16-bit samples and more than one sample per pixel."""
    tags = getattr(im, "tag_v2", None)
    if tags is None:
        return False
    bits = tags.get(258, (1,))
    bits = bits if isinstance(bits, tuple) else (bits,)
    return int(tags.get(277, 1)) >= 2 and all(int(b) == 16 for b in bits)


def read_png16(path: Path) -> np.ndarray:
    """The pixels of a 16-bit colour or gray+alpha PNG as ``H x W x C`` uint16 (C = 2, 3 or 4)."""
    imagecodecs, _ = _libraries(path, "reading a 16-bit colour PNG")
    try:
        pixels = imagecodecs.png_decode(path.read_bytes())
    except _DECODE_ERRORS as exc:
        raise ImageError(f"{path}: image data is truncated or corrupt ({_one_line(exc)})") from None
    if pixels.dtype != np.uint16 or pixels.ndim != 3:
        raise ImageError(f"{path}: decoded as {pixels.dtype} {pixels.shape}, not 16-bit colour; "
                         f"re-save it as a standard PNG")
    return pixels


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def write_png16(out: BinaryIO, path: Path, pixels: np.ndarray, *, icc_profile: bytes | None = None,
                exif: bytes | None = None, dpi: tuple[float, float] | None = None) -> None:
    """Encode ``H x W x C`` uint16 (C = 2: gray+alpha, 3: RGB, 4: RGBA) as a PNG into ``out``.

    libpng writes only IHDR, IDAT and IEND; the metadata chunks go right after IHDR, where the
    PNG spec allows all three (before IDAT).
    """
    imagecodecs, _ = _libraries(path, "writing a 16-bit colour PNG")
    encoded = imagecodecs.png_encode(np.ascontiguousarray(pixels))
    out.write(encoded[:_PNG_IHDR_END])
    if icc_profile:
        out.write(_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc_profile)))
    if dpi:
        # pHYs stores pixels per metre; Pillow reads it back as dpi = ppm * 0.0254.
        ppm = [int(round(d / 0.0254)) for d in dpi]
        out.write(_chunk(b"pHYs", struct.pack(">IIB", ppm[0], ppm[1], 1)))
    if exif:
        out.write(_chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif))
    out.write(memoryview(encoded)[_PNG_IHDR_END:])


def read_tiff16(path: Path) -> np.ndarray:
    """The first image of a 16-bit multi-sample TIFF as ``H x W x C`` uint16 (C = 2, 3 or 4)."""
    _, tifffile = _libraries(path, "reading a 16-bit colour TIFF")
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            samples, photometric = int(page.samplesperpixel), int(page.photometric)
            sample_format = int(np.atleast_1d(page.sampleformat)[0])
            # Photometric 1 (gray) with one extra sample is gray+alpha; 2 is RGB with optional alpha.
            if sample_format != 1 or (photometric, samples) not in ((1, 2), (2, 3), (2, 4)):
                raise ImageError(f"{path}: 16-bit TIFF with {samples} samples per pixel, photometric "
                                 f"{photometric}, sample format {sample_format} is not supported; "
                                 f"convert it to unsigned 16-bit RGB or RGBA")
            pixels = page.asarray(maxworkers=1)
            axes = page.axes
    except _DECODE_ERRORS as exc:
        raise ImageError(f"{path}: image data is truncated or corrupt ({_one_line(exc)})") from None
    if "S" in axes:  # separate planes come back sample-first
        pixels = np.moveaxis(pixels, axes.index("S"), -1)
    return np.ascontiguousarray(pixels.reshape(pixels.shape[-3:]), dtype=np.uint16)


def write_tiff16(out: BinaryIO, path: Path, pixels: np.ndarray, *, icc_profile: bytes | None = None,
                 dpi: tuple[float, float] | None = None) -> None:
    """Encode ``H x W x C`` uint16 (C = 3: RGB, 4: RGBA) as a Deflate TIFF (horizontal predictor) into ``out``.

    tifffile writes strip by strip into the (seekable) file. 16-bit gray+alpha is not offered:
    Pillow cannot open such a TIFF, so read_image could not read it back.
    """
    _, tifffile = _libraries(path, "writing a 16-bit colour TIFF")
    options: dict = {}
    if pixels.shape[2] == 4:
        options["extrasamples"] = ("unassalpha",)  # straight alpha
    if dpi:
        options.update(resolution=(float(dpi[0]), float(dpi[1])), resolutionunit="INCH")
    if icc_profile:
        options["iccprofile"] = icc_profile
    # metadata=None: no tifffile JSON description, so the file says only what the pixels need.
    tifffile.imwrite(out, np.ascontiguousarray(pixels), photometric="rgb", compression="zlib",
                     predictor=True, metadata=None, **options)
