"""RRDBNet against BasicSR-layout fixtures (random weights + official outputs) and the
RealESRGAN_x4plus key/shape manifest."""

from __future__ import annotations

import pytest
import torch
from official_fixtures import (
    LAYOUTS,
    assert_official_case,
    block_modules,
    cases_for,
    detect_release_layout,
    meta_state,
)

from srdistill.archs.rrdbnet import SPEC
from srdistill.errors import ShapeMismatchError

CASES = cases_for("rrdbnet")


def test_fixtures_cover_x4_and_x2():
    assert {c["file"] for c in CASES} >= {"rrdbnet_small_x4.pth", "rrdbnet_small_x2.pth"}


@pytest.mark.parametrize("case", CASES, ids=[c["file"] for c in CASES])
def test_fixture_detect_load_forward(case):
    assert_official_case(SPEC, case)


def test_manifest_detection_and_meta_instantiate():
    info, det = detect_release_layout(SPEC, LAYOUTS / "rrdbnet_x4plus.json")
    assert info["scale"] == 4
    assert det.hparams == SPEC.resolve(preset="rrdbnet")


def test_blocks_and_channels_match_module_tree():
    hp = {"num_feat": 8, "num_block": 3, "num_grow_ch": 4}
    block_modules(SPEC, 4, hp, ("body.0", "body.1", "body.2"), (8, 8, 8))


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_odd_sized_input_any_scale(scale):
    torch.manual_seed(0)
    net = SPEC.instantiate(scale, {"num_feat": 8, "num_block": 1, "num_grow_ch": 4}).eval()
    x = torch.rand(1, 3, 17, 23)
    with torch.no_grad():
        y = net(x)
    assert y.shape == (1, 3, 17 * scale, 23 * scale)
    assert torch.isfinite(y).all()


def test_odd_input_equals_crop_of_reflect_padded_input():
    # The internal padding must behave like Real-ESRGAN's pad-then-crop inference.
    torch.manual_seed(0)
    net = SPEC.instantiate(2, {"num_feat": 8, "num_block": 1, "num_grow_ch": 4}).eval()
    x = torch.rand(1, 3, 17, 23)
    padded = torch.nn.functional.pad(x, (0, 1, 0, 1), mode="reflect")
    with torch.no_grad():
        y = net(x)
        ref = net(padded)[..., :34, :46]
    assert y.shape == (1, 3, 34, 46)
    assert torch.equal(y, ref)


def test_tiny_input_too_small_to_reflect():
    net = SPEC.instantiate(1, {"num_feat": 4, "num_block": 0, "num_grow_ch": 4}).eval()
    with torch.no_grad():
        assert net(torch.rand(1, 3, 1, 2)).shape == (1, 3, 1, 2)


def test_size_multiple():
    hp = SPEC.resolve()
    assert SPEC.pad_multiple(hp, 4) == 1
    assert SPEC.pad_multiple(hp, 2) == 2
    assert SPEC.pad_multiple(hp, 1) == 4


def test_detect_ignores_edsr_dict():
    edsr = {
        "head.0.weight": torch.zeros(64, 3, 3, 3),
        "head.0.bias": torch.zeros(64),
        "body.0.body.0.weight": torch.zeros(64, 64, 3, 3),
        "body.0.body.0.bias": torch.zeros(64),
    }
    assert SPEC.detect(edsr) is None


def test_detect_rejects_non_rgb_with_named_key():
    state = meta_state(SPEC, 4, {"num_feat": 8, "num_block": 1, "num_grow_ch": 4})
    state["conv_first.weight"] = torch.empty(8, 1, 3, 3, device="meta")
    with pytest.raises(ShapeMismatchError, match="conv_first.weight"):
        SPEC.detect(state)


def test_zero_blocks_assumes_growth_channels():
    state = meta_state(SPEC, 2, {"num_feat": 8, "num_block": 0, "num_grow_ch": 4})
    det = SPEC.detect(state)
    assert det.scale == 2
    assert det.hparams == {"num_feat": 8, "num_block": 0, "num_grow_ch": 32}
    assert det.assumed == ("num_grow_ch",)
