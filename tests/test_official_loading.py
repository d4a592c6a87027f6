"""Official checkpoints load unchanged through the public API, with detection over *all* archs.

The per-family tests in tests/archs/ check each spec alone; these go through ``load_model``,
so an architecture must also never be mistaken for another one.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from official_fixtures import CASES, FIXTURES, MANIFESTS, manifest_state
from PIL import Image
from safetensors.torch import load_file
from shared_data import shared_path

from srdistill import load_model
from srdistill.io.model_files import RawModelFile
from srdistill.models import identify
from srdistill.archs.registry import get_arch


def files_under(root) -> dict:
    return {str(p.relative_to(root)): p for p in root.rglob("*") if p.is_file()}


def test_the_fixture_copy_matches_the_shared_original():
    # The repository carries a copy so a fresh clone runs these tests; the shared folder is the
    # source of truth, and a fixture edited on one side only must not go unnoticed.
    original = shared_path("fixtures/official")
    ours, theirs = files_under(FIXTURES), files_under(original)
    assert sorted(ours) == sorted(theirs), f"the copy in {FIXTURES} and {original} hold different files"
    changed = [name for name in sorted(ours) if ours[name].read_bytes() != theirs[name].read_bytes()]
    assert not changed, f"differ from {original}: {changed}; copy the shared files over"


def as_json(data: dict) -> dict:
    """Tuples become lists, as in the JSON fixtures."""
    return json.loads(json.dumps(data))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["file"])
def test_official_fixture_loads_and_reproduces_official_output(case):
    first = load_model(FIXTURES / case["file"])
    assert first.arch == case["arch"] and first.scale == case["scale"]
    if case["wrapper"]:
        assert first.metadata["wrapper"] == case["wrapper"]
    # Hyperparameters the weights cannot tell are flagged, never silently guessed; the user
    # (or srdistill metadata) supplies them.
    overrides = {k: v for k, v in case["hparams"].items() if k in first.assumed and first.hparams[k] != v}
    model = load_model(FIXTURES / case["file"], hparams=overrides) if overrides else first
    assert as_json({k: model.hparams[k] for k in case["hparams"]}) == case["hparams"]

    io = load_file(FIXTURES / case["io"])
    x = io["input"].clone()
    with torch.no_grad():
        y = model(x)
    assert torch.equal(x, io["input"])
    assert y.shape == io["output"].shape == tuple(case["output_shape"])
    assert (y - io["output"]).abs().max().item() <= 1e-5

    # The 8-bit rendering matches the official PNG to within one gray level.
    png = np.asarray(Image.open(FIXTURES / case["expected_png"]).convert("RGB")).astype(np.int16)
    ours = (y[0].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy().astype(np.int16)
    assert np.abs(ours - png).max() <= 1


def test_res_scale_is_reported_as_assumed_and_override_matters():
    case = next(c for c in CASES if c["file"] == "edsr_small_x3.pth")
    assumed = load_model(FIXTURES / case["file"])
    assert "res_scale" in assumed.assumed and assumed.hparams["res_scale"] == 1.0
    fixed = load_model(FIXTURES / case["file"], hparams={"res_scale": "0.1"})
    assert fixed.assumed == () and fixed.hparams["res_scale"] == 0.1
    x = load_file(FIXTURES / case["io"])["input"]
    with torch.no_grad():
        assert (assumed(x) - fixed(x)).abs().max() > 1e-3


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.stem)
def test_release_manifest_detected_from_shapes_alone(path):
    info, state = manifest_state(path)
    raw = RawModelFile(path, "manifest", state)
    spec, det, how = identify(raw)
    assert how == "detected"
    assert spec.id == info["arch"] and det.scale == info["scale"]
    assert as_json({k: det.hparams[k] for k in info["hparams"]}) == info["hparams"]
    with torch.device("meta"):
        net = get_arch(info["arch"]).instantiate(det.scale, det.hparams)
    assert {k: list(v.shape) for k, v in net.state_dict().items()} == info["tensors"]


def test_every_fixture_arch_has_a_case_and_a_manifest():
    assert {c["arch"] for c in CASES} == {json.loads(p.read_text())["arch"] for p in MANIFESTS} == {
        "edsr", "rcan", "swinir", "rrdbnet"
    }
