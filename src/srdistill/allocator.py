"""Host memory allocator settings for long-running work (training, distillation).

A training step allocates and frees the same large activations (tens of MB each) every step.
glibc's malloc serves blocks over its mmap threshold with a fresh ``mmap`` and returns them with
``munmap``, and trims freed memory at the top of the heap back to the system: either way the next
step touches new pages, and the kernel zeroes each one on its first touch. On the 2-core machine
this was developed on that was 0.7 million page faults per 8 steps of ``edsr-lite`` and 15-25 %
of the step time (benchmarks/RESULTS.md, "train_step: allocators").

:func:`tune_host_allocator` keeps glibc from giving memory back (``mmap`` off, trimming off),
so after the first step every allocation is served from pages the process already has. The cost:
the process keeps its peak heap until it exits, which a training process does anyway. A
preloaded tcmalloc or jemalloc (``LD_PRELOAD``) is left alone, and ``SRDISTILL_ALLOCATOR=system``
keeps glibc's defaults.
"""

from __future__ import annotations

import ctypes
import os
import platform
from pathlib import Path

ENV = "SRDISTILL_ALLOCATOR"
# mallopt(3) parameter numbers (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_PRELOADABLE = ("tcmalloc", "jemalloc", "mimalloc")

_state: str | None = None


def preloaded_allocator() -> str | None:
    """The name of a replacement allocator mapped into this process (LD_PRELOAD), if any."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    return next((name for name in _PRELOADABLE if f"lib{name}" in maps), None)


def tune_host_allocator() -> str:
    """Make the host allocator keep freed memory; returns a description for the run's records.

    Called once per process; later calls return the first answer. Process-wide on purpose: the
    allocations to keep are torch's, and they go through the C allocator.
    """
    global _state
    if _state is not None:
        return _state
    preloaded = preloaded_allocator()
    if preloaded:
        _state = f"{preloaded} (preloaded)"
    elif os.environ.get(ENV, "").lower() == "system":
        _state = f"system default ({ENV}=system)"
    elif platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        _state = "system default (not glibc)"
    else:
        libc = ctypes.CDLL(None)
        # mallopt returns 1 on success. A trim threshold of -1 turns trimming off (mallopt(3)).
        ok = libc.mallopt(_M_MMAP_MAX, 0) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, -1) == 1
        _state = "glibc, memory kept (mmap and trim off)" if ok else "glibc default (mallopt refused)"
    return _state
