"""16-bit colour PNG, read and written without losing the low byte.

Pillow has no 16-bit multi-channel mode: it decodes 16-bit RGB, RGBA and gray+alpha PNGs to
8 bits and cannot write them. This module covers exactly those PNGs (colour types 2, 4 and 6 at
bit depth 16) with zlib and numpy; everything else goes through Pillow. The decoder reads the
metadata chunks the encoder writes (iCCP, pHYs, eXIf) and ignores the others.
"""

from __future__ import annotations

import contextlib
import struct
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np

__all__ = ["DecodedPng", "PngFormatError", "is_png16_color", "read_png16", "write_png16"]

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # colour type -> samples per pixel
_COLOR_TYPE_OF_CHANNELS = {1: 0, 2: 4, 3: 2, 4: 6}
# Rows are filtered and compressed in bands of about this many bytes while writing.
_WRITE_BAND_BYTES = 4 * 2**20
# Adam7 passes: (x start, y start, x step, y step).
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


class PngFormatError(ValueError):
    """The PNG stream is malformed (the caller turns this into an ImageError)."""


@dataclass
class DecodedPng:
    pixels: np.ndarray  # H x W x C uint16
    info: dict = field(default_factory=dict)  # icc_profile / dpi / exif, named as Pillow names them


def _read_header(data: bytes) -> tuple[int, int, int, int, int]:
    if not data.startswith(SIGNATURE) or data[12:16] != b"IHDR" or len(data) < 33:
        raise PngFormatError("not a PNG file (bad signature or missing IHDR)")
    width, height, depth, color_type, compression, filter_method, interlace = struct.unpack(
        ">IIBBBBB", data[16:29]
    )
    if compression != 0 or filter_method != 0 or interlace not in (0, 1):
        raise PngFormatError("unknown PNG compression, filter or interlace method")
    return width, height, depth, color_type, interlace


def is_png16_color(header: bytes) -> bool:
    """Whether a file starting with ``header`` (33+ bytes) is a PNG Pillow would reduce to 8 bits."""
    try:
        _, _, depth, color_type, _ = _read_header(header)
    except PngFormatError:
        return False
    return depth == 16 and color_type in (2, 4, 6)


def _chunks(data: bytes):
    pos = len(SIGNATURE)
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        crc = data[pos + 8 + length : pos + 12 + length]
        if len(body) != length or len(crc) != 4:
            raise PngFormatError(f"PNG truncated inside a {kind!r} chunk")
        if struct.unpack(">I", crc)[0] != zlib.crc32(kind + body) & 0xFFFFFFFF:
            raise PngFormatError(f"PNG chunk {kind!r} fails its CRC check (corrupt file)")
        yield kind, body
        if kind == b"IEND":
            return
        pos += 12 + length
    raise PngFormatError("PNG truncated: no IEND chunk")


def _unfilter(filtered: np.ndarray, bpp: int) -> np.ndarray:
    """Undo PNG filtering of ``filtered`` (rows x (1 + row bytes)), returning rows x row bytes.

    Sub, Average and Paeth make every byte depend on its left neighbour, so rows cannot be undone
    as whole vectors. Pixel (y, x) depends only on (y, x-1), (y-1, x) and (y-1, x-1), so all
    pixels on one anti-diagonal are independent: sweeping diagonals costs H + W vector steps.
    """
    rows = filtered.shape[0]
    kinds = filtered[:, 0].astype(np.int16)
    if kinds.size and kinds.max() > 4:
        raise PngFormatError(f"unknown PNG row filter type {int(kinds.max())}")
    width = (filtered.shape[1] - 1) // bpp
    body = filtered[:, 1:].reshape(rows, width, bpp).astype(np.int16)
    if not np.any(kinds & 1) and not np.any(kinds == 4):
        # Only None and Up: a running sum down each column of the Up rows.
        out = np.empty_like(body)
        previous = np.zeros((width, bpp), dtype=np.int16)
        for y in range(rows):
            previous = (body[y] + previous) & 0xFF if kinds[y] == 2 else body[y]
            out[y] = previous
        return out.reshape(rows, width * bpp).astype(np.uint8)
    # Recovered bytes with a zero row above and a zero column to the left (PNG's "outside" value).
    recon = np.zeros((rows + 1, width + 1, bpp), dtype=np.int16)
    for diagonal in range(rows + width - 1):
        ys = np.arange(max(0, diagonal - width + 1), min(rows, diagonal + 1))
        xs = diagonal - ys
        left, up, up_left = recon[ys + 1, xs], recon[ys, xs + 1], recon[ys, xs]
        kind = kinds[ys][:, None]
        predictor = np.where(kind == 1, left, 0)
        predictor = np.where(kind == 2, up, predictor)
        predictor = np.where(kind == 3, (left + up) >> 1, predictor)
        estimate = left + up - up_left
        distance_left, distance_up = np.abs(estimate - left), np.abs(estimate - up)
        distance_up_left = np.abs(estimate - up_left)
        paeth = np.where(
            (distance_left <= distance_up) & (distance_left <= distance_up_left),
            left,
            np.where(distance_up <= distance_up_left, up, up_left),
        )
        predictor = np.where(kind == 4, paeth, predictor)
        recon[ys + 1, xs + 1] = (body[ys, xs] + predictor) & 0xFF
    return recon[1:, 1:].reshape(rows, width * bpp).astype(np.uint8)


def _metadata(kind: bytes, body: bytes, info: dict) -> None:
    if kind == b"iCCP":
        name_end = body.find(b"\x00")
        if name_end >= 0:
            with contextlib.suppress(zlib.error):  # a damaged profile costs only the profile
                info["icc_profile"] = zlib.decompress(body[name_end + 2 :])
    elif kind == b"pHYs" and len(body) == 9:
        ppm_x, ppm_y, unit = struct.unpack(">IIB", body)
        if unit == 1:
            info["dpi"] = (ppm_x * 0.0254, ppm_y * 0.0254)
    elif kind == b"eXIf":
        info["exif"] = b"Exif\x00\x00" + body  # the prefix Pillow uses for EXIF from any format


def read_png16(data: bytes) -> DecodedPng:
    """Decode a 16-bit PNG of any colour type without palette into ``H x W x C`` uint16."""
    width, height, depth, color_type, interlace = _read_header(data)
    if depth != 16 or color_type not in _CHANNELS:
        raise PngFormatError(f"read_png16 handles 16-bit non-palette PNGs, got depth {depth} type {color_type}")
    channels = _CHANNELS[color_type]
    bpp = 2 * channels
    passes = []
    for x0, y0, dx, dy in _ADAM7 if interlace else ((0, 0, 1, 1),):
        pass_w = (width - x0 + dx - 1) // dx if width > x0 else 0
        pass_h = (height - y0 + dy - 1) // dy if height > y0 else 0
        if pass_w and pass_h:  # empty Adam7 passes have no filter bytes at all
            passes.append((x0, y0, dx, dy, pass_w, pass_h))
    expected = sum(h * (1 + w * bpp) for *_, w, h in passes)

    info: dict = {}
    idat = []
    for kind, body in _chunks(data):
        if kind == b"IDAT":
            idat.append(body)
        else:
            _metadata(kind, body, info)
    # Bounded: a stream that inflates past the declared size (a zip bomb) is cut off, not expanded.
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(b"".join(idat), expected)
    except zlib.error as exc:
        raise PngFormatError(f"PNG image data is corrupt ({exc})") from None
    if len(raw) < expected:
        raise PngFormatError("PNG image data is shorter than its declared size (truncated)")

    image = np.zeros((height, width, channels), dtype=np.uint16)
    pos = 0
    for x0, y0, dx, dy, pass_w, pass_h in passes:
        size = pass_h * (1 + pass_w * bpp)
        chunk = np.frombuffer(raw, dtype=np.uint8, count=size, offset=pos)
        pos += size
        rows = _unfilter(chunk.reshape(pass_h, 1 + pass_w * bpp), bpp)
        image[y0::dy, x0::dx] = rows.view(">u2").reshape(pass_h, pass_w, channels)
    return DecodedPng(image, info)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def write_png16(
    out: BinaryIO,
    pixels: np.ndarray,
    *,
    icc_profile: bytes | None = None,
    exif: bytes | None = None,
    dpi: tuple[float, float] | None = None,
    compress_level: int = 6,
) -> None:
    """Encode ``H x W x C`` uint16 (C = 1..4: gray, gray+alpha, RGB, RGBA) as a 16-bit PNG into ``out``.

    Rows are filtered and compressed a band at a time and written as they are compressed (one
    IDAT chunk per piece), so memory stays at one band whatever the image size.
    """
    if pixels.dtype != np.uint16 or pixels.ndim != 3 or pixels.shape[2] not in _COLOR_TYPE_OF_CHANNELS:
        raise ValueError(f"write_png16 needs H x W x C uint16 with C in 1..4, got {pixels.dtype} {pixels.shape}")
    height, width, channels = pixels.shape
    header = struct.pack(">IIBBBBB", width, height, 16, _COLOR_TYPE_OF_CHANNELS[channels], 0, 0, 0)
    out.write(SIGNATURE + _chunk(b"IHDR", header))
    if icc_profile:
        out.write(_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc_profile)))
    if dpi:
        # pHYs stores pixels per metre; Pillow reads it back as dpi = ppm * 0.0254.
        ppm = [int(round(d / 0.0254)) for d in dpi]
        out.write(_chunk(b"pHYs", struct.pack(">IIB", ppm[0], ppm[1], 1)))
    if exif:
        out.write(_chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif))
    row_bytes = width * channels * 2
    band = max(1, _WRITE_BAND_BYTES // max(1, row_bytes))
    deflate = zlib.compressobj(compress_level)
    above = np.zeros(row_bytes, dtype=np.uint8)  # the row before the first one is zeros
    for y0 in range(0, height, band):
        rows = np.ascontiguousarray(pixels[y0 : y0 + band].astype(">u2")).view(np.uint8).reshape(-1, row_bytes)
        # The Up filter: cheap to apply and to undo with whole-row vector operations.
        filtered = np.empty((rows.shape[0], 1 + row_bytes), dtype=np.uint8)
        filtered[:, 0] = 2
        filtered[:, 1:] = rows
        filtered[1:, 1:] -= rows[:-1]
        filtered[0, 1:] -= above
        above = rows[-1].copy()
        piece = deflate.compress(filtered)
        if piece:
            out.write(_chunk(b"IDAT", piece))
    out.write(_chunk(b"IDAT", deflate.flush()) + _chunk(b"IEND", b""))
