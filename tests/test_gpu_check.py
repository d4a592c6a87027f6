"""The GPU check runs end to end in its tiny CPU mode, so it is known to work when a GPU appears.

``benchmarks/gpu_check.py --smoke`` is the same script ``scripts/gpu-check.sh`` runs on a GPU,
with every part shrunk: part 1 collects the gpu tests (they skip here), part 2 times one step of
each preset, part 3 trains a teacher for 3 steps and distils three students side by side.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cli_helpers import write_training_photos

REPO = Path(__file__).resolve().parents[1]


def tiny_data_root(root: Path) -> Path:
    write_training_photos(root / "train-photos", [f"p{i}.png" for i in range(3)])
    write_training_photos(root / "benchmarks" / "Set5", ["a.png"])
    write_training_photos(root / "benchmarks" / "Set14", ["b.png"])
    return root


def test_gpu_check_smoke_runs_every_part_and_writes_markdown_tables(tmp_path):
    data, out = tiny_data_root(tmp_path / "data"), tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--smoke", "--data-root", str(data),
                           "--out", str(out)], capture_output=True, text=True, timeout=400, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    markdown = (out / "gpu-check.md").read_text()
    for title in ("### Machine", "### Part 1: pytest -m gpu", "### Training throughput", "### Upscale throughput",
                  "### Data loading vs compute", "### Real-scale run on cpu"):
        assert title in markdown, title
    assert "failed" not in markdown.lower(), markdown
    assert "needs a CUDA device" in markdown  # the gpu tests were collected, and skipped here
    for model in ("teacher edsr-baseline", "edsr-lite scratch", "edsr-lite logits", "edsr-lite mipkd"):
        assert f"| Set5 | {model} |" in markdown and f"| Set14 | {model} |" in markdown, model


def test_without_data_the_check_says_what_to_pass(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--smoke", "--data-root",
                           str(tmp_path / "nothing"), "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--data-root" in proc.stdout and "--stage-data" in proc.stdout
