"""`archs`, `inspect` and `convert` from the command line, on official fixtures."""

from __future__ import annotations

import json

from cli_helpers import run_cli
from example_plugin import needs_example_plugin
from official_fixtures import FIXTURES
from safetensors import safe_open


@needs_example_plugin
def test_archs_lists_the_example_plugin():
    result = run_cli("archs", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["id"]: row for row in json.loads(result.stdout)}
    assert rows["rfdn"]["distribution"] == "srdistill-rfdn" and not rows["rfdn"]["builtin"]
    assert "srdistill-rfdn" in run_cli("archs").stdout


def test_archs_lists_builtins_presets_and_sizes():
    result = run_cli("archs", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["id"]: row for row in json.loads(result.stdout)}
    assert {"edsr", "rcan", "swinir", "rrdbnet"} <= set(rows)
    presets = {p["name"]: p for row in rows.values() for p in row["presets"]}
    expected = {"edsr", "edsr-baseline", "edsr-lite", "rcan", "rcan-lite", "swinir-m", "swinir-s", "rrdbnet"}
    assert expected <= set(presets)
    assert presets["edsr-lite"]["blocks"] == 8 and presets["rcan-lite"]["blocks"] == 10
    assert abs(presets["edsr-baseline"]["params_x4"] - 1.518e6) < 1e4
    assert abs(presets["rrdbnet"]["params_x4"] - 16.70e6) < 1e5
    table = run_cli("archs")
    assert table.returncode == 0 and "edsr-lite" in table.stdout


def test_inspect_json_of_an_official_swinir_checkpoint():
    result = run_cli("inspect", FIXTURES / "swinir_realworld_small_x4.pth", "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["arch"] == "swinir" and info["scale"] == 4
    assert info["hparams"]["upsampler"] == "nearest+conv" and info["hparams"]["resi_connection"] == "3conv"
    assert info["params"] > 0 and info["feature_view"] == "tokens"
    assert [b["path"] for b in info["blocks"]] == ["layers.0", "layers.1"]
    assert info["metadata"]["wrapper"] == "params_ema" and info["safe_dtypes"] == ["float32", "bfloat16"]


def test_convert_writes_safetensors_with_metadata_that_inspect_trusts(tmp_path):
    dst = tmp_path / "edsr_x3.safetensors"
    result = run_cli("convert", FIXTURES / "edsr_small_x3.pth", dst, "--opt", "res_scale=0.1")
    assert result.returncode == 0, result.stderr
    with safe_open(str(dst), "pt") as f:
        meta = f.metadata()
    assert meta["srdistill.arch"] == "edsr" and meta["srdistill.scale"] == "3"
    assert json.loads(meta["srdistill.hparams"])["res_scale"] == 0.1
    prov = json.loads(meta["srdistill.provenance"])
    assert prov["converted_from"] == "edsr_small_x3.pth" and len(prov["source_sha256"]) == 64
    info = json.loads(run_cli("inspect", dst, "--json").stdout)
    assert info["metadata"]["identified_by"] == "metadata" and info["hparams"]["res_scale"] == 0.1
    assert info["assumed"] == []
    human = run_cli("inspect", dst)
    assert human.returncode == 0 and "edsr" in human.stdout and "x3" in human.stdout
