"""MiPKD under torchrun (2 gloo ranks, CPU): mixers are DDP-wrapped with the student, random
routing leaves some of them unused in a step, the teacher cache is built on each rank."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from distill_helpers import small
from PIL import Image

from srdistill.models import load_model, save_model


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.dist
@pytest.mark.slow
def test_mipkd_on_two_gloo_ranks(tmp_path):
    teacher = save_model(small("swinir"), tmp_path / "teacher.safetensors")
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(photos / f"{i}.png")
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1", "COLUMNS": "300"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
         "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
         "-m", "srdistill", "distill", "--teacher", str(teacher), "--student-arch", "edsr-lite",
         "--student-opt", "n_feats=8", "--student-opt", "n_resblocks=2", "--data", str(photos), "--steps", "3",
         "--batch-size", "2", "--patch-size", "16", "--threads", "1", "--device", "cpu", "--run-dir", str(tmp_path / "run"),
         "--method", "mipkd", "--method-opt", "bpm_every=2", "--json"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)  # rank 0 alone prints
    assert summary["steps"] == 3 and summary["teacher_signal"] == "cache"
    student = load_model(summary["output"])
    assert student.metadata["provenance"]["world_size"] == 2
    assert list(student.net.state_dict()) == list(small("edsr", n_feats=8, n_resblocks=2).net.state_dict())
