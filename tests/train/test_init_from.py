"""``init``: start a training run from a model file's weights (same arch; x2/x3/x4 share the body)."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY_ARGS, TINY_CONFIG
from typer.testing import CliRunner

from srdistill.cli import app
from srdistill.distill.api import plan_distillation, run_plan
from srdistill.errors import UsageError
from srdistill.models import SRModel, build_model, file_sha256, load_model, save_model
from srdistill.archs.registry import ARCHS
from srdistill.train import TrainConfig
from srdistill.train.session import initialise_from

TINY_EDSR = {"n_feats": 8, "n_resblocks": 1}


def tiny(arch: str, scale: int, seed: int, **overrides) -> SRModel:
    torch.manual_seed(seed)
    return build_model(arch, scale, {**TINY_EDSR, **overrides} if arch.startswith("edsr") else overrides)


def saved(tmp_path, model: SRModel, name: str = "source.safetensors"):
    return save_model(model, tmp_path / name)


def snapshot(model: SRModel) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.net.state_dict().items()}


def test_same_arch_and_scale_takes_every_tensor(tmp_path):
    source = tiny("edsr", 2, seed=1)
    path = saved(tmp_path, source)
    model = tiny("edsr", 2, seed=2)
    assert not torch.equal(model.net.state_dict()["head.0.weight"], source.net.state_dict()["head.0.weight"])
    note = initialise_from(model, path)
    theirs = load_model(path).net.state_dict()
    mine = model.net.state_dict()
    assert mine.keys() == theirs.keys()
    for key in mine:
        assert torch.equal(mine[key], theirs[key]), key
    assert note.startswith(f"initialised {len(mine)} of {len(mine)} tensors from {path} (x2)")
    assert "kept fresh" not in note


# The upsampler is the only scale-dependent part of EDSR: one conv n->4n + pixel shuffle per x2
# stage (x2: tail.0.0; x4: tail.0.0 and tail.0.2), one conv n->9n for x3 (tail.0.0, other shape).
@pytest.mark.parametrize(
    ("scale", "source_scale", "fresh"),
    [
        (4, 2, {"tail.0.2.weight", "tail.0.2.bias"}),  # EDSR's own recipe: x4 from the x2 model
        (3, 4, {"tail.0.0.weight", "tail.0.0.bias"}),  # same name, other shape
        (2, 4, set()),  # x2 has nothing x4 lacks: its one upsampling stage is x4's first
    ],
)
def test_another_scale_takes_the_body_and_keeps_the_rest_fresh(tmp_path, scale, source_scale, fresh):
    path = saved(tmp_path, tiny("edsr", source_scale, seed=1))
    model = tiny("edsr", scale, seed=2)
    before = snapshot(model)
    note = initialise_from(model, path)
    theirs = load_model(path).net.state_dict()
    mine = model.net.state_dict()
    assert fresh <= mine.keys()
    for key, value in mine.items():
        if key in fresh:
            assert torch.equal(value, before[key]), f"{key} should keep its fresh value"
        else:
            assert torch.equal(value, theirs[key]), f"{key} should come from the x{source_scale} file"
    assert any(k.startswith("body.") for k in mine.keys() - fresh)
    assert f"initialised {len(mine) - len(fresh)} of {len(mine)} tensors from {path} (x{source_scale})" in note
    if fresh:
        assert f"; {len(fresh)} kept fresh: " in note
        assert all(key in note for key in fresh)
    else:
        assert "kept fresh" not in note


def test_a_file_of_another_arch_is_refused_naming_both(tmp_path):
    rcan = tiny("rcan", 2, seed=1, **ARCHS.get("rcan").small)
    path = saved(tmp_path, rcan, "rcan.safetensors")
    model = tiny("edsr", 2, seed=2)
    before = snapshot(model)
    with pytest.raises(UsageError) as err:
        initialise_from(model, path)
    message = str(err.value)
    assert "\n" not in message
    assert str(path) in message and "a rcan model" in message and "trains edsr" in message
    assert all(torch.equal(v, before[k]) for k, v in model.net.state_dict().items())


def test_a_file_of_another_width_is_refused(tmp_path):
    path = saved(tmp_path, tiny("edsr", 2, seed=1, n_feats=16))
    model = tiny("edsr", 2, seed=2)  # n_feats=8: no learned tensor has the file's shape
    with pytest.raises(UsageError) as err:
        initialise_from(model, path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message and "trained tensors" in message and "check arch_opt against" in message


def test_train_cli_starts_from_the_file_and_records_it(tmp_path, images):
    source = tiny("edsr-lite", 2, seed=7)  # the weights TINY_ARGS builds, other values
    path = saved(tmp_path, source)
    out = tmp_path / "out.safetensors"
    result = CliRunner().invoke(app, ["train", *TINY_ARGS, "--init", str(path), "--data", str(images),
                                      "--steps", "1", "--run-dir", str(tmp_path / "run"), "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    count = len(source.net.state_dict())
    assert f"initialised {count} of {count} tensors from {path}" in result.stdout + result.stderr
    trained = load_model(out)
    # The shared file names the init file and its hash; the run folder's config.toml keeps the path.
    prov = trained.metadata["provenance"]
    assert prov["config"]["init"] == path.name and prov["init"] == {"file": path.name, "sha256": file_sha256(path)}
    assert str(path) in (tmp_path / "run" / "config.toml").read_text()
    # One Adam step at lr 2e-4 moves a weight by about 2e-4: the run began at the file's weights.
    theirs = source.net.state_dict()
    for key, value in trained.net.state_dict().items():
        assert (value - theirs[key]).abs().max() < 1e-3, key


def test_distillation_refuses_init(tmp_path, images):
    teacher = tiny("edsr", 2, seed=1)
    path = saved(tmp_path, tiny("edsr", 2, seed=3))
    plan = plan_distillation(teacher, "edsr-lite", method="scratch", student_options=TINY_EDSR)
    config = TrainConfig(**dict(TINY_CONFIG, data=str(images), run_dir=str(tmp_path / "run"), steps=1, init=str(path)))
    with pytest.raises(UsageError) as err:
        run_plan(plan, config)
    message = str(err.value)
    assert "\n" not in message and "init is for `srdistill train`" in message and "from student_file FILE" in message
