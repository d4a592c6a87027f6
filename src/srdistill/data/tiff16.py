"""16-bit colour TIFF, read and written without losing the low byte.

Pillow reduces 16-bit RGB/RGBA TIFFs to 8 bits and cannot write them. Reading keeps Pillow (and
its libtiff) for everything hard: the strips or tiles of the colour image are copied unchanged into
a rebuilt *grayscale* 16-bit TIFF whose rows are ``samples * width`` wide, which Pillow decodes
losslessly as ``I;16``. Decompression (LZW, Deflate, PackBits) works on bytes, so it is unaffected;
the horizontal predictor, which works per sample, is switched off in the rebuilt file and undone
here. Writing is a plain baseline TIFF (Deflate, horizontal predictor) built with numpy and zlib.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterable, Iterator
from typing import BinaryIO

import numpy as np
from PIL import Image

__all__ = ["TiffFormatError", "is_tiff16_color", "read_tiff16", "write_tiff16"]

_SHORT, _LONG, _RATIONAL, _UNDEFINED = 3, 4, 5, 7
_TYPE_CODES = {_SHORT: "H", _LONG: "I", _RATIONAL: "II", _UNDEFINED: "B"}
# Decompression that works on bytes regardless of the sample layout (none, LZW, Deflate x2, PackBits).
_BYTE_CODECS = {1, 5, 8, 32946, 32773}


class TiffFormatError(ValueError):
    """The TIFF cannot be decoded losslessly here (the caller turns this into an ImageError)."""


def is_tiff16_color(im: Image.Image) -> bool:
    """Whether ``im`` (an opened TIFF) has 16-bit samples and more than one sample per pixel."""
    tags = getattr(im, "tag_v2", None)
    if tags is None:
        return False
    bits = tags.get(258, (1,))
    bits = bits if isinstance(bits, tuple) else (bits,)
    return int(tags.get(277, 1)) >= 2 and all(int(b) == 16 for b in bits)


def _write_tiff(out: BinaryIO, order: str, width: int, height: int, tags: dict[int, tuple[int, object]],
                blobs: Iterable[bytes], tiled: bool) -> None:
    """A classic single-IFD TIFF holding ``blobs`` as its strips (or tiles), with extra ``tags``.

    Each blob is written as it comes; the IFD follows them and the header's pointer to it is
    patched last, so ``out`` must be seekable.
    """
    start = out.tell()
    out.write((b"II*\x00" if order == "<" else b"MM\x00*") + b"\x00\x00\x00\x00")  # IFD offset, patched at the end
    position = 8
    offsets, counts = [], []
    for blob in blobs:
        offsets.append(position)
        counts.append(len(blob))
        out.write(blob)
        position += len(blob)
        if position % 2:
            out.write(b"\x00")
            position += 1
    entries = dict(tags)
    entries[256] = (_LONG, [width])
    entries[257] = (_LONG, [height])
    entries[324 if tiled else 273] = (_LONG, offsets)
    entries[325 if tiled else 279] = (_LONG, counts)
    packed = []
    for tag in sorted(entries):
        kind, values = entries[tag]
        if kind == _UNDEFINED:
            data, count = bytes(values), len(values)
        elif kind == _RATIONAL:
            flat = [v for pair in values for v in pair]
            data, count = struct.pack(f"{order}{len(flat)}I", *flat), len(values)
        else:
            data, count = struct.pack(f"{order}{len(values)}{_TYPE_CODES[kind]}", *values), len(values)
        packed.append((tag, kind, count, data))
    tail = bytearray()
    value_area = {}
    for tag, _, _, data in packed:
        if len(data) > 4:
            value_area[tag] = position + len(tail)
            tail += data + (b"\x00" if len(data) % 2 else b"")
    ifd_offset = position + len(tail)
    tail += struct.pack(f"{order}H", len(packed))
    for tag, kind, count, data in packed:
        field = struct.pack(f"{order}I", value_area[tag]) if tag in value_area else data.ljust(4, b"\x00")
        tail += struct.pack(f"{order}HHI", tag, kind, count) + field
    tail += b"\x00\x00\x00\x00"
    out.write(tail)
    end = out.tell()
    out.seek(start + 4)
    out.write(struct.pack(f"{order}I", ifd_offset))
    out.seek(end)


def _build_tiff(order: str, width: int, height: int, tags: dict[int, tuple[int, object]],
                blobs: list[bytes], tiled: bool) -> bytes:
    """:func:`_write_tiff` into memory (the reader rebuilds small single-plane TIFFs this way)."""
    buffer = io.BytesIO()
    _write_tiff(buffer, order, width, height, tags, blobs, tiled)
    return buffer.getvalue()


def read_tiff16(data: bytes, im: Image.Image) -> np.ndarray:
    """Decode the first image of a 16-bit multi-sample TIFF to ``H x W x C`` uint16.

    ``im`` is the same file opened by Pillow (its parsed tags are reused).
    """
    tags = im.tag_v2
    order = "<" if data[:2] == b"II" else ">"
    width, height, samples = int(tags[256]), int(tags[257]), int(tags.get(277, 1))
    compression = int(tags.get(259, 1))
    predictor = int(tags.get(317, 1))
    planar = int(tags.get(284, 1))
    sample_format = tags.get(339, (1,))
    sample_format = sample_format if isinstance(sample_format, tuple) else (sample_format,)
    if compression not in _BYTE_CODECS:
        raise TiffFormatError(f"16-bit TIFF compression {compression} is not supported losslessly")
    if predictor not in (1, 2) or any(int(s) != 1 for s in sample_format):
        raise TiffFormatError("only unsigned-integer 16-bit TIFF samples without a float predictor are supported")
    tiled = 322 in tags
    if tiled:
        tile_w, tile_h = int(tags[322]), int(tags[323])
        offsets, counts = tags[324], tags[325]
    else:
        rows_per_strip = int(tags.get(278, height))
        offsets, counts = tags[273], tags[279]
    blobs = [data[o : o + c] for o, c in zip(offsets, counts)]
    if any(len(b) != c for b, c in zip(blobs, counts)):
        raise TiffFormatError("TIFF image data is truncated")

    # Contiguous samples: one gray image `samples` times wider. Separate planes: one gray image
    # per sample; the first len/samples strips (or tiles) are plane 0, and so on.
    if planar == 1:
        planes = [blobs]
    else:
        per_plane = len(blobs) // samples
        planes = [blobs[i * per_plane : (i + 1) * per_plane] for i in range(samples)]
    spread = samples if planar == 1 else 1
    decoded = []
    for plane_blobs in planes:
        layout = {258: (_SHORT, [16]), 259: (_SHORT, [compression]), 262: (_SHORT, [1]),
                  277: (_SHORT, [1]), 284: (_SHORT, [1]), 339: (_SHORT, [1])}
        if tiled:
            layout[322] = (_LONG, [tile_w * spread])
            layout[323] = (_LONG, [tile_h])
        else:
            layout[278] = (_LONG, [rows_per_strip])
        gray = _build_tiff(order, width * spread, height, layout, plane_blobs, tiled)
        try:
            with Image.open(io.BytesIO(gray)) as plane_image:
                plane_image.load()
                arr = np.asarray(plane_image)
        except (OSError, ValueError) as exc:
            raise TiffFormatError(f"16-bit TIFF image data is truncated or corrupt ({exc})") from None
        decoded.append(arr.astype(np.uint16).reshape(height, width, spread))
    pixels = decoded[0] if planar == 1 else np.concatenate(decoded, axis=2)
    if predictor == 2:
        # Horizontal differencing restarts at the left edge of every strip row or tile row.
        step = tile_w if tiled else width
        for x0 in range(0, width, step):
            np.cumsum(pixels[:, x0 : x0 + step], axis=1, dtype=np.uint16, out=pixels[:, x0 : x0 + step])
    return pixels


def write_tiff16(
    out: BinaryIO, pixels: np.ndarray, *, icc_profile: bytes | None = None, dpi: tuple[float, float] | None = None
) -> None:
    """Encode ``H x W x C`` uint16 (C = 3: RGB, 4: RGBA) as a Deflate TIFF into ``out`` (seekable).

    Strips are differenced and compressed one at a time and written as they are made.
    (16-bit gray+alpha is left out: Pillow cannot even open such a TIFF to read it back.)
    """
    if pixels.dtype != np.uint16 or pixels.ndim != 3 or pixels.shape[2] not in (3, 4):
        raise ValueError(f"write_tiff16 needs H x W x C uint16 with C in 3..4, got {pixels.dtype} {pixels.shape}")
    height, width, samples = pixels.shape
    row_bytes = width * samples * 2
    rows_per_strip = max(1, min(height, (1 << 18) // max(1, row_bytes)))

    def strips() -> Iterator[bytes]:
        for y in range(0, height, rows_per_strip):
            strip = pixels[y : y + rows_per_strip]
            # Horizontal predictor: store differences along each row, per sample (uint16 wraps around).
            diff = strip.copy()
            diff[:, 1:] -= strip[:, :-1]
            yield zlib.compress(diff.astype("<u2").tobytes(), 6)

    tags = {
        258: (_SHORT, [16] * samples),
        259: (_SHORT, [8]),
        262: (_SHORT, [2]),  # RGB
        277: (_SHORT, [samples]),
        278: (_LONG, [rows_per_strip]),
        284: (_SHORT, [1]),
        317: (_SHORT, [2]),
        339: (_SHORT, [1] * samples),
    }
    if samples == 4:
        tags[338] = (_SHORT, [2])  # unassociated (straight) alpha
    if dpi:
        tags[282] = (_RATIONAL, [(int(round(dpi[0] * 1000)), 1000)])
        tags[283] = (_RATIONAL, [(int(round(dpi[1] * 1000)), 1000)])
        tags[296] = (_SHORT, [2])  # inches
    if icc_profile:
        tags[34675] = (_UNDEFINED, icc_profile)
    _write_tiff(out, "<", width, height, tags, strips(), tiled=False)
