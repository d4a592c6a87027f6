"""``srdistill compare``: labelled side-by-side crops."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from cli_helpers import assert_one_line_error, run_cli
from PIL import Image
from typer.testing import CliRunner
from test_upscale import resample_model

import srdistill
from srdistill.cli import app
from srdistill.compare import Crop, compare_arrays, highest_detail, load_inputs, render
from srdistill.errors import UsageError
from srdistill.evaluate import matlab_downscale, matlab_upscale
from srdistill.metrics import psnr_y

torch.set_num_threads(1)


def textured(h=48, w=64, seed=0) -> np.ndarray:
    """Flat gray except one noisy square: the obvious region of highest detail."""
    img = np.full((h, w, 3), 128, np.uint8)
    img[24:40, 36:52] = np.random.default_rng(seed).integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    return img


def test_auto_crop_finds_the_detail():
    crop = highest_detail(textured(), 16)
    assert crop == Crop(36, 24, 16, 16)


def test_panels_psnr_and_layout():
    hr = textured()
    lr = matlab_downscale(hr, 2)
    sheet = compare_arrays(lr, {"nearest": resample_model(2)}, 2, hr=hr, crops=[Crop(36, 24, 16, 16)], from_hr=True)
    (row,) = sheet.rows
    assert [p.label for p in row] == ["bicubic", "nearest", "HR"]
    assert sheet.crops == [Crop(18, 12, 8, 8)]
    truth = hr[24:40, 36:52]
    assert np.array_equal(row[1].pixels, lr[12:20, 18:26].repeat(2, 0).repeat(2, 1))
    assert np.array_equal(row[0].pixels, matlab_upscale(lr, 2)[24:40, 36:52])  # context-upscaled = whole image here
    assert row[0].psnr == pytest.approx(psnr_y(row[0].pixels, truth, 0))
    assert row[2].psnr is None and np.array_equal(row[2].pixels, truth)
    assert sheet.zoom == 16  # 16 px panels zoomed to 256
    image = render(sheet)
    cell = 16 * 16
    assert image.size == (3 * (cell + 4) + 4, cell + 30 + 8)
    zoomed = np.asarray(image)[4 : 4 + cell, 8 + cell : 8 + 2 * cell]
    assert np.array_equal(zoomed[::16, ::16], row[1].pixels)  # nearest-neighbour zoom, pixel for pixel
    label = np.asarray(image)[4 + cell : 4 + cell + 30, 4 : 4 + cell]
    assert (label < 128).any()  # text was drawn under the panel


def test_crop_outside_and_mismatched_hr(tmp_path):
    lr = textured()[:20, :20]
    with pytest.raises(UsageError, match="lies outside"):
        compare_arrays(lr, {}, 2, crops=[Crop(15, 0, 10, 10)])
    Image.fromarray(lr).save(tmp_path / "lr.png")
    Image.fromarray(textured()[:30, :40]).save(tmp_path / "hr.png")
    with pytest.raises(UsageError, match="^hr .*hr.png is 40x30"):
        load_inputs(tmp_path / "lr.png", 2, hr=tmp_path / "hr.png")
    with pytest.raises(UsageError, match="x,y,w,h"):
        Crop.parse("1,2,3")


def test_cli_writes_a_png(tmp_path):
    Image.fromarray(textured()).save(tmp_path / "hr.png")
    model = srdistill.save_model(srdistill.build_model("edsr", 2, {"n_feats": 8, "n_resblocks": 1}), tmp_path / "tiny.safetensors")
    out = tmp_path / "cmp.png"
    result = run_cli("compare", tmp_path / "hr.png", "--from-hr", "-m", model, "-o", out, "--crop", "36,24,16,16",
                     "--crop", "0,0,8,8", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [p["label"] for p in report["crops"][0]["panels"]] == ["bicubic", "tiny", "HR"]
    assert Image.open(out).mode == "RGB" and Image.open(out).size[0] == 3 * (256 + 4) + 4
    again = CliRunner().invoke(app, ["compare", str(tmp_path / "hr.png"), "--from-hr", "-m", str(model), "-o", str(out)])
    assert_one_line_error(SimpleNamespace(returncode=again.exit_code, stderr=again.stderr, stdout=again.stdout),
                          "already exists", code=2)
