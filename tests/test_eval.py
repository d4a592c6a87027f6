"""``srdistill eval``: the field's PSNR/SSIM convention, reproduced on the real benchmark sets."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from cli_helpers import assert_one_line_error, run_cli
from PIL import Image
from typer.testing import CliRunner
from shared_data import benchmark_set
from test_upscale import resample_model

torch.set_num_threads(1)

import srdistill
from srdistill.cli import app
from srdistill.errors import DataError, UsageError
from srdistill.evaluate import evaluate, find_sets, gflops_per_megapixel, load_pair, matlab_downscale
from srdistill.metrics import psnr_y

# Published bicubic baselines (PSNR on Y with crop = scale / SSIM).
PUBLISHED = {
    ("Set5", 2): (33.66, 0.9299), ("Set5", 3): (30.39, 0.8682), ("Set5", 4): (28.42, 0.8104),
    ("Set14", 2): (30.24, 0.8688), ("Set14", 3): (27.55, 0.7742), ("Set14", 4): (26.00, 0.7027),
}


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bicubic_reproduces_published_numbers_through_the_cli(scale):
    # One thread: elementwise ops on two shared, busy cores are many times faster without OpenMP.
    result = run_cli("eval", "--bicubic", "--data", benchmark_set("Set5"), "--data", benchmark_set("Set14"),
                     "--scale", scale, "--json", env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    rows = {row["set"]: row for row in json.loads(result.stdout)["rows"]}
    for set_name in ("Set5", "Set14"):
        psnr, ssim = PUBLISHED[(set_name, scale)]
        row = rows[set_name]
        assert row["method"] == "bicubic" and row["images"] == (5 if set_name == "Set5" else 14)
        assert abs(row["psnr"] - psnr) <= 0.03, (set_name, row["psnr"])
        assert abs(row["ssim"] - ssim) <= 0.002, (set_name, row["ssim"])


def test_generated_lr_matches_the_matlab_files():
    (eval_set,) = find_sets(benchmark_set("Set5"), 4)
    assert eval_set.source == "given LR"
    diffs = []
    for pair in eval_set.pairs:
        lr, hr = load_pair(pair, 4)
        ours = matlab_downscale(hr, 4)
        assert ours.shape == lr.shape
        diffs.append(np.abs(ours.astype(float) - lr.astype(float)).mean())
    assert np.mean(diffs) < 0.2


def test_a_folder_of_sets_and_grayscale_kept():
    benchmarks = {benchmark_set(name).parent for name in ("Set5", "Set14", "McMaster")}.pop()
    sets = {s.name: s for s in find_sets(benchmarks, 3)}
    assert {"Set5", "Set14", "McMaster"} <= set(sets)
    assert sets["McMaster"].source == "generated LR"
    bridge = next(p for p in sets["Set14"].pairs if p.hr.stem == "bridge")
    lr, hr = load_pair(bridge, 3)
    assert lr.shape[2] == 1 and hr.shape[2] == 1  # measured on gray values, as published


def test_models_side_by_side_on_generated_lr(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(2):
        small = (rng.random((6, 7, 3)) * 255).astype(np.uint8)
        Image.fromarray(small).resize((33 + i, 30), Image.BICUBIC).save(tmp_path / f"img{i}.png")
    tiny = srdistill.build_model("edsr", 2, {"n_feats": 8, "n_resblocks": 1})
    path = srdistill.save_model(tiny, tmp_path / "tiny.safetensors")
    nearest = resample_model(2)
    results = evaluate({"tiny": srdistill.load_model(path), "nearest": nearest}, tmp_path, 2, device="cpu")
    methods = [r.method for r in results.rows]
    assert methods == ["bicubic", "tiny", "nearest"]
    row = results.row(tmp_path.name, "tiny")
    assert row.images == 2 and row.params == tiny.num_params and row.seconds_per_image > 0
    assert abs(row.gflops_per_mp - 10.314) < 1e-6  # 5157 MACs per input pixel, counted by hand
    # The nearest "model" scored by hand: HR cropped to x2, LR by MATLAB bicubic, border crop 2.
    hr = np.asarray(Image.open(tmp_path / "img1.png"))[:30, :34]
    lr = matlab_downscale(hr, 2)
    expected = psnr_y(lr.repeat(2, 0).repeat(2, 1), hr, 2)
    assert results.row(tmp_path.name, "nearest").per_image[1].psnr == pytest.approx(expected, abs=1e-9)
    assert results.row(tmp_path.name, "bicubic").psnr > results.row(tmp_path.name, "nearest").psnr


def test_flops_count_attention():
    hp = {"img_size": 16, "window_size": 4, "depths": (2,), "embed_dim": 12, "num_heads": (2,),
          "upsampler": "pixelshuffledirect"}
    model = srdistill.build_model("swinir", 2, hp)
    # MACs per input pixel (= token), by hand. Per Swin block: qkv, proj and MLP linears
    # (12*36 + 12*12 + 2*12*24) and the two attention matmuls (2 * 16 tokens * 12 dims).
    per_block = 12 * 36 + 12 * 12 + 2 * 12 * 24 + 2 * 16 * 12
    # 3x3 convs: conv_first 3->12, the RSTB's conv, conv_after_body, upsample 12->3*2*2.
    convs = 9 * (3 * 12 + 12 * 12 + 12 * 12 + 12 * 12)
    assert gflops_per_megapixel(model) * 1e3 == pytest.approx(2 * (2 * per_block + convs))


def test_errors(tmp_path):
    with pytest.raises(DataError, match="holds no images"):
        find_sets(tmp_path, 2)
    (tmp_path / "HR").mkdir()
    (tmp_path / "LR_bicubic" / "X2").mkdir(parents=True)
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "HR" / "a.png")
    Image.fromarray(np.zeros((9, 10, 3), np.uint8)).save(tmp_path / "LR_bicubic" / "X2" / "ax2.png")
    with pytest.raises(DataError, match="ax2.png is 10x9x3"):
        evaluate([], tmp_path, 2)
    with pytest.raises(DataError, match="X2"):
        evaluate([], tmp_path, 3)
    with pytest.raises(UsageError, match="x4 but scale is 2; evaluate it with scale=4"):
        evaluate([srdistill.build_model("edsr", 4, {"n_feats": 8, "n_resblocks": 1})], tmp_path, 2)
    with pytest.raises(UsageError, match="nothing to evaluate"):
        evaluate([], tmp_path, 2, bicubic=False)


def test_cli_needs_a_model_or_bicubic(tmp_path):
    result = CliRunner().invoke(app, ["eval", "--data", str(tmp_path)])
    assert_one_line_error(SimpleNamespace(returncode=result.exit_code, stderr=result.stderr, stdout=result.stdout),
                          "--bicubic", code=2)

