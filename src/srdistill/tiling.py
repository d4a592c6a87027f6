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
file writer quantises them straight into the 8/16-bit output array).
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from .errors import UsageError

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


class TileOutOfMemory(Exception):
    """Internal: a tile did not fit on the device; the caller halves the tile and restarts."""


# -- device and dtype ------------------------------------------------------------------------------
def choose_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/"auto": CUDA, then Apple MPS, then CPU."""
    if device is not None and str(device) != "auto":
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise UsageError(f"--device {device}: CUDA is not available here; use --device cpu (or leave it out)")
        if dev.type == "mps" and not torch.backends.mps.is_available():
            raise UsageError(f"--device {device}: Apple MPS is not available here; use --device cpu")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


_DTYPE_NAMES = {
    "float32": torch.float32, "fp32": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
}


def parse_dtype(name: str | torch.dtype | None) -> torch.dtype | None:
    if name is None or isinstance(name, torch.dtype) or name == "auto":
        return None if name == "auto" else name
    try:
        return _DTYPE_NAMES[name.lower()]
    except KeyError:
        raise UsageError(f"--dtype {name!r} is not one of auto, float32, bfloat16, float16") from None


def choose_dtype(safe_dtypes: tuple[torch.dtype, ...], device: torch.device, asked: torch.dtype | None = None) -> torch.dtype:
    """The compute dtype: what was asked if the architecture is safe in it; else a fast safe default.

    Auto: CUDA uses bf16 where the GPU supports it and the spec allows (else fp16 if allowed, else
    fp32); MPS fp16 if allowed; CPU fp32 (bf16 only when asked: without native bf16 units it is
    several times slower than fp32 -- measured in benchmarks/upscale.py).
    """
    if asked is not None:
        if asked not in safe_dtypes:
            allowed = ", ".join(str(d).replace("torch.", "") for d in safe_dtypes)
            raise UsageError(f"this architecture is not numerically safe in {str(asked).replace('torch.', '')}; use one of {allowed}")
        if device.type == "cpu" and asked == torch.float16:
            raise UsageError("float16 is not supported on the CPU; use --dtype bfloat16 or float32")
        return asked
    if device.type == "cuda":
        if torch.bfloat16 in safe_dtypes and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        if torch.float16 in safe_dtypes:
            return torch.float16
    if device.type == "mps" and torch.float16 in safe_dtypes:
        return torch.float16
    return torch.float32


# -- the network on its device ---------------------------------------------------------------------
class ThreadTuner:
    """Picks the CPU thread count by timing real tiles, not by guessing.

    On an idle machine all physical cores win; on a shared, busy one, OpenMP threads wait for
    each other and one thread can be several times faster (measured: benchmarks/RESULTS.md).
    The second and third forward passes of the same shape (the first warms oneDNN up) run with
    the default count and with one thread; the faster count is kept for the rest of the work.
    """

    def __init__(self, enabled: bool, fixed: int | None = None):
        self.default = torch.get_num_threads()
        self.enabled = enabled and fixed is None and self.default > 1
        self.chosen: int | None = fixed or (None if self.enabled else self.default)
        self._calls = 0
        self._timed: tuple[tuple, float] | None = None

    def run(self, fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        if self.chosen is not None or self._calls > 8:
            if self.chosen is not None and torch.get_num_threads() != self.chosen:
                torch.set_num_threads(self.chosen)
            return fn(x)
        self._calls += 1
        if self._calls == 1:  # warm-up: primitive creation would bias the timing
            return fn(x)
        shape = tuple(x.shape)
        trial = 1 if self._timed is not None and self._timed[0] == shape else self.default
        torch.set_num_threads(trial)
        start = time.perf_counter()
        out = fn(x)
        elapsed = time.perf_counter() - start
        if trial == 1:
            self.chosen = 1 if elapsed < self._timed[1] else self.default
            torch.set_num_threads(self.chosen)
        else:
            self._timed = (shape, elapsed)
        return out

    def restore(self) -> None:
        torch.set_num_threads(self.default)


@dataclass
class Runner:
    """A private copy of the network prepared for inference: device, dtype, channels_last."""

    net: nn.Module
    device: torch.device
    dtype: torch.dtype
    scale: int
    multiple: int
    channels_last: bool
    min_size: int = 1
    threads: ThreadTuner | None = None
    bytes_per_pixel: float | None = None  # activation memory per input pixel, probed once

    @classmethod
    def prepare(
        cls, net: nn.Module, scale: int, multiple: int, device: torch.device, dtype: torch.dtype, min_size: int = 1,
        threads: int | None = None,
    ) -> Runner:
        # A copy, so the caller's model keeps its device and dtype (no surprise side effects).
        # channels_last: oneDNN/cuDNN convolutions run natively in NHWC; measured 1.5-3x faster
        # than NCHW on the CPU for the EDSR presets (benchmarks/RESULTS.md).
        channels_last = device.type in ("cpu", "cuda")
        prepared = copy.deepcopy(net).eval().to(device=device, dtype=dtype)
        if channels_last:
            prepared = prepared.to(memory_format=torch.channels_last)
        for p in prepared.parameters():
            p.requires_grad_(False)
        tuner = ThreadTuner(device.type == "cpu", threads)
        return cls(prepared, device, dtype, scale, max(1, multiple), channels_last, max(1, min_size), tuner)

    def _forward(self, inp: torch.Tensor) -> torch.Tensor:
        return self.net(inp)

    def restore_threads(self) -> None:
        if self.threads is not None:
            self.threads.restore()

    def __call__(self, x: torch.Tensor, *, tune: bool = True) -> torch.Tensor:
        """CPU float32 ``B x 3 x h x w`` (sides multiples of ``multiple``) -> CPU float32 output."""
        try:
            inp = x.to(self.device, self.dtype, non_blocking=True)
            if self.channels_last:
                inp = inp.contiguous(memory_format=torch.channels_last)
            out = self.threads.run(self._forward, inp) if tune and self.threads is not None else self.net(inp)
            return out.to("cpu", torch.float32).contiguous()
        except torch.OutOfMemoryError as exc:
            raise TileOutOfMemory(str(exc)) from None
        except RuntimeError as exc:  # MPS and older CUDA builds raise a plain RuntimeError
            if "out of memory" in str(exc).lower():
                raise TileOutOfMemory(str(exc)) from None
            raise


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
        raise UsageError(f"--tile must be positive, got {tile}")
    if pad < 0:
        raise UsageError(f"--tile-pad must be >= 0, got {pad}")
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


def available_memory(device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 * 2**30


def process_rss() -> int:
    """This process's resident memory now (bytes; 0 where /proc is not available)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return 0


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
