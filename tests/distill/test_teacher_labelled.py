"""Teacher-labelled samples in distillation (unlabeled images, zoom-in/out, label consistency):
labels are the teacher on the exact input, consistency is undone, the ground-truth term leaves
teacher-labelled samples alone, every method trains on them, and the command and the Python API
run end to end, refuse bad input in one line and resume bit-identically."""

from __future__ import annotations

import json
import os
import signal
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from cli_helpers import assert_one_line_error, invoke, run_cli
from distill_helpers import frozen_teacher, objective, small
from PIL import Image
from safetensors.torch import load_file

from srdistill.data.dataset import ImageSet, PatchDataset, TrainImage, bicubic_uint8, collate_patches
from srdistill.data.folders import ImagePair
from srdistill.data.teacher_labelled import PAIRED, ZOOM_IN, TeacherLabelled, TeacherLabelledDataset, UnlabeledSet
from srdistill.distill import distill, plan_distillation
from srdistill.distill.labelled import undo_transform
from srdistill.distill.teacher import run_teacher
from srdistill.distill.teacher_cache import apply_transform, lr_chw, teacher_on_image
from srdistill.errors import Interrupted, UsageError
from srdistill.models import load_model, save_model
from srdistill.provenance import local_paths
from srdistill.train.objective import Batch, TrainingData
from srdistill.train.progress import TrainCallback

SCALE, PATCH = 4, 8


def mixed_dataset(seed=0, **kinds) -> TeacherLabelledDataset:
    rng = np.random.default_rng(0)
    images = []
    for i, (h, w) in enumerate(((40, 44), (36, 48))):
        hr = rng.integers(0, 256, (h * SCALE, w * SCALE, 3), dtype=np.uint8)
        images.append(TrainImage(f"im{i}", (h * SCALE, w * SCALE), hr, bicubic_uint8(hr, SCALE)))
    paired = PatchDataset(ImageSet([ImagePair(Path(f"im{i}.png"), None) for i in range(2)], images, SCALE, 1.0, True),
                          patch_size=PATCH, seed=seed)
    unl = UnlabeledSet(Path("unl"), ["u0.png", "u1.png"], [(20, 26)] * 2, [rng.integers(0, 256, (20, 26, 3), dtype=np.uint8) for _ in range(2)])
    spec = TeacherLabelled(unlabeled="unl", **kinds)
    return TeacherLabelledDataset(paired, unl, spec, scale=SCALE, patch_size=PATCH, seed=seed)


def batch_of(dataset, start, n) -> Batch:
    raw = collate_patches([dataset[i] for i in range(start, start + n)])
    hr = raw["hr"].float() / 255 if "hr" in raw else None
    return Batch(raw["lr"].float() / 255, hr, raw["index"], raw["image"], raw["teacher_only"], raw["consistency"])


# -- labels -----------------------------------------------------------------------------------------
def test_each_teacher_label_is_the_teacher_on_that_exact_input():
    dataset = mixed_dataset(unlabeled_ratio=0.4, zoom_in=0.3, zoom_out=0.3)
    teacher = frozen_teacher("edsr")
    obj = objective("logits", teacher, small("edsr", n_feats=8))
    obj.teacher_cache_mode = "memory"
    obj.prepare(TrainingData(dataset, torch.device("cpu"), nullcontext))
    assert obj.signals.kind == "cache+live"
    b = batch_of(dataset, 0, 24)
    got = obj.teacher_signal(b)
    sources = dataset.cache_sources()
    kinds = set()
    for row, index in enumerate(b.index.tolist()):
        plan, where = dataset.plan(index), dataset.cache_plan(index)
        kinds.add(plan.kind)
        if plan.kind == ZOOM_IN:  # run live on the HR crop itself
            live = run_teacher(teacher, b.lr[row : row + 1], []).output[0]
            assert torch.allclose(got.output[row], live, atol=1e-5)
            continue
        # Cached kinds: the teacher on the whole source image, cropped and flipped like the input.
        image = lr_chw(sources[where.image][2]()).float().unsqueeze(0) / 255
        crop = apply_transform(image[0, :, where.top : where.top + PATCH, where.left : where.left + PATCH], where.transform)
        assert torch.equal(crop, b.lr[row])  # the input is that crop ...
        whole = teacher_on_image(teacher, image, [], tile=128, pad=16).output.float()
        s, t, l = SCALE, where.top, where.left
        label = apply_transform(whole[:, t * s : (t + PATCH) * s, l * s : (l + PATCH) * s], where.transform)
        assert (got.output[row] - label).abs().max() < 2e-3  # ... and its label the teacher's there (float16 storage)
    assert kinds == {PAIRED, ZOOM_IN, "zoom-out", "unlabeled"}


def test_with_the_cache_off_every_label_is_the_live_teacher_on_the_batch():
    dataset = mixed_dataset(zoom_in=0.5)
    teacher = frozen_teacher("edsr")
    obj = objective("fitnet", teacher, small("edsr", n_feats=8))
    obj.prepare(TrainingData(dataset, torch.device("cpu"), nullcontext))
    b = batch_of(dataset, 3, 6)
    got = obj.teacher_signal(b)
    want = run_teacher(teacher, b.lr, [bd.teacher_block for bd in obj.boundaries])
    assert torch.equal(got.output, want.output) and all(torch.equal(x, y) for x, y in zip(got.features, want.features))


# -- consistency ----------------------------------------------------------------------------------
def symmetric(kernel: torch.Tensor) -> torch.Tensor:
    """The average of a conv kernel over the 8 flips/transposes: a flip-equivariant conv."""
    return sum(apply_transform(kernel, code) for code in range(8)) / 8


class Upscaler(torch.nn.Module):
    def __init__(self, equivariant: bool):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)
        if equivariant:
            with torch.no_grad():
                self.conv.weight.copy_(symmetric(self.conv.weight))

    def forward(self, x):
        return F.interpolate(self.conv(x), scale_factor=SCALE, mode="nearest")


def test_undo_transform_inverts_every_flip_and_transpose():
    x = torch.rand(2, 3, 5, 5)
    for code in range(8):
        assert torch.equal(undo_transform(apply_transform(x, code), code), x)


@pytest.mark.parametrize("equivariant", [True, False])
def test_consistency_is_undone_on_the_output(equivariant):
    obj = objective("logits", frozen_teacher("edsr"), small("edsr"))
    torch.manual_seed(0)
    net = Upscaler(equivariant)
    lr = torch.rand(7, 3, PATCH, PATCH)
    codes = torch.arange(1, 8)
    plain, _ = obj.student_forward(net, lr)
    undone, _ = obj.student_forward(net, lr, consistency=codes)
    if equivariant:
        assert (undone - plain).abs().max() < 1e-5
    else:
        assert all((undone[r] - plain[r]).abs().max() > 1e-3 for r in range(7))
        # ... and it is the output on the transformed input, taken back.
        for r, code in enumerate(codes.tolist()):
            assert torch.allclose(undone[r], undo_transform(net(apply_transform(lr[r : r + 1], code))[0], code), atol=1e-6)


def test_consistency_is_undone_on_the_student_features():
    teacher, student = frozen_teacher("edsr"), small("edsr", n_feats=8)
    with torch.no_grad():  # every conv flip-equivariant: the LR-resolution body features are too
        for module in student.net.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.weight.copy_(symmetric(module.weight))
    obj = objective("fitnet", teacher, student)
    lr = torch.rand(7, 3, PATCH, PATCH)
    _, plain = obj.student_forward(student.net, lr, features=True)
    _, undone = obj.student_forward(student.net, lr, features=True, consistency=torch.arange(1, 8))
    assert plain and all((a - b).abs().max() < 1e-4 * (1 + a.abs().max()) for a, b in zip(plain, undone))


# -- the ground-truth term ----------------------------------------------------------------------------
def test_the_ground_truth_term_leaves_teacher_labelled_samples_alone():
    obj = objective("logits", frozen_teacher("edsr"), small("edsr", n_feats=8))
    student = obj.student_model.net
    lr = torch.rand(4, 3, PATCH, PATCH, requires_grad=True)
    hr = torch.rand(4, 3, PATCH * SCALE, PATCH * SCALE)
    only = torch.tensor([False, True, False, True])
    terms = obj.losses(Batch(lr, hr, torch.arange(4), torch.zeros(4, dtype=torch.long), only, torch.zeros(4, dtype=torch.long)), student)
    (grad,) = torch.autograd.grad(terms["l1"], lr)
    assert grad[1].abs().sum() == 0 and grad[3].abs().sum() == 0 and grad[0].abs().sum() > 0
    sr = student(lr)
    assert torch.allclose(terms["l1"], F.l1_loss(sr[[0, 2]], hr[[0, 2]]), atol=1e-6)  # the mean over paired samples
    none_paired = obj.losses(Batch(lr, hr, torch.arange(4), torch.zeros(4, dtype=torch.long), torch.ones(4, dtype=torch.bool)), student)
    assert float(none_paired["l1"]) == 0 and not none_paired["l1"].requires_grad
    no_data = obj.losses(Batch(lr, None, torch.arange(4), torch.zeros(4, dtype=torch.long), torch.ones(4, dtype=torch.bool)), student)
    assert set(no_data) == {"kd"}


@pytest.mark.parametrize("method", ["logits", "fitnet", "fakd", "mipkd", "mipkd-lite"])
def test_every_teacher_method_trains_on_teacher_labelled_batches(method):
    dataset = mixed_dataset(unlabeled_ratio=0.5, zoom_in=0.3, zoom_out=0.2, consistency=1.0)
    obj = objective(method, frozen_teacher("edsr"), small("edsr", n_feats=8))
    obj.teacher_cache_mode = "memory"
    obj.prepare(TrainingData(dataset, torch.device("cpu"), nullcontext))
    student = obj.student_model.net.train()
    terms = obj.losses(batch_of(dataset, 0, 6), student)
    total = sum(obj.weights.get(k, 1.0) * v for k, v in terms.items())
    total.backward()
    assert torch.isfinite(total) and "kd" in terms and "l1" in terms
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())


def test_scratch_refuses_teacher_labelled_data():
    with pytest.raises(UsageError, match=r"method scratch has no teacher, so it cannot learn from teacher-labelled samples"):
        plan_distillation(frozen_teacher("edsr"), "edsr-lite", method="scratch", teacher_labelled=TeacherLabelled(zoom_in=0.5))


# -- end to end -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("labelled")
    save_model(small("edsr"), root / "teacher.safetensors")
    rng = np.random.default_rng(0)
    (root / "photos").mkdir()
    for i in range(2):  # LR 32x34: one 8x8 patch still fits after shrinking it x4 again (zoom-out)
        Image.fromarray(rng.integers(0, 256, (128, 136, 3), dtype=np.uint8)).save(root / "photos" / f"im{i}.png")
    (root / "lr").mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (20 + i, 26, 3), dtype=np.uint8)).save(root / "lr" / f"frame{i}.png")
    return root


class InterruptAt(TrainCallback):
    def __init__(self, step):
        self.step = step

    def on_step(self, report):
        if report.step == self.step:
            os.kill(os.getpid(), signal.SIGINT)


def api_run(files, run_dir, **extra):
    return distill(files / "teacher.safetensors", "edsr-lite", files / "photos", student_options={"n_feats": 8}, steps=4,
                   batch_size=4, patch_size=PATCH, run_dir=str(run_dir), unlabeled=files / "lr", zoom_in=0.3, zoom_out=0.2,
                   consistency=0.5, **extra)


def test_python_api_records_the_teacher_labelled_data_and_resumes_bit_identically(files, tmp_path):
    from srdistill.models import load_model

    full = api_run(files, tmp_path / "a")
    prov = load_model(full.output).metadata["provenance"]
    info = prov["data"]["teacher_labelled"]
    assert info["labelled_by_teacher"] == ["unlabeled", "zoom-in", "zoom-out"] and info["unlabeled_images"] == 3
    assert info["zoom_in"] == 0.3 and info["consistency"] == 0.5 and prov["data"]["unlabeled_data"]["images"] == 3
    assert prov["objective"]["teacher_signal"] == "cache+live"
    recorded = json.loads((tmp_path / "a" / "distill.json").read_text())
    assert recorded["zoom_out"] == 0.2 and recorded["unlabeled"] == str((files / "lr").resolve())
    with pytest.raises(Interrupted):
        api_run(files, tmp_path / "b", callback=InterruptAt(2))
    # The run folder's distill.json brings the teacher-labelled settings back.
    resumed = distill(run_dir=str(tmp_path / "b"), resume="auto")
    a, b = load_file(full.output), load_file(resumed.output)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_run_on_unlabeled_images_decoded_per_sample_trains_the_same_model(files, tmp_path):
    def run(cache):
        result = distill(files / "teacher.safetensors", "edsr-lite", student_options={"n_feats": 8}, steps=3, batch_size=4,
                         patch_size=PATCH, run_dir=str(tmp_path / cache), unlabeled=files / "lr", consistency=0.5, cache=cache, workers=0)
        return load_file(result.output), load_model(result.output).metadata["provenance"]["data"]["cached"]

    (kept, kept_cached), (decoded, decoded_cached) = run("memory"), run("none")
    assert kept_cached is True and decoded_cached is False
    assert kept.keys() == decoded.keys() and all(torch.equal(kept[k], decoded[k]) for k in kept)


def test_cli_on_unlabeled_images_alone(files, tmp_path):
    r = run_cli("distill", "--teacher", files / "teacher.safetensors", "--student-arch", "edsr-lite", "--student-opt", "n_feats=8",
                "--unlabeled", files / "lr", "--consistency", "0.5", "--steps", "2", "--batch-size", "2", "--patch-size", PATCH,
                "--run-dir", tmp_path / "run")
    assert r.returncode == 0, r.stderr
    assert "teacher-labelled samples (unlabeled): unlabeled 100%; 3 unlabeled image(s) from" in " ".join(r.stdout.split())
    config = (tmp_path / "run" / "config.toml").read_text()
    assert "\ndata =" not in config
    # The model file names the unlabeled folder, not where it lies on this machine.
    meta = load_model(tmp_path / "run" / "model.safetensors").metadata
    assert local_paths(meta) == []
    assert meta["provenance"]["data"]["data"]["name"] == "lr" and meta["provenance"]["data"]["teacher_labelled"]["unlabeled"] == "lr"


def test_dry_run_shows_the_teacher_labelled_settings(files, tmp_path):
    common = ["distill", "--teacher", files / "teacher.safetensors", "--student-arch", "edsr-lite", "--data", files / "photos",
              "--steps", "2", "--patch-size", PATCH, "--run-dir", tmp_path / "run", "--dry-run"]
    r = invoke(*common, "--zoom-in", "0.25", "--consistency", "0.5")
    assert r.returncode == 0, r.stderr
    assert "teacher-labelled samples zoom_in=0.25, consistency=0.5" in " ".join(r.stdout.split())
    summary = json.loads(invoke(*common, "--zoom-out", "0.3", "--json").stdout)
    assert summary["teacher_labelled"] == {"unlabeled": None, "unlabeled_ratio": None, "zoom_in": 0.0, "zoom_out": 0.3, "consistency": 0.0}
    assert json.loads(invoke(*common, "--json").stdout)["teacher_labelled"] is None
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args, fragments", [
    (["--unlabeled", "{empty}"], ["--unlabeled folder", "holds no images"]),
    (["--unlabeled", "{lr}", "--patch-size", "24"], ["every image in the --unlabeled folder", "smaller than one 24x24 patch", "--patch-size"]),
    (["--unlabeled", "{mixed}"], ["mixes resolutions", "x4 of"]),
    (["--data", "{photos}", "--zoom-in", "0.7", "--zoom-out", "0.6"], ["--zoom-in 0.7 + --zoom-out 0.6 is more than 1"]),
    (["--data", "{photos}", "--zoom-in", "1.5"], ["--zoom-in is a probability per sample, in [0, 1]"]),
    (["--data", "{photos}", "--unlabeled-ratio", "0.3"], ["--unlabeled-ratio is the share of samples from --unlabeled DIR"]),
    (["--unlabeled", "{lr}", "--zoom-in", "0.3"], ["--zoom-in/--zoom-out crop the paired images", "no --data"]),
    (["--data", "{photos}", "--zoom-in", "0.3", "--method", "scratch"], ["method scratch has no teacher"]),
    (["--data", "{photos}", "--zoom-in", "0.3", "--teacher", "{swinir}", "--patch-size", "10"],
     ["--zoom-in runs the teacher (swinir) on 10x10 HR crops", "multiples of 4", "--patch-size 12"]),
])
def test_bad_teacher_labelled_input_is_one_line_and_leaves_no_run_folder(files, tmp_path, args, fragments):
    (tmp_path / "empty").mkdir()
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    Image.fromarray(np.zeros((20, 26, 3), np.uint8)).save(mixed / "a.png")
    Image.fromarray(np.zeros((80, 104, 3), np.uint8)).save(mixed / "a_hr.png")
    if "{swinir}" in args:
        save_model(small("swinir"), tmp_path / "swinir.safetensors")
    values = {"{empty}": tmp_path / "empty", "{lr}": files / "lr", "{mixed}": mixed, "{photos}": files / "photos",
              "{swinir}": tmp_path / "swinir.safetensors"}
    args = [str(values.get(a, a)) for a in args]
    teacher = [] if "--teacher" in args else ["--teacher", files / "teacher.safetensors"]
    r = invoke("distill", *teacher, "--student-arch", "edsr-lite", "--steps", "2", "--batch-size", "2",
                *([] if "--patch-size" in args else ["--patch-size", PATCH]), *args, "--run-dir", tmp_path / "run")
    assert_one_line_error(r, *fragments)
    assert not (tmp_path / "run").exists()


def test_settings_come_from_the_toml_table_and_flags_win(tmp_path):
    from srdistill.distill.settings import DistillSettings

    config = tmp_path / "run.toml"
    config.write_text('[distill]\nunlabeled = "frames"\nzoom_in = 0.25\nzoom_out = 0\nconsistency = 0.5\n')
    from_file = DistillSettings.from_toml(config)
    assert from_file.zoom_out == 0.0 and isinstance(from_file.zoom_out, float)
    merged = DistillSettings.layered(DistillSettings(zoom_in=0.1), from_file, DistillSettings(unlabeled_ratio=0.2))
    spec = merged.teacher_labelled()
    assert (spec.unlabeled, spec.unlabeled_ratio, spec.zoom_in, spec.consistency) == ("frames", 0.2, 0.1, 0.5)
    config.write_text('[distill]\nzoom_in = "half"\n')
    with pytest.raises(UsageError, match=r"\[distill\] zoom_in = 'half' is not a number"):
        DistillSettings.from_toml(config)
