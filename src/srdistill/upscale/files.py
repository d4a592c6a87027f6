"""One image file in, one upscaled file out: decode, upscale band by band, encode atomically.

8-bit stays 8-bit and 16-bit stays 16-bit where the format allows; at the model's own scale the
finished rows are quantised straight into the output array, so no full-size float image is held.
"""

from __future__ import annotations

import ctypes
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ..data.imageio import DEFAULT_MAX_PIXELS, read_image, to_tensor, write_image
from ..data.limits import DEFAULT_MAX_OUTPUT_PIXELS
from ..errors import ImageError, OutputExistsError, param, spell
from ..models import SRModel
from ..tiling import TilePlan
from .progress import ImageResult
from .upscaler import Upscaler


def quantize(x: torch.Tensor, bits: int) -> np.ndarray:
    """C x h x w float in [0, 1] -> h x w x C uint8/uint16 (round half up, as MATLAB im2uint8)."""
    peak = 255.0 if bits == 8 else 65535.0
    arr = (x * peak + 0.5).floor_().clamp_(0, peak).permute(1, 2, 0).numpy()
    return arr.astype(np.uint8 if bits == 8 else np.uint16)


def _image_tensor(pixels: np.ndarray, alpha: np.ndarray | None) -> torch.Tensor:
    if alpha is None:
        return to_tensor(pixels)
    return torch.cat([to_tensor(pixels), to_tensor(alpha)])


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
        raise OutputExistsError(f"{output} already exists; pass {param('overwrite', True)} to replace it")
    start = time.perf_counter()
    image = read_image(source, max_pixels=max_pixels)
    h, w = image.height, image.width
    out_h, out_w = upscaler.output_size(h, w)
    if out_h * out_w > max_output_pixels:
        raise ImageError(
            f"{source}: the x{upscaler.scale} output would be {out_w}x{out_h} = {out_h * out_w / 1e6:.0f} megapixels, "
            f"over the limit of {max_output_pixels / 1e6:g}; raise {param('max_output_pixels')} or use a smaller {param('scale')}"
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
        notes.append(spell(f"16-bit image computed in {str(upscaler.dtype).replace('torch.', '')} (~8-bit precision); "
                           f"{param('dtype', 'float32')} keeps all 16 bits"))
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


__all__ = ["DEFAULT_MAX_OUTPUT_PIXELS", "quantize", "upscale_file"]
