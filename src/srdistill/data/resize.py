"""MATLAB-compatible bicubic ``imresize`` for float tensors.

The SR field's benchmarks (Set5, Set14, DIV2K's ``LR_bicubic``) were made with MATLAB's
``imresize(img, 1/s, 'bicubic')``, and published bicubic baselines upscale with the same function.
``torch.nn.functional.interpolate(mode='bicubic')`` differs (a=-0.75, no antialiasing by default,
clamped edges), so a model trained or evaluated on its output is off by tenths of a dB. This module
reproduces MATLAB exactly:

* cubic kernel with a = -0.5, support 4;
* when shrinking, the kernel is stretched by 1/scale (antialiasing) and renormalised per row;
* output pixel ``x`` (1-based) samples input coordinate ``u = x/scale + 0.5 * (1 - 1/scale)``;
* out-of-range taps mirror the image with the edge pixel repeated (``[1..n, n..1]`` periodically);
* output length ``ceil(in * scale)``; the axis with the smaller scale is resized first.

Each axis is a linear map, so it is precomputed once per (length, scale, dtype, device) as a dense
``out x in`` matrix and applied with one batched matmul. For long axes the dense matrix is mostly
zeros, so there it is cut into bands of rows, each multiplied with only the input rows it touches.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

__all__ = ["imresize", "imresize_uint8", "output_length", "resize_weights"]

# Up to this input length one dense matrix per axis is cheapest; longer axes are cut into bands
# of output rows that each read about _BAND_INPUT_SPAN input pixels.
_DENSE_MAX_INPUT = 1024
_BAND_INPUT_SPAN = 256

# ``scale`` such as 1/3 is not exact in binary: 228 * (1/3) evaluates to 76.00000000000001 and a
# bare ceil would add a spurious row. Products this close to an integer are taken as that integer.
_LENGTH_TOLERANCE = 1e-9


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's ``cubic``)."""
    ax = np.abs(x)
    ax2 = ax * ax
    ax3 = ax2 * ax
    near = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))
    return near + far


def output_length(in_length: int, scale: float) -> int:
    """MATLAB's output length for a scale factor: ``ceil(in_length * scale)``."""
    exact = in_length * scale
    nearest = round(exact)
    if abs(exact - nearest) <= _LENGTH_TOLERANCE * max(1.0, abs(exact)):
        return int(nearest)
    return int(math.ceil(exact))


@functools.lru_cache(maxsize=64)
def resize_weights(
    in_length: int, out_length: int, scale: float, antialias: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Taps of one axis as ``(indices, weights)``, both ``out_length x taps`` (0-based, float64).

    Follows MATLAB's ``contributions``: every output pixel gets ``ceil(width) + 2`` taps starting at
    ``floor(u - width/2)``; weights are normalised to sum to one; indices are mirrored into range.
    """
    kernel_width = 4.0
    stretch = scale < 1 and antialias
    if stretch:
        kernel_width /= scale
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - kernel_width / 2.0)
    taps = int(math.ceil(kernel_width)) + 2
    indices = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]
    distance = u[:, None] - indices
    # The stretched kernel is scale * cubic(scale * d); the factor cancels in the normalisation.
    weights = _cubic(distance * scale) if stretch else _cubic(distance)
    weights = weights / weights.sum(axis=1, keepdims=True)
    # 1-based index i maps through the periodic mirror [1..n, n..1] (edge pixel repeated).
    period = 2 * in_length
    wrapped = np.mod(indices.astype(np.int64) - 1, period)
    mirrored = np.where(wrapped < in_length, wrapped, period - 1 - wrapped)
    return mirrored, weights


@functools.lru_cache(maxsize=64)
def _band_matrices(
    in_length: int, out_length: int, scale: float, antialias: bool, dtype: torch.dtype, device: torch.device
) -> tuple[tuple[int, int, int, int, torch.Tensor], ...]:
    """The axis' ``out x in`` matrix cut into row bands, each with only the input columns it uses.

    Returns ``(out_start, out_stop, in_start, in_stop, matrix)`` per band. A short axis is one
    band (the whole dense matrix); a long one is split so that each band reads a few hundred input
    pixels, which keeps the work proportional to the taps instead of ``in x out``.
    """
    indices, weights = resize_weights(in_length, out_length, scale, antialias)
    if in_length <= _DENSE_MAX_INPUT:
        band = out_length
    else:
        band = max(8, int(_BAND_INPUT_SPAN * scale))
    bands = []
    for start in range(0, out_length, band):
        stop = min(start + band, out_length)
        cols = indices[start:stop]
        lo, hi = int(cols.min()), int(cols.max()) + 1
        matrix = np.zeros((stop - start, hi - lo), dtype=np.float64)
        rows = np.repeat(np.arange(stop - start), cols.shape[1])
        # Mirrored taps can land on the same input pixel twice near the edges: accumulate.
        np.add.at(matrix, (rows, (cols - lo).ravel()), weights[start:stop].ravel())
        bands.append((start, stop, lo, hi, torch.from_numpy(matrix).to(device=device, dtype=dtype)))
    return tuple(bands)


def _resize_axis(x: torch.Tensor, axis: int, out_length: int, scale: float, antialias: bool) -> torch.Tensor:
    """Resize the last (``axis=-1``) or second-to-last (``axis=-2``) dimension of ``x``."""
    in_length = x.shape[axis]
    if in_length == out_length and scale == 1.0:
        return x  # the cubic kernel is 1 at 0 and 0 at every other integer: an exact identity
    bands = _band_matrices(in_length, out_length, scale, antialias, x.dtype, x.device)
    if len(bands) == 1:
        matrix = bands[0][4]
        return matrix @ x if axis == -2 else x @ matrix.T
    shape = list(x.shape)
    shape[axis] = out_length
    out = x.new_empty(shape)
    for start, stop, lo, hi, matrix in bands:
        if axis == -2:
            out[..., start:stop, :] = matrix @ x[..., lo:hi, :]
        else:
            out[..., start:stop] = x[..., lo:hi] @ matrix.T
    return out


def imresize(
    x: torch.Tensor,
    scale: float | None = None,
    size: tuple[int, int] | None = None,
    antialias: bool = True,
    *,
    matlab_uint8: bool = False,
) -> torch.Tensor:
    """Resize ``x`` (``N x C x H x W`` or ``C x H x W`` float) like MATLAB ``imresize(x, ..., 'bicubic')``.

    Give exactly one of ``scale`` (both axes; output ``ceil(H*scale) x ceil(W*scale)``) or ``size``
    (``(out_h, out_w)``; each axis then uses its own ``out/in`` scale, as MATLAB does).
    ``antialias=False`` matches MATLAB's ``'Antialiasing', false``. Values are neither clamped nor
    rounded; callers that need 8-bit output round (MATLAB rounds half away from zero).
    The arithmetic runs in float32, or float64 for float64 input; the result keeps ``x.dtype``.

    ``matlab_uint8=True`` is for values on the 0..255 scale and reproduces MATLAB on a ``uint8``
    image bit for bit: MATLAB stores the intermediate image (after the first axis) as ``uint8``, so
    each pass is rounded half away from zero and clamped to 0..255. That intermediate rounding is
    why a float resize rounded once at the end differs from MATLAB's ``LR_bicubic`` files by about
    0.1 gray levels on average (more where clamped overshoot feeds the second pass).
    """
    if not torch.is_tensor(x) or not x.is_floating_point():
        raise TypeError(f"imresize expects a floating-point tensor, got {type(x).__name__} "
                        f"{getattr(x, 'dtype', '')}; convert integer images with .float() first")
    if x.dim() not in (3, 4):
        raise ValueError(f"imresize expects C x H x W or N x C x H x W, got shape {tuple(x.shape)}")
    if (scale is None) == (size is None):
        raise ValueError("imresize needs exactly one of scale= or size=")
    in_h, in_w = x.shape[-2], x.shape[-1]
    if scale is not None:
        if not scale > 0 or not math.isfinite(scale):
            raise ValueError(f"imresize scale must be a positive finite number, got {scale}")
        scale_h = scale_w = float(scale)
        out_h, out_w = output_length(in_h, scale_h), output_length(in_w, scale_w)
    else:
        out_h, out_w = int(size[0]), int(size[1])
        if out_h <= 0 or out_w <= 0:
            raise ValueError(f"imresize size must be positive, got {tuple(size)}")
        scale_h, scale_w = out_h / in_h, out_w / in_w
    if in_h == 0 or in_w == 0 or out_h == 0 or out_w == 0:
        raise ValueError(f"imresize cannot resize {in_h}x{in_w} to {out_h}x{out_w}")

    compute_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    y = x.to(compute_dtype)
    # MATLAB resizes the axis with the smaller scale first (height first on ties). In float the
    # order only changes rounding noise; with ``matlab_uint8`` it decides which pass is rounded.
    passes = [(-2, out_h, scale_h), (-1, out_w, scale_w)]
    if scale_w < scale_h:
        passes.reverse()
    for axis, length, axis_scale in passes:
        y = _resize_axis(y, axis, length, axis_scale, antialias)
        if matlab_uint8:
            # uint8 saturation, then MATLAB's round half away from zero (torch.round goes to
            # even); on the clamped, non-negative range that is floor(v + 0.5).
            y = (y.clone() if y is x else y).clamp_(0, 255).add_(0.5).floor_()
    y = y.to(x.dtype)
    return y.clone() if y is x else y  # never hand back the caller's tensor itself


def imresize_uint8(hwc: np.ndarray, scale: float) -> np.ndarray:
    """``H x W x C`` uint8 resized like MATLAB ``imresize(img, scale, 'bicubic')`` on a ``uint8`` image.

    The one place the field's uint8 convention meets numpy: benchmark LR images, the bicubic
    baseline and generated training LR all come from here.
    """
    x = torch.from_numpy(hwc.transpose(2, 0, 1).astype(np.float32))
    y = imresize(x, scale=scale, matlab_uint8=True)  # already rounded and clamped to 0..255
    return np.ascontiguousarray(y.to(torch.uint8).permute(1, 2, 0).numpy())
