"""``log = ["tensorboard"]`` / ``--log tensorboard``: real tiny runs, their event files read back
with TensorBoard's own reader; and the one-line refusal when the package is missing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from cli_helpers import assert_one_line_error
from conftest import TINY_ARGS, TINY_CONFIG
from typer.testing import CliRunner

from srdistill.cli import app
from srdistill.errors import UsageError
from srdistill.io import checkpoints as ck
from srdistill.train import TrainConfig, train
from srdistill.train.config import build_config

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def events(folder):
    acc = event_accumulator.EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def scalars(acc, tag) -> dict[int, float]:
    return {e.step: e.value for e in acc.Scalars(tag)}


def metrics(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_the_train_command_logs_losses_lr_validation_and_images(tmp_path, images):
    run = tmp_path / "run"
    r = CliRunner().invoke(app, ["train", *TINY_ARGS, "--data", str(images), "--val-data", str(images), "--val-every", "2",
                                 "--steps", "4", "--run-dir", str(run), "--log", "tensorboard", "--json"])
    assert r.exit_code == 0, r.stderr
    acc = events(run / "tensorboard")
    tags = acc.Tags()
    assert {"loss/total", "loss/l1", "train/lr", "val/psnr_y", "val/ssim_y"} <= set(tags["scalars"])
    val = [rec for rec in metrics(run) if "val_psnr_y" in rec]
    assert scalars(acc, "val/psnr_y") == pytest.approx({rec["step"]: rec["val_psnr_y"] for rec in val}, rel=1e-6)
    assert scalars(acc, "val/ssim_y") == pytest.approx({rec["step"]: rec["val_ssim_y"] for rec in val}, rel=1e-6)
    assert sorted(scalars(acc, "val/psnr_y")) == [2, 4]
    # The first three validation images, output beside HR, at each validation.
    assert sorted(tags["images"]) == ["val/img00", "val/img01", "val/img02"]
    shown = acc.Images("val/img00")
    assert [e.step for e in shown] == [2, 4]
    hr_h, hr_w = 40, 48  # write_images' first image
    assert (shown[-1].height, shown[-1].width) == (hr_h, 2 * hr_w + 4)
    assert json.loads(r.stdout)["config"]["log"] == ["tensorboard"]


def test_loss_terms_are_the_logged_window_averages_and_a_resume_replaces_the_lost_steps(tmp_path, images):
    cfg = dict(TINY_CONFIG, data=str(images), run_dir=str(tmp_path / "run"), log=["tensorboard"], log_every=1,
               checkpoint_every=2, val_every=0)
    first = train(TrainConfig(**cfg, steps=4))
    # As if killed before the step-4 checkpoint: the resumed run starts at 2 and logs 3 and 4 again.
    ck.list_checkpoints(first.run_dir)[-1].unlink()
    train(TrainConfig(**cfg, steps=6, resume="auto"))
    acc = events(first.run_dir / "tensorboard")
    logged = {rec["step"]: rec for rec in metrics(first.run_dir) if "loss_l1" in rec}
    assert sorted(logged) == [1, 2, 3, 4, 5, 6]
    l1 = acc.Scalars("loss/l1")
    assert [e.step for e in l1] == [1, 2, 3, 4, 5, 6]  # the first run's 3 and 4 purged, not shown twice
    assert {e.step: e.value for e in l1} == pytest.approx({s: rec["loss_l1"] for s, rec in logged.items()}, rel=1e-5)
    assert scalars(acc, "train/lr") == pytest.approx({s: rec["lr"] for s, rec in logged.items()}, rel=1e-5)


def test_log_in_toml_and_unknown_loggers(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('arch = "edsr-lite"\ndata = "photos"\nsteps = 1\nlog = ["tensorboard"]\n')
    assert build_config({}, toml).log == ["tensorboard"]
    assert build_config({"log": "none"}, toml).log == []  # the flag turns the file's (or a resumed run's) logging off
    with pytest.raises(UsageError, match="wandb is not a logger; known: tensorboard"):
        build_config({"log": "wandb"}, toml)


def test_without_the_package_the_flag_is_one_line_before_training(tmp_path, images):
    # A Python that cannot import tensorboard (as after a plain `pip install srdistill`).
    without = "import sys; sys.modules['tensorboard'] = None; from srdistill.cli import run; sys.argv[0] = 'srdistill'; run()"
    r = subprocess.run([sys.executable, "-c", without, "train", *TINY_ARGS, "--data", str(images), "--steps", "2",
                        "--run-dir", str(tmp_path / "run"), "--log", "tensorboard"],
                       capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})
    assert_one_line_error(r, "--log tensorboard needs the tensorboard package", "pip install 'srdistill[tensorboard]'", code=2)
    assert not (tmp_path / "run").exists()  # refused before the run folder, the model or the data
