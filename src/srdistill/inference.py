"""The network prepared for inference on a device: device and dtype choice, CPU thread count.

:class:`Runner` holds a private copy of the network on its device, in its compute dtype and
memory format, and turns one CPU float32 batch into a CPU float32 output; an out-of-memory
error becomes :class:`TileOutOfMemory`, which the tiled caller answers by halving the tile.
How the image is cut into tiles lives in :mod:`srdistill.tiling`.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .errors import UsageError, param


class TileOutOfMemory(Exception):
    """Internal: a tile did not fit on the device; the caller halves the tile and restarts."""


# -- device and dtype ------------------------------------------------------------------------------
def choose_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/"auto": CUDA, then Apple MPS, then CPU."""
    if device is not None and str(device) != "auto":
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise UsageError(f"{param('device')} {device}: CUDA is not available here; use {param('device', 'cpu')} (or leave it out)")
        if dev.type == "mps" and not torch.backends.mps.is_available():
            raise UsageError(f"{param('device')} {device}: Apple MPS is not available here; use {param('device', 'cpu')}")
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
        raise UsageError(f"{param('dtype')} {name!r} is not one of auto, float32, bfloat16, float16") from None


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
            raise UsageError(f"float16 is not supported on the CPU; use {param('dtype', 'bfloat16')} or {param('dtype', 'float32')}")
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
        # torch converts 5-D tensors too and refuses channels_last for them (plugin networks with
        # 3-D convolutions or stacked weights): such a network stays NCHW.
        channels_last = device.type in ("cpu", "cuda") and all(t.dim() != 5 for t in net.state_dict().values())
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


__all__ = ["Runner", "ThreadTuner", "TileOutOfMemory", "choose_device", "choose_dtype", "parse_dtype"]
