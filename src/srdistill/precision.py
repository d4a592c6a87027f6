"""Where reduced precision is not allowed, whatever precision the run trains in.

A training step runs under autocast (bf16 on CUDA by default). Autocast silently lowers matmuls
and convolutions, so anything numerically sensitive that happens *inside* a step would inherit
it: MiPKD's least-squares fit (a Gram matrix in bf16 loses three digits, and CUDA has no bf16
solve at all), the running feature statistics, the EMA of the weights. Those places run inside
:func:`float32_region` and cast their inputs to float32 themselves.

:func:`teacher_dtype_guard` is the other half: a frozen network whose spec does not declare the
run's autocast dtype safe (SwinIR in fp16 overflows) runs its forward in float32.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager

import torch

# The device types autocast exists for here; "mps"/"xpu" are not training targets.
_AUTOCAST_DEVICES = ("cpu", "cuda")


def _enabled_autocast_devices() -> list[str]:
    return [device for device in _AUTOCAST_DEVICES if torch.is_autocast_enabled(device)]


@contextmanager
def float32_region() -> Iterator[None]:
    """Autocast and TF32 matmuls off; usable as a decorator (``@float32_region()``).

    Tensors created before the region keep their dtype: callers cast their inputs with ``.float()``.
    """
    with ExitStack() as stack:
        for device in _enabled_autocast_devices():
            stack.enter_context(torch.autocast(device, enabled=False))
        stack.enter_context(_full_float32_matmuls())
        yield


@contextmanager
def _full_float32_matmuls() -> Iterator[None]:
    # A CUDA run allows TF32 matmuls (train.machine.configure_backends): 10 mantissa bits, as
    # coarse as fp16 for a Gram matrix. The setting is process-wide, so it is restored after.
    before = torch.get_float32_matmul_precision()
    if before == "highest":
        yield
        return
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


def autocast_dtype(device_type: str) -> torch.dtype | None:
    """The dtype autocast lowers to on ``device_type`` right now, or None when it is off."""
    return torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else None


def unsafe_under_autocast(device_type: str, safe_dtypes: Iterable[torch.dtype]) -> bool:
    """True when autocast is on for ``device_type`` in a dtype outside ``safe_dtypes``."""
    dtype = autocast_dtype(device_type)
    return dtype is not None and dtype not in tuple(safe_dtypes)


@contextmanager
def teacher_dtype_guard(device_type: str, safe_dtypes: Iterable[torch.dtype]) -> Iterator[bool]:
    """Run a network's forward in float32 when the current autocast dtype is not safe for it.

    Yields whether it did, so the caller knows to cast its inputs (``.float()``).
    """
    if unsafe_under_autocast(device_type, safe_dtypes):
        with torch.autocast(device_type, enabled=False):
            yield True
    else:
        yield False
