"""Real processes and real signals: SIGKILL + resume is bit-identical; SIGTERM/SIGINT checkpoint
and exit 143/130 with a resume hint; a second Ctrl-C aborts at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import TINY_ARGS
from safetensors.torch import load_file

from srdistill.io.checkpoints import checkpoint_path

STEPS = 12


def start(images, run, delay: float, *extra):
    env = {**os.environ, "COLUMNS": "300", "SRDISTILL_TEST_STEP_DELAY": str(delay)}
    cmd = [sys.executable, "-m", "srdistill", "train", *TINY_ARGS, "--data", str(images), "--steps", str(STEPS),
           "--ema", "0.9", "--run-dir", str(run), *map(str, extra)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def wait_for(path, proc, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


@pytest.mark.slow
def test_sigkill_then_resume_is_bit_identical(tmp_path, images):
    straight = start(images, tmp_path / "straight", 0, "--checkpoint-every", STEPS // 2)
    killed = start(images, tmp_path / "killed", 0.2, "--checkpoint-every", STEPS // 2)
    wait_for(checkpoint_path(tmp_path / "killed", STEPS // 2), killed)
    killed.send_signal(signal.SIGKILL)  # mid-way through the second half: no chance to clean up
    killed.communicate()
    assert killed.returncode == -signal.SIGKILL
    assert not (tmp_path / "killed" / "model.safetensors").exists()
    out, err = straight.communicate(timeout=120)
    assert straight.returncode == 0, err
    resumed = subprocess.run(
        [sys.executable, "-m", "srdistill", "train", "--run-dir", str(tmp_path / "killed"), "--resume", "auto"],
        capture_output=True, text=True, timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed at step {STEPS // 2}" in resumed.stdout
    a = load_file(tmp_path / "straight" / "model.safetensors")
    b = load_file(tmp_path / "killed" / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].equal(b[key]), key


@pytest.mark.slow
@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_checkpoints_and_exits_with_a_resume_hint(tmp_path, images, sig, code):
    run = tmp_path / "run"
    proc = start(images, run, 0.3, "--checkpoint-every", 2)
    wait_for(checkpoint_path(run, 2), proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert f"stopped by {sig.name} at step" in lines[0]
    assert f"resume with: srdistill train --run-dir {run} --resume auto" in lines[0]
    step = int(lines[0].split(" at step ")[1].split(";")[0])
    assert step < STEPS and checkpoint_path(run, step).exists()


@pytest.mark.slow
def test_second_ctrl_c_aborts_at_once(tmp_path, images):
    run = tmp_path / "run"
    proc = start(images, run, 10.0, "--checkpoint-every", 1)
    wait_for(checkpoint_path(run, 1), proc)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.2)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - sent < 3.0  # not the 5 s the step would take
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err
    assert checkpoint_path(run, 1).exists()
