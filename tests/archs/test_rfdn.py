"""The srdistill-rfdn plugin (plugins/srdistill-rfdn): official RFDN key layout, detection,
registry discovery through its entry point, and forward shapes."""

from __future__ import annotations

import example_plugin
import pytest
import torch
from official_fixtures import block_modules, detect_as, meta_state

from srdistill.archs.registry import ARCHS
from srdistill.errors import ShapeMismatchError, UsageError

if not example_plugin.registered():
    pytest.skip(example_plugin.REASON, allow_module_level=True)
SPEC = ARCHS.get(example_plugin.ARCH_ID)

# Derived by hand from njulj/RFDN RFDN.py + block.py for RFDN(nf=50, num_modules=4, upscale=4):
# distilled channels nf//2 = 25, ESA channels nf//4 = 12.
OFFICIAL_X4_SHAPES = {
    "fea_conv.weight": (50, 3, 3, 3),
    "fea_conv.bias": (50,),
    "B1.c1_d.weight": (25, 50, 1, 1),
    "B1.c1_r.weight": (50, 50, 3, 3),
    "B2.c3_d.bias": (25,),
    "B3.c4.weight": (25, 50, 3, 3),
    "B4.c5.weight": (50, 100, 1, 1),
    "B1.esa.conv1.weight": (12, 50, 1, 1),
    "B2.esa.conv_f.weight": (12, 12, 1, 1),
    "B3.esa.conv_max.weight": (12, 12, 3, 3),
    "B4.esa.conv2.weight": (12, 12, 3, 3),
    "B4.esa.conv3_.weight": (12, 12, 3, 3),
    "B4.esa.conv4.weight": (50, 12, 1, 1),
    "c.0.weight": (50, 200, 1, 1),
    "LR_conv.weight": (50, 50, 3, 3),
    "upsampler.0.weight": (48, 50, 3, 3),
    "upsampler.0.bias": (48,),
}
RFDB_CONVS = ["c1_d", "c1_r", "c2_d", "c2_r", "c3_d", "c3_r", "c4", "c5"]
ESA_CONVS = ["conv1", "conv_f", "conv_max", "conv2", "conv3", "conv3_", "conv4"]
# fea_conv 1,400 + 4 RFDB x 94,450 + c 10,050 + LR_conv 22,550 + upsampler 21,648 (the AIM 2020
# report lists RFDN at 0.433M).
OFFICIAL_X4_PARAMS = 433_448


def test_registered_through_plugin_entry_point():
    import srdistill_rfdn

    assert SPEC is srdistill_rfdn.SPEC
    assert ARCHS.provenance("rfdn").distribution == "srdistill-rfdn"


def test_official_x4_key_layout():
    state = meta_state(SPEC, 4, SPEC.resolve(preset="rfdn"))
    for key, shape in OFFICIAL_X4_SHAPES.items():
        assert tuple(state[key].shape) == shape, key

    per_block = [f"{conv}.{p}" for conv in RFDB_CONVS for p in ("weight", "bias")]
    per_block += [f"esa.{conv}.{p}" for conv in ESA_CONVS for p in ("weight", "bias")]
    expected = {"fea_conv.weight", "fea_conv.bias"}
    expected |= {f"B{i}.{rest}" for i in range(1, 5) for rest in per_block}
    expected |= {f"{m}.{p}" for m in ("c.0", "LR_conv", "upsampler.0") for p in ("weight", "bias")}
    assert set(state) == expected
    assert len(state) == 128
    assert SPEC.param_count(4, {}) == OFFICIAL_X4_PARAMS


@pytest.mark.parametrize(
    "scale,hparams",
    [(4, {"nf": 50, "num_modules": 4}), (2, {"nf": 16, "num_modules": 2}), (3, {"nf": 12, "num_modules": 6})],
)
def test_detection_round_trip(scale, hparams):
    det = detect_as(SPEC, meta_state(SPEC, scale, hparams), scale, hparams)
    assert det.assumed == ()


def test_detect_ignores_other_layouts():
    rrdb = {"conv_first.weight": torch.zeros(8, 3, 3, 3), "body.0.rdb1.conv1.weight": torch.zeros(4, 8, 3, 3)}
    imdn_like = {
        "fea_conv.weight": torch.zeros(64, 3, 3, 3),
        "IMDB1.c1.weight": torch.zeros(64, 64, 3, 3),
        "c.0.weight": torch.zeros(64, 384, 1, 1),
        "LR_conv.weight": torch.zeros(64, 64, 3, 3),
        "upsampler.0.weight": torch.zeros(48, 64, 3, 3),
    }
    assert SPEC.detect(rrdb) is None
    assert SPEC.detect(imdn_like) is None


def test_detect_reports_missing_block_by_key():
    state = meta_state(SPEC, 4, {"nf": 8, "num_modules": 3})
    for key in [k for k in state if k.startswith("B3.")]:
        del state[key]
    with pytest.raises(ShapeMismatchError, match=r"c\.0\.weight"):
        SPEC.detect(state)


def test_blocks_are_modules_with_declared_channels():
    block_modules(SPEC, 2, {"nf": 8, "num_modules": 3}, ("B1", "B2", "B3"), (8, 8, 8))


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_forward_odd_size(scale):
    torch.manual_seed(0)
    net = SPEC.instantiate(scale, {"nf": 8, "num_modules": 2}).eval()
    x = torch.rand(1, 3, 17, 23)
    before = x.clone()
    with torch.no_grad():
        y = net(x)
    assert y.shape == (1, 3, 17 * scale, 23 * scale)
    assert torch.isfinite(y).all()
    assert torch.equal(x, before)


def test_min_size_is_enforced_with_usage_error():
    net = SPEC.instantiate(2, {"nf": 8, "num_modules": 1}).eval()
    with torch.no_grad():
        assert net(torch.rand(1, 3, SPEC.min_size, SPEC.min_size)).shape == (1, 3, 30, 30)
        with pytest.raises(UsageError, match="at least 15x15"):
            net(torch.rand(1, 3, SPEC.min_size - 1, 32))
