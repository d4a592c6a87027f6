"""Seamless tiled inference: run a super-resolution network over an image of any size.

The image is split into a grid of *cores*; each tile fed to the network is its core plus
``pad`` pixels of real neighbouring context on every side (less at the image border). Of each
tile's output only the core plus a ``blend`` margin (``pad // 2``) is kept; where neighbouring
tiles' kept regions overlap they are mixed with complementary linear ramps, so weights sum to
exactly one and a residual difference between tiles fades instead of forming a seam.

When is tiled equal to untiled?  A convolutional network (EDSR, RCAN, RRDBNet) sees a finite
neighbourhood: its *receptive-field radius* ``r`` (in input pixels) is the number of 3x3 convs
applied at input resolution plus a fraction for those after upsampling (EDSR-lite: ~20). When
``pad - blend >= r`` every kept pixel saw exactly what it sees in the whole image, and tiled ==
untiled up to float rounding. Far-away pixels contribute little, so less context is usually
enough: with the default pad (24, blend 12) edsr-lite with random weights stays within 1/255
(tests/test_upscale.py), and trained networks' effective radius is smaller. Window-attention networks (SwinIR)
mix a whole ``window_size`` window per layer, so ``r`` grows by about ``window_size`` per Swin
layer; and windows must fall on the same grid as in the whole image. Hence the rules here:
core boundaries and ``pad`` are multiples of the spec's ``pad_multiple`` (the window size), so
every tile's window grid is a sub-grid of the image's; tiles at the right/bottom edge are padded
to the multiple exactly as the whole image would be. With ``pad - blend >= r`` SwinIR is exact
too; with less it is approximate (attention decays with distance in trained models).

Nothing here holds the whole image on the accelerator: one tile goes to the device, its output
comes back to the CPU, and finished rows of the output are handed to a sink band by band (the
file writer quantises them straight into the 8/16-bit output array). The network itself, on its
device and in its dtype, is a :class:`srdistill.inference.Runner`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from .errors import UsageError, param
from .inference import Runner
from .memory import available_memory, process_rss

DEFAULT_TILE_PAD = 24
# Largest CPU tile core: beyond this only the padding overhead still shrinks, by a few percent.
CPU_MAX_TILE = 768
GPU_MAX_TILE = 2048
MIN_TILE = 16
MiB = 2**20
# CPU memory policy: the process (libraries, input, output, accumulation band, one tile's
# activations) aims at 2 GiB while it upscales, so a 12-megapixel photo upscaled x4 fits; the tile
# gets what the rest leaves, within [CPU_MIN_TILE_BUDGET, CPU_TILE_BUDGET].
CPU_MEMORY_TARGET = 2048 * MiB
CPU_TILE_BUDGET = 1024 * MiB
CPU_MIN_TILE_BUDGET = 160 * MiB
# The float accumulator of one row of tiles is full-width: for wide outputs the tiles get
# shorter (and wider) so that it stays within this.
BAND_BUDGET = 160 * MiB
# Finished rows are handed on in chunks of this many output rows (bounded temporaries).
EMIT_ROWS = 256
# Peak live memory of a forward pass relative to its largest single intermediate tensor
# (input + output of that op + a residual branch).
ACTIVATION_PEAK_FACTOR = 3.0


# -- one tile through the network ------------------------------------------------------------------
def pad_to_multiple(x: torch.Tensor, multiple: int, min_size: int = 1) -> torch.Tensor:
    """Pad bottom/right to a multiple (and at least ``min_size``), as the networks do themselves.

    Reflect, like SwinIR's and Real-ESRGAN's own padding; replicate where the side is too small
    to reflect (a 1x1 image).
    """
    h, w = x.shape[-2:]
    target_h = max(h, min_size) + (-max(h, min_size)) % multiple
    target_w = max(w, min_size) + (-max(w, min_size)) % multiple
    ph, pw = target_h - h, target_w - w
    if not (ph or pw):
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


def forward_tile(runner: Runner, x: torch.Tensor, tta: bool) -> torch.Tensor:
    """Network output for one tile (any size); ``tta``: mean over the 8 flips/rotations."""
    h, w = x.shape[-2:]
    padded = pad_to_multiple(x, runner.multiple, runner.min_size)
    if not tta:
        out = runner(padded)
    else:
        out = None
        for k in range(4):
            for flip in (False, True):
                t = torch.rot90(padded, k, (2, 3))
                t = t.flip(3) if flip else t
                y = runner(t)
                y = y.flip(3) if flip else y
                y = torch.rot90(y, -k, (2, 3))
                out = y if out is None else out.add_(y)
        out = out.div_(8)
    s = runner.scale
    return out[..., : h * s, : w * s]


# -- the grid --------------------------------------------------------------------------------------
def split_axis(length: int, tile: int, multiple: int) -> list[tuple[int, int]]:
    """Cores of nearly equal size along one axis, boundaries on multiples of ``multiple``."""
    n = max(1, math.ceil(length / tile))
    bounds = [0]
    for i in range(1, n):
        b = round(i * length / n / multiple) * multiple
        if bounds[-1] < b < length:
            bounds.append(b)
    bounds.append(length)
    return list(zip(bounds[:-1], bounds[1:]))


def _ramp_weights(cores: list[tuple[int, int]], index: int, blend: int, scale: int, length: int) -> tuple[int, int, torch.Tensor]:
    """Kept output range [lo, hi) (output pixels) of tile ``index`` and its 1-D blending weights."""
    c0, c1 = cores[index]
    first, last = index == 0, index == len(cores) - 1
    lo = c0 * scale if first else (c0 - blend) * scale
    hi = length * scale if last else (c1 + blend) * scale
    w = torch.ones(hi - lo)
    width = 2 * blend * scale
    if width:
        ramp = (torch.arange(width, dtype=torch.float32) + 0.5) / width  # + reversed = 1 exactly
        if not first:
            w[:width] = ramp
        if not last:
            w[-width:] = ramp.flip(0)
    return lo, hi, w


@dataclass(frozen=True)
class TilePlan:
    tile: int
    pad: int
    blend: int
    rows: list[tuple[int, int]]
    cols: list[tuple[int, int]]

    @property
    def count(self) -> int:
        return len(self.rows) * len(self.cols)


def plan_tiles(
    height: int, width: int, tile: int, pad: int, multiple: int, *, scale: int = 1, band_budget: int | None = None
) -> TilePlan:
    """The grid for an image. With ``band_budget`` (bytes of the float accumulator of one row of
    tiles, ``12 * width * scale^2`` per input row), tiles get shorter and wider by the same factor
    so their area -- and so their activation memory -- stays about the same."""
    if tile < 1:
        raise UsageError(f"{param('tile')} must be positive, got {tile}")
    if pad < 0:
        raise UsageError(f"{param('tile_pad')} must be >= 0, got {pad}")
    tile = max(multiple, tile // multiple * multiple)
    pad = -(-pad // multiple) * multiple  # window grids stay aligned only on multiples
    tile_h = tile_w = tile
    if band_budget is not None:
        rows_fit = int(band_budget // (12 * width * scale * scale)) - pad
        if rows_fit < tile:
            tile_h = max(multiple, max(MIN_TILE, rows_fit) // multiple * multiple)
            tile_w = max(tile, min(width + multiple, tile * tile // tile_h) // multiple * multiple)
    rows, cols = split_axis(height, tile_h, multiple), split_axis(width, tile_w, multiple)
    smallest = min(b - a for a, b in rows + cols)
    blend = min(pad // 2, smallest // 2) if len(rows) + len(cols) > 2 else 0
    return TilePlan(tile, pad, blend, rows, cols)


def run_tiled(
    runner: Runner,
    planes: torch.Tensor,
    plan: TilePlan,
    emit: Callable[[int, torch.Tensor], None],
    *,
    tta: bool = False,
    on_tile: Callable[[], None] | None = None,
) -> None:
    """Upscale ``planes`` (CPU float ``B x 3 x H x W``) tile by tile.

    ``emit(y0, band)`` receives finished output rows ``[y0, y0 + band.shape[-2])`` (float32,
    ``B x 3 x rows x sW``) in order, exactly once each. The accumulator is one band of tile rows
    (plus the blend margin carried to the next band), never the whole output.
    """
    b_, c, height, width = planes.shape
    s, pad, blend = runner.scale, plan.pad, plan.blend
    carry: torch.Tensor | None = None
    for ri, (r0, r1) in enumerate(plan.rows):
        y_lo, y_hi, wy = _ramp_weights(plan.rows, ri, blend, s, height)
        band = torch.zeros(b_, c, y_hi - y_lo, width * s)
        if carry is not None:
            band[:, :, : carry.shape[-2]] += carry
        in_y0, in_y1 = max(0, r0 - pad), min(height, r1 + pad)
        for ci, (c0, c1) in enumerate(plan.cols):
            x_lo, x_hi, wx = _ramp_weights(plan.cols, ci, blend, s, width)
            in_x0, in_x1 = max(0, c0 - pad), min(width, c1 + pad)
            out = forward_tile(runner, planes[:, :, in_y0:in_y1, in_x0:in_x1], tta)
            kept = out[:, :, y_lo - in_y0 * s : y_hi - in_y0 * s, x_lo - in_x0 * s : x_hi - in_x0 * s]
            band[:, :, :, x_lo:x_hi] += kept * (wy[:, None] * wx[None, :])
            if on_tile is not None:
                on_tile()
        last = ri == len(plan.rows) - 1
        done = y_hi if last else (r1 - blend) * s  # rows below still await the next band's ramp
        for start in range(0, done - y_lo, EMIT_ROWS):
            emit(y_lo + start, band[:, :, start : min(start + EMIT_ROWS, done - y_lo)])
        carry = None if last else band[:, :, done - y_lo :].clone()
        del band


# -- tile size from memory ------------------------------------------------------------------------
class _LargestTensor(TorchFunctionMode):
    """Records the largest tensor any torch function produces (attention matrices included).

    A function mode, not a dispatch mode: the latter's first use imports torch._dynamo (~2.5 s).
    """

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel() * t.element_size())
        return out


def bytes_per_input_pixel(runner: Runner) -> float:
    """Peak activation memory of one forward, per input pixel, measured on a small probe tile.

    CUDA: the allocator's peak. Elsewhere: the largest intermediate tensor of the forward (which
    a function mode sees, attention matrices included) times a peak factor.
    """
    side = max(16, runner.multiple * 2)
    probe = torch.rand(1, 3, side, side)
    if runner.device.type == "cuda":
        torch.cuda.synchronize(runner.device)
        torch.cuda.reset_peak_memory_stats(runner.device)
        base = torch.cuda.memory_allocated(runner.device)
        with torch.inference_mode():
            runner(probe, tune=False)
        torch.cuda.synchronize(runner.device)
        return (torch.cuda.max_memory_allocated(runner.device) - base) * 1.2 / (side * side)
    with torch.inference_mode(), _LargestTensor() as mode:
        runner(probe, tune=False)
    return mode.largest * ACTIVATION_PEAK_FACTOR / (side * side)


def auto_tile(runner: Runner, pad: int, reserved: int = 0) -> int:
    """Largest tile core whose padded tile fits the memory budget of the device.

    ``reserved``: CPU memory still to be allocated for the image (output, band); what the process
    already holds (libraries, the decoded input) is measured.
    """
    if runner.bytes_per_pixel is None:
        runner.bytes_per_pixel = bytes_per_input_pixel(runner)
    per_pixel = runner.bytes_per_pixel
    if runner.device.type == "cuda":
        budget, cap = available_memory(runner.device) * 0.6, GPU_MAX_TILE
    elif runner.device.type == "mps":
        budget, cap = 2 * 2**30, 1024
    else:
        target = min(available_memory(runner.device) * 0.5, CPU_MEMORY_TARGET)
        budget = min(max(target - process_rss() - reserved, CPU_MIN_TILE_BUDGET), CPU_TILE_BUDGET)
        cap = CPU_MAX_TILE
    side = int(math.sqrt(budget / max(per_pixel, 1.0))) - 2 * pad
    m = runner.multiple
    return max(max(MIN_TILE, m), min(cap, side) // m * m)
