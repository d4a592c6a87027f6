"""How much memory there is: free on a device, available on this host, resident in this process.

Memory policies (the upscale tile size, the training image cache) size themselves from these
numbers instead of fixed guesses, so they behave on a laptop and on a large server alike.
"""

from __future__ import annotations

import os

import torch

# Assumed when the operating system does not say (no /proc, no sysconf).
FALLBACK_AVAILABLE = 4 * 2**30


def available_host_memory() -> int:
    """Bytes of RAM the host can still give out (Linux ``MemAvailable``: free plus reclaimable)."""
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
        return FALLBACK_AVAILABLE


def available_memory(device: torch.device) -> int:
    """Free bytes on ``device``: the CUDA allocator's view for a GPU, the host's otherwise."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    return available_host_memory()


def process_rss() -> int:
    """This process's resident memory now (bytes; 0 where /proc is not available)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return 0


__all__ = ["available_host_memory", "available_memory", "process_rss"]
