"""The engine in-process: named loss terms, extra modules, non-finite steps, full disk, resume."""

from __future__ import annotations

import errno
import json
import os
import signal

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_CONFIG
from safetensors.torch import load_file
from torch import nn

from srdistill.errors import Interrupted, UsageError
from srdistill.io import checkpoints as ck
from srdistill.io.checkpoints import CheckpointError
from srdistill.models import load_model
from srdistill.train import Objective, TrainCallback, TrainConfig, TrainingDiverged, train


class Recorder(TrainCallback):
    def __init__(self):
        self.messages, self.infos, self.reports, self.vals = [], [], [], []

    def on_message(self, text):
        self.messages.append(text)

    def on_info(self, text):
        self.infos.append(text)

    def on_step(self, report):
        self.reports.append(report)

    def on_validation(self, step, result):
        self.vals.append((step, result))


def config(tmp_path, images, **kw) -> TrainConfig:
    values = dict(TINY_CONFIG, data=str(images), run_dir=str(tmp_path / "run"), steps=6, checkpoint_every=3)
    values.update(kw)
    return TrainConfig(**values)


class WithAdapter(Objective):
    """A distillation-shaped objective: an extra trainable module and two weighted terms."""

    name = "adapter-test"
    weights = {"l_aux": 0.5}

    def __init__(self, nan_from: int | None = None, nan_term: str = "l_aux"):
        self.adapter = nn.Conv2d(3, 3, 1)
        self.nan_from, self.nan_term, self.calls = nan_from, nan_term, 0

    def modules(self):
        return {"adapter": self.adapter}

    def losses(self, batch, student):
        self.calls += 1
        sr = student(batch.lr)
        terms = {"l1": F.l1_loss(sr, batch.hr), "l_aux": F.l1_loss(self.adapter(sr), batch.hr)}
        if self.nan_from is not None and self.calls >= self.nan_from:
            terms[self.nan_term] = terms[self.nan_term] * float("nan")
        return terms


def test_extra_modules_are_trained_checkpointed_and_kept_out_of_the_model(tmp_path, images):
    objective = WithAdapter()
    before = objective.adapter.weight.detach().clone()
    rec = Recorder()
    result = train(config(tmp_path, images), objective=objective, callback=rec)
    assert not torch.equal(before, objective.adapter.weight)  # optimised with the student
    state = ck.load_checkpoint(ck.list_checkpoints(result.run_dir)[-1])
    assert set(state["extras"]) == {"adapter"}
    saved = load_file(result.output)
    assert not any("adapter" in k for k in saved)
    assert set(saved) == set(load_model(result.output).net.state_dict())
    assert set(rec.reports[-1].terms) == {"l1", "l_aux"}
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [r for r in records if "loss" in r]
    assert {"loss_l1", "loss_l_aux"} <= set(losses[-1])
    assert losses[-1]["loss"] == pytest.approx(losses[-1]["loss_l1"] + 0.5 * losses[-1]["loss_l_aux"])


def test_a_non_finite_term_is_named_and_the_step_skipped(tmp_path, images):
    rec = Recorder()
    objective = WithAdapter(nan_from=3, nan_term="l_aux")
    with pytest.raises(TrainingDiverged, match=r"stopped at step 5: 3 steps in a row were non-finite \(last: non-finite loss in term 'l_aux'\)"):
        train(config(tmp_path, images, max_bad_steps=3), objective=objective, callback=rec)
    assert rec.messages[0] == "step 3: non-finite loss in term 'l_aux'; step skipped (1 in a row)"
    path = ck.list_checkpoints(tmp_path / "run")[-1]
    state = ck.load_checkpoint(path)
    assert state["step"] == 5  # the checkpoint is kept, with finite weights from step 2
    assert all(torch.isfinite(t).all() for t in state["model"].values())


def test_full_disk_during_training_keeps_the_previous_checkpoint(tmp_path, images, monkeypatch):
    real_write = ck._write_bytes
    calls = []

    def fill_up(path, data):
        calls.append(path)
        if len(calls) >= 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(path, data)

    monkeypatch.setattr(ck, "_write_bytes", fill_up)
    with pytest.raises(CheckpointError, match=r"the disk is full; the previous checkpoint .*step-00000003.pt is intact"):
        train(config(tmp_path, images))
    assert [p.name for p in ck.list_checkpoints(tmp_path / "run")] == ["step-00000003.pt"]
    monkeypatch.setattr(ck, "_write_bytes", real_write)
    result = train(config(tmp_path, images, resume="auto"))  # space freed: resume finishes the run
    assert result.steps == 6 and result.resumed_from.name == "step-00000003.pt"


class InterruptAt(Recorder):
    """Sends this process a real SIGINT after a given step, as Ctrl-C would."""

    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_step(self, report):
        if report.step == self.step:
            os.kill(os.getpid(), signal.SIGINT)


def test_sigint_checkpoints_and_resume_is_bit_identical(tmp_path, images):
    full = train(config(tmp_path / "a", images, ema=0.9))
    with pytest.raises(Interrupted, match=r"stopped by SIGINT at step 2; checkpoint saved .*resume with run_dir='.*b/run', resume='auto'") as info:
        train(config(tmp_path / "b", images, ema=0.9), callback=InterruptAt(2))
    assert info.value.exit_code == 130
    assert ck.list_checkpoints(tmp_path / "b" / "run")[-1].name == "step-00000002.pt"
    resumed = train(config(tmp_path / "b", images, ema=0.9, resume="auto"))
    a, b = load_file(full.output), load_file(resumed.output)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_with_another_architecture_is_refused(tmp_path, images):
    train(config(tmp_path, images, steps=3))
    other = config(tmp_path, images, steps=6, arch_opt={"n_feats": 16, "n_resblocks": 1}, resume="auto")
    with pytest.raises(UsageError, match=r"cannot resume from .*step-00000003.pt: it was made with edsr x2 \(n_resblocks=1, n_feats=8.*but this run builds edsr x2 \(n_resblocks=1, n_feats=16"):
        train(other)


def test_validation_and_ema_output(tmp_path, images):
    rec = Recorder()
    result = train(config(tmp_path, images, ema=0.5, val_fraction=0.25, val_every=3), callback=rec)
    assert [step for step, _ in rec.vals] == [3, 6]
    assert result.last_val["images"] == 1 and 5 < result.last_val["psnr_y"] < 60
    meta = load_model(result.output).metadata["provenance"]
    assert meta["weights"] == "ema" and meta["config"]["ema"] == 0.5 and meta["steps"] == 6
    assert meta["validation"]["psnr_y"] == result.last_val["psnr_y"]


def test_max_time_stops_the_run(tmp_path, images):
    result = train(config(tmp_path, images, steps=None, max_time="0.5s"))  # typed like the CLI
    assert result.stopped == "time" and result.steps >= 1 and result.output.exists()


class WithTeacher(Objective):
    """Logits KD against a frozen teacher: the teacher is used but neither trained nor saved."""

    name = "kd-test"

    def __init__(self, teacher):
        self.teacher = teacher

    def frozen(self):
        return {"teacher": self.teacher}

    def prepare(self, data):  # once, with the teacher already on its device: e.g. cache its outputs
        self.prepared = (len(data.dataset.images.images), data.device.type, next(self.teacher.parameters()).device.type)
        with data.autocast():
            self.cached = self.teacher(torch.zeros(1, 3, 8, 8))

    def losses(self, batch, student):
        sr = student(batch.lr)
        with torch.no_grad():
            target = self.teacher(batch.lr)
        return {"l1": F.l1_loss(sr, batch.hr), "l_kd": F.l1_loss(sr, target)}


def test_a_frozen_teacher_is_used_but_not_trained_or_saved(tmp_path, images):
    from srdistill.train.session import build_student

    teacher = build_student(config(tmp_path, images, seed=5)).net
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    seen, built = [], []

    def factory(student):  # methods whose modules depend on the student get it built first
        seen.append((student.arch, student.block_channels))
        built.append(WithTeacher(teacher))
        return built[-1]

    result = train(config(tmp_path, images), objective=factory)
    assert seen == [("edsr", (8,))]
    assert built[0].prepared == (4, "cpu", "cpu") and built[0].cached.shape == (1, 3, 16, 16)
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    state = ck.load_checkpoint(ck.list_checkpoints(result.run_dir)[-1])
    assert state["extras"] == {} and state["objective"]["name"] == "kd-test"


def test_resume_after_the_last_checkpoint_writes_the_missing_model(tmp_path, images):
    first = train(config(tmp_path, images, steps=3))
    first.output.unlink()  # as if killed between the final checkpoint and the model file
    rec = Recorder()
    again = train(config(tmp_path, images, steps=3, resume="auto"), callback=rec)
    # What the run does about it is information, not a warning.
    assert any(t.endswith("step-00000003.pt is the last step; writing the final model") for t in rec.infos)
    assert rec.messages == []
    assert again.output.exists() and again.steps == 3
    with pytest.raises(UsageError, match="already at step 3 of steps 3; pass a larger steps"):
        train(config(tmp_path, images, steps=3, resume="auto"))
