"""Wherever a model is taken: bundled names resolve (the API as the CLI), ``--arch-opt`` sets what
the weights cannot tell, and ``-t/--tile 0`` runs the whole image at once."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import assert_one_line_error, invoke
from official_fixtures import FIXTURES
from PIL import Image

import srdistill
from srdistill import bundled
from srdistill.errors import UsageError
from srdistill.evaluate import evaluate
from srdistill.upscale import Upscaler

torch.set_num_threads(1)

EDSR = FIXTURES / "edsr_small_x4.pth"  # an official EDSR checkpoint: res_scale cannot be read from it


@pytest.fixture
def weights(tmp_path, monkeypatch) -> Path:
    """Bundled weights of this test's own: a small teacher-x4."""
    folder = tmp_path / "weights"
    folder.mkdir()
    torch.manual_seed(0)
    srdistill.save_model(srdistill.build_model("edsr", 4, {"n_feats": 8, "n_resblocks": 1}), folder / "teacher_x4.safetensors")
    monkeypatch.setattr(bundled, "weights_dir", lambda: folder)
    return folder


@pytest.fixture
def photo(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    small = (rng.random((6, 7, 3)) * 255).astype(np.uint8)
    path = tmp_path / "photo.png"
    Image.fromarray(small).resize((37, 29), Image.BICUBIC).save(path)
    return path


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im).astype(np.int16)


# -- bundled names ---------------------------------------------------------------------------------
def test_load_model_takes_a_bundled_name_but_a_file_wins(weights, tmp_path, monkeypatch):
    model = srdistill.load_model("teacher-x4")
    assert model.source == weights / "teacher_x4.safetensors" and model.hparams["n_feats"] == 8
    assert srdistill.load_model("teacher").source == model.source
    monkeypatch.chdir(tmp_path)
    srdistill.save_model(srdistill.build_model("edsr", 2, {"n_feats": 4, "n_resblocks": 1}), tmp_path / "mine.safetensors")
    (tmp_path / "mine.safetensors").rename(tmp_path / "teacher-x4")
    mine = srdistill.load_model("teacher-x4")
    assert mine.source == Path("teacher-x4") and mine.scale == 2
    with pytest.raises(UsageError, match="no bundled teacher-x2 model"):
        srdistill.load_model("teacher-x2")


def test_the_library_and_convert_take_bundled_names(weights, tmp_path):
    data = tmp_path / "set"
    data.mkdir()
    Image.fromarray((np.random.default_rng(1).random((32, 32, 3)) * 255).astype(np.uint8)).save(data / "a.png")
    rows = evaluate(["teacher-x4"], data, 4, bicubic=False).rows
    assert [r.method for r in rows] == ["teacher-x4"]
    out = tmp_path / "copy.safetensors"
    result = invoke("convert", "teacher-x4", out, "--json")
    assert result.returncode == 0, result.stderr
    prov = srdistill.load_model(out).metadata["provenance"]
    assert prov["converted_from"] == "teacher_x4.safetensors"
    assert prov["source_sha256"] == srdistill.models.file_sha256(weights / "teacher_x4.safetensors")


# -- --arch-opt ------------------------------------------------------------------------------------
def test_inspect_shows_an_arch_opt_as_given_not_assumed():
    plain = json.loads(invoke("inspect", EDSR, "--json").stdout)
    assert plain["assumed"] == ["res_scale"] and plain["given"] == [] and plain["hparams"]["res_scale"] == 1.0
    result = invoke("inspect", EDSR, "--arch-opt", "res_scale=0.1", "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["assumed"] == [] and info["given"] == ["res_scale"] and info["hparams"]["res_scale"] == 0.1
    table = invoke("inspect", EDSR, "--arch-opt", "res_scale=0.1").stdout
    assert "given" in table and "res_scale" in table


def test_upscale_with_arch_opt_changes_the_output_as_the_library_does(tmp_path, photo):
    outs = {}
    for name, extra in (("plain", []), ("scaled", ["--arch-opt", "res_scale=0.1"])):
        outs[name] = tmp_path / f"{name}.png"
        result = invoke("upscale", photo, "-m", EDSR, *extra, "-o", outs[name], "--device", "cpu", "--threads", 1)
        assert result.returncode == 0, result.stderr
    assert np.abs(pixels(outs["plain"]) - pixels(outs["scaled"])).max() > 2
    model = srdistill.load_model(EDSR, hparams={"res_scale": 0.1})
    with Image.open(photo) as im:
        lr = torch.from_numpy(np.asarray(im).astype(np.float32) / 255).permute(2, 0, 1)
    with torch.no_grad():
        expected = (model.net(lr[None])[0].clamp(0, 1) * 255).round().permute(1, 2, 0).numpy()
    assert np.abs(pixels(outs["scaled"]) - expected).max() <= 1


def test_eval_and_compare_take_arch_opt(tmp_path, photo):
    data = tmp_path / "set"
    data.mkdir()
    Image.fromarray((np.random.default_rng(2).random((40, 40, 3)) * 255).astype(np.uint8)).save(data / "a.png")
    psnr = {}
    for value in ("1.0", "0.1"):
        result = invoke("eval", "-m", EDSR, "--arch-opt", f"res_scale={value}", "--data", data, "--device", "cpu", "--json")
        assert result.returncode == 0, result.stderr
        psnr[value] = json.loads(result.stdout)["rows"][0]["psnr"]
        result = invoke("compare", photo, "--from-hr", "-m", EDSR, "--arch-opt", f"res_scale={value}",
                        "-o", tmp_path / f"sheet{value}.png", "--device", "cpu", "--json")
        assert result.returncode == 0, result.stderr
    assert psnr["1.0"] != psnr["0.1"]


@pytest.mark.parametrize("command", ["upscale", "eval", "compare", "inspect", "convert"])
def test_a_bad_arch_opt_key_is_one_line_naming_it_and_the_known_keys(command, tmp_path, photo):
    args = {
        "upscale": ["upscale", photo, "-m", EDSR, "-o", tmp_path / "o.png"],
        "eval": ["eval", "-m", EDSR, "--data", tmp_path],
        "compare": ["compare", photo, "-m", EDSR, "-o", tmp_path / "o.png"],
        "inspect": ["inspect", EDSR],
        "convert": ["convert", EDSR, tmp_path / "o.safetensors"],
    }[command]
    result = invoke(*args, "--arch-opt", "res_scal=0.1")
    assert_one_line_error(result, "res_scal", "known:", "res_scale", "n_feats", code=2)
    assert not list(tmp_path.glob("o.*"))


# -- -t 0 ------------------------------------------------------------------------------------------
def test_tile_zero_is_one_forward_of_the_whole_image():
    model = srdistill.load_model(EDSR)
    lr = torch.rand(3, 23, 150)  # wide: small tiles would cut it into several
    plans = []
    out = Upscaler(model, tile=0, device="cpu").upscale(lr, on_plan=plans.append)
    with torch.no_grad():
        untiled = model.net(lr[None])[0].clamp(0, 1)
    assert [p.count for p in plans] == [1]
    torch.testing.assert_close(out, untiled, atol=1e-5, rtol=0)
    tiled = []
    Upscaler(model, tile=16, device="cpu").upscale(lr, on_plan=tiled.append)
    assert tiled[0].count > 1
    assert "whole image" in Upscaler(model, tile=0, device="cpu").describe()
    with pytest.raises(UsageError, match="^tile must be >= 0"):
        Upscaler(model, tile=-1, device="cpu")


def test_tile_zero_falls_back_to_tiles_when_the_whole_image_does_not_fit():
    model = srdistill.load_model(EDSR)
    lr = torch.rand(3, 40, 40)
    upscaler = Upscaler(model, tile=0, tile_pad=8, device="cpu")
    net = upscaler.runner.net

    def forward_or_oom(x):  # a device that holds 32x32 inputs at most
        if x.shape[-1] * x.shape[-2] > 32 * 32:
            raise torch.OutOfMemoryError("out of memory (test device)")
        return net(x)

    upscaler.runner.net = forward_or_oom
    plans = []
    out = upscaler.upscale(lr, on_plan=plans.append)
    assert plans[0].count == 1 and plans[-1].count > 1
    # Tiles with 8 px of context: equal to the whole image up to what lies beyond the context.
    with torch.no_grad():
        torch.testing.assert_close(out, model.net(lr[None])[0].clamp(0, 1), atol=2e-3, rtol=0)


def test_upscale_cli_tile_zero_equals_one_untiled_forward(tmp_path, photo):
    outs = {}
    for tile in ("0", "512"):  # a 512 px tile holds this image whole: the untiled result
        outs[tile] = tmp_path / f"t{tile}.png"
        result = invoke("upscale", photo, "-m", EDSR, "-t", tile, "-o", outs[tile], "--device", "cpu", "--json")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["images"][0]["tiles"] == 1
    assert np.array_equal(pixels(outs["0"]), pixels(outs["512"]))
    assert_one_line_error(invoke("upscale", photo, "-m", EDSR, "-t", "-3", "-o", tmp_path / "x.png"), "--tile must be >= 0", code=2)


def test_distillation_takes_teacher_options_and_records_the_student_file_by_hash(tmp_path):
    from srdistill.distill.api import plan_distillation

    student = tmp_path / "student.safetensors"
    srdistill.save_model(srdistill.build_model("edsr", 4, {"n_feats": 8, "n_resblocks": 1}), student)
    plan = plan_distillation(EDSR, student_file=student, method="logits", teacher_options={"res_scale": "0.1"})
    assert plan.teacher.hparams["res_scale"] == 0.1 and plan.teacher.assumed == ()
    prov = plan.provenance()
    assert prov["teacher"]["hparams"]["res_scale"] == 0.1
    assert prov["student_init"] == {"file": "student.safetensors", "sha256": srdistill.models.file_sha256(student)}
    assert plan_distillation(EDSR, student_file=student, method="logits").teacher.assumed == ("res_scale",)
