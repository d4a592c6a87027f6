"""The SPAN-style student: exact fusion, fused/unfused detection, and fused files from training."""

from __future__ import annotations

import json

import pytest
import torch
from cli_helpers import write_training_photos
from typer.testing import CliRunner

from srdistill import build_model, load_model, save_model
from srdistill.archs.registry import get_arch
from srdistill.archs.span import RepConv
from srdistill.cli import app
from srdistill.models import SRModel

SPEC = get_arch("span")
# A tiny SPAN student: a training step takes milliseconds.
TINY_SPAN_ARGS = ["--arch", "span", "--arch-opt", "channels=8", "--arch-opt", "n_blocks=1", "--scale", "2",
                  "--patch-size", "8", "--batch-size", "2", "--threads", "1"]


def randomised(model: SRModel, seed: int = 0) -> SRModel:
    """Clearly non-zero biases on top of the default initialisation: a bias under the border taps
    of a fused kernel is exactly what an inexact fusion gets wrong, so it must be large enough to see."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.net.named_parameters():
            if name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=generator) * 0.05)
    return model


@pytest.mark.parametrize("scale", SPEC.scales)
@pytest.mark.parametrize("preset", sorted(SPEC.presets))
def test_fusion_is_exact_for_every_preset_and_scale(preset, scale):
    model = randomised(build_model(preset, scale, seed=0))
    fused = model.fuse()
    assert fused.hparams["fused"] and not model.hparams["fused"]
    assert not any(isinstance(m, RepConv) for m in fused.net.modules())
    # Odd sizes: the borders, where a wrongly padded branch would differ, are a large share.
    x = torch.rand(2, 3, 13, 19, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference, plain = model.net.eval()(x), fused.net.eval()(x)
    assert plain.shape == reference.shape == (2, 3, 13 * scale, 19 * scale)
    assert reference.abs().max() > 0.1  # an output of real size, not one where any error vanishes
    assert (plain - reference).abs().max().item() <= 1e-5
    assert fused.fuse() is fused  # already in inference form
    assert fused.preset == model.preset == preset


def test_presets_sit_at_the_stated_sizes():
    sizes = {name: build_model(name, 4).fuse().num_params for name in ("span-s", "span-m")}
    assert 0.12e6 <= sizes["span-s"] <= 0.18e6 and 0.35e6 <= sizes["span-m"] <= 0.45e6, sizes
    # `srdistill archs` lists what is deployed: the fused count, computed on the meta device.
    assert {name: SPEC.param_count(4, SPEC.resolve(preset=name)) for name in sizes} == sizes


@pytest.mark.parametrize("fused", [False, True])
def test_detection_tells_the_forms_apart(tmp_path, fused):
    model = build_model("span", 3, SPEC.small, seed=0)
    model = model.fuse() if fused else model
    det = SPEC.detect(model.net.state_dict())
    assert det is not None and det.scale == 3
    assert det.hparams["fused"] is fused and det.hparams["channels"] == 8 and det.hparams["n_blocks"] == 2
    # Without srdistill metadata (a bare state dict) the form still comes from the keys alone.
    bare = tmp_path / "bare.pth"
    torch.save(model.net.state_dict(), bare)
    loaded = load_model(bare)
    assert loaded.arch == "span" and loaded.hparams["fused"] is fused
    x = torch.rand(1, 3, 11, 9)
    with torch.no_grad():
        assert torch.equal(loaded.net(x), model.net.eval()(x))


def test_a_training_form_file_fuses_after_loading(tmp_path):
    model = randomised(build_model("span", 2, SPEC.small, seed=0))
    path = save_model(model, tmp_path / "unfused.safetensors")
    loaded = load_model(path)
    assert not loaded.hparams["fused"]
    x = torch.rand(1, 3, 10, 12)
    with torch.no_grad():
        assert (loaded.fuse().net(x) - model.net.eval()(x)).abs().max() <= 1e-5


def test_architectures_without_fusion_are_left_alone():
    model = build_model("edsr-lite", 2, {"n_feats": 8, "n_resblocks": 1})
    assert model.fuse() is model


@pytest.mark.parametrize("keep", [False, True])
def test_train_writes_the_fused_student_unless_asked_to_keep_it(tmp_path, keep):
    images = write_training_photos(tmp_path / "images", ["a.png", "b.png", "c.png"])
    out = tmp_path / "student.safetensors"
    args = [*TINY_SPAN_ARGS, "--data", images, "--steps", 2, "--run-dir", tmp_path / "run", "-o", out, "--json"]
    result = CliRunner().invoke(app, ["train", *map(str, args), *(["--keep-unfused"] if keep else [])])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["output"] == str(out)
    for path in (out, tmp_path / "run" / "model.safetensors"):
        student = load_model(path)
        assert student.arch == "span" and student.hparams["fused"] is (not keep)
        assert any(isinstance(m, RepConv) for m in student.net.modules()) is keep
