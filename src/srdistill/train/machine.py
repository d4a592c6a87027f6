"""Device, precision, threads and data-loader settings: every machine-dependent choice of a
training run is made here, and the fast settings are the defaults.

Measured on the 2-core CPU this was developed on (benchmarks/RESULTS.md): ``channels_last``
helps every convolutional preset; bf16 autocast helps only where the CPU has native bf16
(AVX512-BF16 or AMX) and is several times *slower* where oneDNN has to emulate it, so ``auto``
picks bf16 only there (and on CUDA GPUs with bf16 support), float32 elsewhere.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from typing import Any

import torch

from ..allocator import tune_host_allocator
from ..errors import UsageError, param

PRECISION_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"{param('device')} {name!r} is not a device (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"{param('device')} {name}: this machine has no usable CUDA GPU (use {param('device', 'cpu')})")
    if device.type not in ("cpu", "cuda"):
        raise UsageError(f"{param('device')} {name}: only cpu and cuda are supported for training")
    return device


def physical_cores() -> int:
    """Cores this process may run on, counting hyper-threads once (they share the FMA units)."""
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    cores = set()
    for cpu in allowed:
        try:
            with open(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list") as fh:
                cores.add(fh.read().strip())
        except OSError:
            cores.add(str(cpu))
    return max(1, len(cores))


def default_threads(processes_per_node: int = 1) -> int:
    return max(1, physical_cores() // max(1, processes_per_node))


def native_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    cpu = getattr(torch, "cpu", None)
    checks = [getattr(cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(check() for check in checks if check is not None)


def resolve_precision(requested: str, device: torch.device, safe_dtypes, arch: str) -> str:
    """The precision to train in; an explicit one the architecture is unsafe in is refused."""
    safe = {d for d in safe_dtypes}
    if requested == "auto":
        return "bf16" if native_bf16(device) and torch.bfloat16 in safe else "fp32"
    dtype = PRECISION_DTYPES[requested]
    if dtype not in safe:
        names = ", ".join(k for k, v in PRECISION_DTYPES.items() if v in safe)
        raise UsageError(f"{arch} is not numerically safe in {requested} (its spec allows {names}); choose one of those with {param('precision')}")
    return requested


def autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=PRECISION_DTYPES[precision])


def default_workers(device_type: str, cached: bool) -> int:
    """In-process loading on CPU (a cached patch costs ~0.1 ms; a worker would steal a core from
    the step); worker processes on GPUs, where the step is fast and the cores are idle."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if device_type == "cpu":
        return 0 if cached else max(1, min(4, cpus // 2))
    return min(4 if cached else 8, max(1, cpus - 1))


@dataclass(frozen=True)
class LoaderSettings:
    """How batches reach the device. Pinned host memory is what makes a ``non_blocking`` copy
    overlap the previous step on CUDA; on CPU both are pointless."""

    workers: int
    pin_memory: bool
    non_blocking: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def loader_settings(device: torch.device, workers: int, cached: bool) -> LoaderSettings:
    """``workers`` as asked (-1: chosen from the device and whether the images are cached)."""
    cuda = device.type == "cuda"
    return LoaderSettings(
        workers=workers if workers >= 0 else default_workers(device.type, cached), pin_memory=cuda, non_blocking=cuda,
    )


def configure_backends(device: torch.device) -> dict[str, Any]:
    """Kernel choices for a training run on ``device``; returns what was set, for the run's records.

    CUDA: cudnn.benchmark (patch sizes are fixed, so the fastest kernels are picked once) and TF32
    for what still runs in float32 (precision.float32_region turns TF32 matmuls off again for the
    numerically sensitive parts: a TF32 Gram matrix keeps 10 mantissa bits, no better than fp16).

    CPU and CUDA: the host allocator keeps freed memory (allocator.py: 15-25 % of a CPU step was
    the kernel zeroing pages that glibc had handed back the step before).
    """
    allocator = tune_host_allocator()
    if device.type != "cuda":
        return {"cudnn_benchmark": False, "tf32": False, "allocator": allocator}
    torch.backends.cudnn.benchmark = True
    torch.set_float32_matmul_precision("high")  # TF32 matmuls (cuDNN convolutions use TF32 by default)
    return {"cudnn_benchmark": True, "tf32": True, "allocator": allocator}


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler | None:
    """fp16 needs loss scaling (its range is narrow); bf16 and fp32 do not."""
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None
