"""The one way tests reach data that stays outside the repository, in the shared folder.

Benchmark images (Set5, Set14, McMaster), the training photos and the long-trained teacher live in
``../shared`` beside the project root, which a fresh clone does not have. A test asks for what it
needs with :func:`shared_path` *inside* the test (never at import time, so collection works without
the folder) and is skipped with a one-line reason naming the missing folder.

``SRDISTILL_SHARED=/some/dir`` points the tests at a shared folder elsewhere
(``SRDISTILL_SHARED=/nonexistent`` simulates a fresh clone). ``SRDISTILL_REQUIRE_SHARED=1`` turns
every such skip into a failure: CI has the folder, so a skip there would hide a broken path.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_ENV = "SRDISTILL_SHARED"
REQUIRE_ENV = "SRDISTILL_REQUIRE_SHARED"
DEFAULT_SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def shared_root() -> Path:
    configured = os.environ.get(SHARED_ENV, "").strip()
    return Path(configured) if configured else DEFAULT_SHARED


def shared_required() -> bool:
    return os.environ.get(REQUIRE_ENV, "").strip().lower() in {"1", "true", "yes"}


def shared_path(relative: str) -> Path:
    """``<shared>/relative`` if it exists; otherwise skip the calling test (fail it when
    ``SRDISTILL_REQUIRE_SHARED=1``) with a reason that names the missing path."""
    path = shared_root() / relative
    if path.exists():
        return path
    reason = f"shared data {path} is absent (set {SHARED_ENV} to a shared folder that has {relative})"
    if shared_required():
        pytest.fail(f"{reason}; {REQUIRE_ENV}=1 requires it", pytrace=False)
    pytest.skip(reason)


def benchmark_set(name: str) -> Path:
    """A benchmark folder such as ``Set5`` (with ``HR/`` and, for Set5/Set14, ``LR_bicubic/``)."""
    return shared_path(f"data/benchmarks/{name}")
