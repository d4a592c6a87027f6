"""Checkpoints: weights_only round trip, atomic writes, pruning after commit, fallback, full disk."""

from __future__ import annotations

import errno

import pytest
import torch

from srdistill.io import checkpoints as ck
from srdistill.io.checkpoints import CheckpointError, CheckpointWarning
from srdistill.train.seeding import capture_rng, restore_rng


def _state(step: int) -> dict:
    net = torch.nn.Conv2d(3, 4, 3)
    opt = torch.optim.Adam(net.parameters())
    net(torch.rand(1, 3, 8, 8)).sum().backward()
    opt.step()
    return {
        "format": 1, "step": step, "model": net.state_dict(), "optimizer": opt.state_dict(), "rng": [capture_rng()],
        "data": {"samples_seen": step * 4}, "config": {"arch": "x", "milestones": [0.5]}, "arch": {"arch": "x"},
    }


def test_round_trip_with_weights_only_and_rng(tmp_path):
    state = _state(3)
    path = ck.save_checkpoint(state, tmp_path)
    assert path.name == "step-00000003.pt"
    loaded = ck.load_checkpoint(path)  # torch.load(weights_only=True) inside
    assert torch.equal(loaded["model"]["weight"], state["model"]["weight"])
    assert loaded["optimizer"]["state"][0]["exp_avg"].shape == (4, 3, 3, 3)
    import random

    import numpy as np

    restore_rng(loaded["rng"][0])
    a = (torch.rand(3), np.random.rand(), random.random())
    restore_rng(loaded["rng"][0])
    assert torch.equal(a[0], torch.rand(3)) and a[1] == np.random.rand() and a[2] == random.random()


def test_prunes_only_older_ones_after_the_new_one_is_written(tmp_path):
    for step in (1, 2, 3, 4):
        ck.save_checkpoint(_state(step), tmp_path, keep=2)
    assert [p.name for p in ck.list_checkpoints(tmp_path)] == ["step-00000003.pt", "step-00000004.pt"]
    assert not list(ck.checkpoint_dir(tmp_path).glob(".*"))  # no temporary files left


def test_full_disk_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    good = ck.save_checkpoint(_state(1), tmp_path)
    before = good.read_bytes()

    def disk_full(path, data):
        with open(path, "wb") as fh:
            fh.write(bytes(data[: len(data) // 2]))  # half the file reaches the disk
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ck, "_write_bytes", disk_full)
    with pytest.raises(CheckpointError, match=r"step-00000002.pt: the disk is full; the previous checkpoint .*step-00000001.pt is intact"):
        ck.save_checkpoint(_state(2), tmp_path, keep=1)
    assert ck.list_checkpoints(tmp_path) == [good] and good.read_bytes() == before
    assert sorted(p.name for p in ck.checkpoint_dir(tmp_path).iterdir()) == ["step-00000001.pt"]


def test_corrupted_latest_falls_back_to_the_previous_and_says_so(tmp_path):
    ck.save_checkpoint(_state(1), tmp_path)
    latest = ck.save_checkpoint(_state(2), tmp_path)
    latest.write_bytes(latest.read_bytes()[:200])  # truncated, as by a crash of the machine
    with pytest.warns(CheckpointWarning, match=r"step-00000002.pt is unreadable .*falling back to the previous complete checkpoint step-00000001.pt"):
        path, state = ck.load_latest(tmp_path)
    assert state["step"] == 1 and latest.exists()  # reported, never deleted


def test_no_usable_checkpoint_is_an_error(tmp_path):
    ck.save_checkpoint(_state(1), tmp_path).write_bytes(b"PK\x03\x04 garbage")
    with pytest.raises(CheckpointError, match="no usable checkpoint"):
        ck.load_latest(tmp_path)
    assert ck.load_latest(tmp_path / "other") is None


def test_a_pickle_with_code_is_refused(tmp_path):
    path = ck.checkpoint_path(tmp_path, 5)
    path.parent.mkdir(parents=True)
    torch.save({"format": 1, "evil": torch.nn.ReLU()}, path)  # a module object: needs code to load
    with pytest.raises(CheckpointError, match="unreadable"):
        ck.load_checkpoint(path)
