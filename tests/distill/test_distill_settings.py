"""Distill settings: one precedence (explicit > TOML > run folder > default) for the API and the
CLI, per-key method options, library errors that name parameters (the CLI renders its flags), and
an interrupted run that resumes from the API and says how to resume on the command line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from cli_helpers import assert_one_line_error, run_cli, write_training_photos
from distill_helpers import small

from srdistill.cli import distill as distill_command
from srdistill.cli._console import param_flags
from srdistill.distill.api import distill, plan_distillation
from srdistill.distill.settings import SETTINGS_FILE, DistillSettings
from srdistill.errors import Interrupted, UsageError, param
from srdistill.io.checkpoints import checkpoint_path
from srdistill.models import load_model, save_model
from srdistill.train.progress import TrainCallback

TINY_STUDENT = {"n_feats": 8, "n_resblocks": 2}
TINY_ENGINE = dict(batch_size=2, patch_size=16, threads=1, val_every=0, checkpoint_every=1, log_every=1)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("settings")
    save_model(small("edsr"), root / "teacher.safetensors")
    write_training_photos(root / "photos", [f"im{i}.png" for i in range(2)])
    return root


# -- the precedence, as data ----------------------------------------------------------------------
def test_explicit_beats_toml_beats_run_folder_beats_defaults():
    explicit = DistillSettings(method_options={"l_feat": 0.25}, k=2)
    toml = DistillSettings(teacher="t.safetensors", student_arch="edsr-lite", method="mipkd",
                           method_options={"l_feat": 0.5, "bpm_every": 2}, k=1, teacher_cache="off")
    run = DistillSettings(teacher="old.safetensors", student_arch="swinir-s", student_options={"depths": "2,2"},
                          method="mipkd", method_options={"latent": 8}, boundaries="0:1", teacher_cache_dir="cache",
                          teacher_sha256="abc")
    s = DistillSettings.layered(explicit, toml, run)
    assert s.teacher == "t.safetensors" and s.student_arch == "edsr-lite"
    # Options merge key by key across the layers of the chosen method...
    assert s.method_options == {"latent": 8, "l_feat": 0.25, "bpm_every": 2}
    # ...and a student's options belong to its architecture: the run's swinir-s depths are dropped.
    assert s.student_options == {}
    # K and boundaries are one choice: the flag's K drops the run's boundaries.
    assert s.k == 2 and s.boundaries is None
    assert s.teacher_cache == "off" and s.teacher_cache_dir == "cache" and s.teacher_sha256 == "abc"
    defaults = DistillSettings.layered(None, DistillSettings())
    assert defaults.method == "logits" and defaults.teacher_cache == "auto" and defaults.method_options == {}


def test_options_of_another_method_are_dropped():
    toml = DistillSettings(method="mipkd", method_options={"l_feat": 0.5})
    assert DistillSettings.layered(DistillSettings(method="logits", method_options={"l_kd": 2}), toml).method_options == {"l_kd": 2}
    # A table that names no method holds the options of the default method (logits)...
    unnamed = DistillSettings(method_options={"l_kd": 2.0})
    assert DistillSettings.layered(DistillSettings(method="scratch"), unnamed).method_options == {}
    assert DistillSettings.layered(DistillSettings(), unnamed).method_options == {"l_kd": 2.0}
    # ...or, under a protocol, of the protocol's method.
    paper = DistillSettings(protocol="paper", method_options={"l_feat": 0.5})
    assert DistillSettings.layered(DistillSettings(), paper).method_options == {"l_feat": 0.5}
    # The same student preset keeps the lower layer's options under the new ones.
    run = DistillSettings(student_arch="edsr-lite", student_options={"n_feats": 8, "n_resblocks": 2})
    flags = DistillSettings(student_options={"n_feats": 16})
    assert DistillSettings.layered(flags, None, run).student_options == {"n_feats": 16, "n_resblocks": 2}


def test_toml_and_run_folder_problems_are_one_line_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('steps = 2\n[distill]\nteacher = "t.pth\n')
    with pytest.raises(UsageError) as caught:
        DistillSettings.from_toml(bad)
    assert str(bad) in str(caught.value) and "line 3" in str(caught.value) and "\n" not in str(caught.value)
    r = run_cli("distill", "--config", bad, "--dry-run")
    assert_one_line_error(r, str(bad), "line 3", code=2)  # not swallowed into "no teacher given"
    assert DistillSettings.from_run_dir(tmp_path) == DistillSettings()  # a run that recorded nothing
    (tmp_path / SETTINGS_FILE).write_text("{not json")
    with pytest.raises(UsageError, match="pass teacher, student_arch and method again"):
        DistillSettings.from_run_dir(tmp_path)


# -- errors name parameters; the CLI spells them as its flags ---------------------------------------
def test_library_errors_name_parameters_and_the_cli_names_flags(files):
    error = UsageError(f"{param('teacher_cache')} must be one of auto, memory, off; see {param('k')}")
    assert str(error) == "teacher_cache must be one of auto, memory, off; see k"
    assert error.params == ("teacher_cache", "k")
    flags = param_flags(distill_command.distill)
    assert flags["teacher_cache"] == "--teacher-cache" and flags["k"] == "--K" and flags["run_dir"] == "--run-dir"
    assert flags["method_options"] == "--method-opt" and flags["student_file"] == "--student"
    assert error.render(flags) == "--teacher-cache must be one of auto, memory, off; see --K"

    with pytest.raises(UsageError) as caught:
        plan_distillation(files / "teacher.safetensors", "edsr-lite", teacher_cache="sometimes")
    assert str(caught.value).startswith("teacher_cache must be one of auto, memory, off") and "--" not in str(caught.value)
    with pytest.raises(UsageError) as caught:
        plan_distillation(files / "teacher.safetensors", "edsr-lite", method="mipkd", k=3)
    assert "k 3 is larger than the depth" in str(caught.value) and "--" not in str(caught.value)
    r = run_cli("distill", "--teacher", files / "teacher.safetensors", "--student-arch", "edsr-lite",
                "--teacher-cache", "sometimes", "--dry-run")
    assert_one_line_error(r, "--teacher-cache must be one of auto, memory, off, got 'sometimes'", code=2)


# -- the API takes the same layers ------------------------------------------------------------------
def test_the_api_merges_a_toml_config_per_key(files, tmp_path):
    config = tmp_path / "run.toml"
    config.write_text(textwrap.dedent(f"""
        steps = 1
        patch_size = 16
        batch_size = 2
        threads = 1
        [distill]
        teacher = "{files / 'teacher.safetensors'}"
        student_arch = "edsr-lite"
        student_opt = {{ n_feats = 8, n_resblocks = 2 }}
        method = "mipkd"
        method_opt = {{ l_feat = 0.5, bpm_every = 2 }}
    """))
    result = distill(data=files / "photos", config=config, method_options={"l_feat": 0.25}, run_dir=str(tmp_path / "run"),
                     callback=TrainCallback())
    provenance = load_model(result.output).metadata["provenance"]
    assert provenance["method"] == "mipkd"
    assert provenance["method_options"]["l_feat"] == 0.25 and provenance["method_options"]["bpm_every"] == 2
    recorded = json.loads((tmp_path / "run" / SETTINGS_FILE).read_text())
    assert recorded["student_options"] == {"n_feats": 8, "n_resblocks": 2}
    assert recorded["method_options"]["bpm_every"] == 2 and recorded["teacher_cache"] == "auto"


class _SignalAt(TrainCallback):
    """Sends this process a real SIGINT after ``step``: the engine finishes the step, checkpoints
    and stops, as on a user's Ctrl-C."""

    def __init__(self, step: int):
        self.step = step

    def on_step(self, report) -> None:
        if report.step == self.step:
            os.kill(os.getpid(), signal.SIGINT)


def test_an_interrupted_api_run_resumes_from_the_api_alone(files, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(Interrupted) as caught:
        distill(files / "teacher.safetensors", "edsr-lite", files / "photos", student_options=TINY_STUDENT,
                method="fitnet", method_options={"l_feat": 0.3}, k=1, steps=4, run_dir=str(run),
                callback=_SignalAt(2), **TINY_ENGINE)
    stopped = caught.value
    assert stopped.run_dir == run and stopped.step == 2 and stopped.exit_code == 130
    assert f"resume with run_dir={str(run)!r}, resume='auto'" in str(stopped)
    assert checkpoint_path(run, 2).exists() and not (run / "model.safetensors").exists()

    # Teacher, student, method and its options come from the run folder.
    result = distill(run_dir=str(run), resume="auto", callback=TrainCallback())
    assert result.steps == 4 and result.resumed_from is not None
    provenance = load_model(result.output).metadata["provenance"]
    assert provenance["method"] == "fitnet" and provenance["method_options"]["l_feat"] == 0.3
    assert provenance["boundaries"] is not None and len(provenance["boundaries"].split(",")) == 1
    assert load_model(result.output).hparams["n_feats"] == 8


@pytest.mark.slow
def test_an_interrupted_cli_run_prints_the_distill_resume_command(files, tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "COLUMNS": "300", "SRDISTILL_TEST_STEP_DELAY": "0.3"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "srdistill", "distill", "--teacher", str(files / "teacher.safetensors"),
         "--student-arch", "edsr-lite", "--student-opt", "n_feats=8", "--student-opt", "n_resblocks=2",
         "--method", "logits", "--data", str(files / "photos"), "--steps", "20", "--batch-size", "2",
         "--patch-size", "16", "--threads", "1", "--checkpoint-every", "1", "--run-dir", str(run)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    deadline = time.monotonic() + 120
    while not checkpoint_path(run, 1).exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    # Progress notes ("caching the teacher's output ...") share stderr; the interruption is one line.
    lines = [line for line in err.splitlines() if line.startswith("stopped:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "stopped by SIGTERM at step" in lines[0]
    assert f"resume with: srdistill distill --run-dir {run} --resume auto" in lines[0]
    # The printed command works as printed.
    again = run_cli("distill", "--run-dir", run, "--resume", "auto", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["steps"] == 20 and json.loads(again.stdout)["method"] == "logits"
