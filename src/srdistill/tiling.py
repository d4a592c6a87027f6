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
untiled up to float rounding. Trained networks' effective radius is much smaller than ``r``, so
the default pad (24) is already far below 1/255 in practice. Window-attention networks (SwinIR)
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
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from .errors import UsageError

DEFAULT_TILE_PAD = 24
# Largest CPU tile core: beyond this, tiles stop getting faster (measured in benchmarks/upscale.py)
# while the activations keep growing.
CPU_MAX_TILE = 512
GPU_MAX_TILE = 2048
MIN_TILE = 16
# Memory the activations of one tile may take on the CPU (the rest is the image and its output).
CPU_TILE_BUDGET = 768 * 2**20
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
@dataclass
class Runner:
    """A private copy of the network prepared for inference: device, dtype, channels_last."""

    net: nn.Module
    device: torch.device
    dtype: torch.dtype
    scale: int
    multiple: int
    channels_last: bool

    @classmethod
    def prepare(cls, net: nn.Module, scale: int, multiple: int, device: torch.device, dtype: torch.dtype) -> Runner:
        # A copy, so the caller's model keeps its device and dtype (no surprise side effects).
        # channels_last: oneDNN/cuDNN convolutions run natively in NHWC; measured faster on CPU and GPU.
        channels_last = device.type in ("cpu", "cuda")
        prepared = copy.deepcopy(net).eval().to(device=device, dtype=dtype)
        if channels_last:
            prepared = prepared.to(memory_format=torch.channels_last)
        for p in prepared.parameters():
            p.requires_grad_(False)
        return cls(prepared, device, dtype, scale, max(1, multiple), channels_last)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """CPU float32 ``B x 3 x h x w`` (sides multiples of ``multiple``) -> CPU float32 output."""
        try:
            inp = x.to(self.device, self.dtype, non_blocking=True)
            if self.channels_last:
                inp = inp.contiguous(memory_format=torch.channels_last)
            out = self.net(inp)
            return out.to("cpu", torch.float32).contiguous()
        except torch.OutOfMemoryError as exc:
            raise TileOutOfMemory(str(exc)) from None
        except RuntimeError as exc:  # MPS and older CUDA builds raise a plain RuntimeError
            if "out of memory" in str(exc).lower():
                raise TileOutOfMemory(str(exc)) from None
            raise


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad bottom/right to a multiple, as the networks do themselves (reflect; replicate when too small)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if not (ph or pw):
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


def forward_tile(runner: Runner, x: torch.Tensor, tta: bool) -> torch.Tensor:
    """Network output for one tile (any size); ``tta``: mean over the 8 flips/rotations."""
    h, w = x.shape[-2:]
    padded = pad_to_multiple(x, runner.multiple)
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


def plan_tiles(height: int, width: int, tile: int, pad: int, multiple: int) -> TilePlan:
    if tile < 1:
        raise UsageError(f"--tile must be positive, got {tile}")
    if pad < 0:
        raise UsageError(f"--tile-pad must be >= 0, got {pad}")
    tile = max(multiple, tile // multiple * multiple)
    pad = -(-pad // multiple) * multiple  # window grids stay aligned only on multiples
    rows, cols = split_axis(height, tile, multiple), split_axis(width, tile, multiple)
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
        emit(y_lo, band[:, :, : done - y_lo])
        carry = None if last else band[:, :, done - y_lo :].clone()


# -- tile size from memory ------------------------------------------------------------------------
class _LargestTensor(TorchDispatchMode):
    """Records the largest tensor any op produces (attention matrices included)."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel() * t.element_size())
        return out


def bytes_per_input_pixel(runner: Runner) -> float:
    """Peak activation memory of one forward, per input pixel, measured on a small probe tile."""
    side = max(32, runner.multiple * 4)
    probe = torch.rand(1, 3, side, side)
    if runner.device.type == "cuda":
        torch.cuda.synchronize(runner.device)
        torch.cuda.reset_peak_memory_stats(runner.device)
        base = torch.cuda.memory_allocated(runner.device)
        with torch.inference_mode():
            runner(probe)
        torch.cuda.synchronize(runner.device)
        return (torch.cuda.max_memory_allocated(runner.device) - base) * 1.2 / (side * side)
    with torch.inference_mode(), _LargestTensor() as mode:
        runner(probe)
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


def auto_tile(runner: Runner, pad: int, *, tta: bool = False) -> int:
    """Largest tile core whose padded tile fits the memory budget of the device."""
    per_pixel = bytes_per_input_pixel(runner)
    if runner.device.type == "cuda":
        budget, cap = available_memory(runner.device) * 0.6, GPU_MAX_TILE
    elif runner.device.type == "mps":
        budget, cap = 2 * 2**30, 1024
    else:
        budget, cap = min(available_memory(runner.device) * 0.25, CPU_TILE_BUDGET), CPU_MAX_TILE
    side = int(math.sqrt(budget / max(per_pixel, 1.0))) - 2 * pad
    m = runner.multiple
    return max(max(MIN_TILE, m), min(cap, side) // m * m)
