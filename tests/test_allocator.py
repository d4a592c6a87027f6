"""The host allocator keeps freed memory during training (allocator.py): fewer page faults, the
same results. Each check runs in a fresh interpreter, since the setting is process-wide."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# Allocates and frees a 64 MB block 30 times, as a training step does with its activations, and
# reports the page faults that took (the kernel zeroes every page a process touches anew).
CHILD = """
import json, resource, sys
import torch
from srdistill.allocator import tune_host_allocator
state = tune_host_allocator() if sys.argv[1] == "tuned" else "untouched"
torch.empty(16 << 20).fill_(1.0)  # first touch, counted for both
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(30):
    torch.empty(16 << 20).fill_(1.0)
print(json.dumps({"state": state, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def _child(mode: str, **env) -> dict:
    environment = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "SRDISTILL_ALLOCATOR")}
    environment.update(env)
    out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, env=environment, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not GLIBC, reason="the tuning applies to glibc's malloc only")
def test_tuned_glibc_reuses_freed_pages():
    plain, tuned = _child("plain"), _child("tuned")
    assert tuned["state"] == "glibc, memory kept (mmap and trim off)"
    # 30 x 64 MB = 480k fresh 4 KiB pages untuned; tuned, the block is served from pages kept.
    # (Not zero: a host that reclaims idle pages, as DAMON does here, makes some come back.)
    assert plain["faults"] > 100_000
    assert tuned["faults"] < plain["faults"] / 3


@pytest.mark.skipif(not GLIBC, reason="the tuning applies to glibc's malloc only")
def test_system_setting_keeps_glibc_defaults():
    kept = _child("tuned", SRDISTILL_ALLOCATOR="system")
    assert kept["state"] == "system default (SRDISTILL_ALLOCATOR=system)"
    assert kept["faults"] > 100_000
