"""Run the real ``srdistill`` command in a subprocess and check the error contract."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace


def run_cli(*args: str | Path, cwd: Path | None = None, env: dict | None = None, timeout: float = 120):
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "srdistill", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=full_env,
        timeout=timeout,
    )


def invoke(*args) -> SimpleNamespace:
    """Run ``srdistill ARGS`` in this process (Typer's runner): faster than :func:`run_cli` where
    the test also patches the library (bundled weights, memory limits)."""
    from typer.testing import CliRunner

    from srdistill.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    return SimpleNamespace(returncode=result.exit_code, stdout=result.stdout, stderr=result.stderr)


def assert_one_line_error(result, *fragments: str, code: int | None = None) -> str:
    """Non-zero exit, no traceback, exactly one line on stderr that contains every fragment."""
    assert result.returncode != 0, result.stdout
    if code is not None:
        assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def write_training_photos(folder: Path, names: list[str]) -> Path:
    """Tiny 64x72 training photos (a ramp plus noise: texture enough for patches) named ``names``."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in names:
        ramp = np.linspace(0, 255, 72)[None, :, None] * np.ones((64, 1, 3))
        img = (ramp + rng.normal(0, 12, (64, 72, 3))).clip(0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / name)
    return folder
