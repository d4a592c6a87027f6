"""EDSR spec: official fixtures and release layouts, BasicSR layout, presets, detection errors."""

from __future__ import annotations

import pytest
import torch
from official_fixtures import (
    LAYOUTS,
    assert_reproduces_official_output,
    block_modules,
    cases_except,
    cases_for,
    detect_release_layout,
    load_case_io,
    load_case_state,
    loaded,
    manifest_state,
    manifests_except,
    manifests_for,
)

from srdistill.archs.edsr import SPEC
from srdistill.errors import ShapeMismatchError, UsageError

EDSR_CASES = cases_for("edsr")
OTHER_CASES = cases_except("edsr")
EDSR_MANIFESTS = manifests_for("edsr")
OTHER_MANIFESTS = manifests_except("edsr")


def test_fixture_set_covers_both_res_scales():
    assert {c["hparams"]["res_scale"] for c in EDSR_CASES} == {1.0, 0.1}
    assert {p.stem for p in EDSR_MANIFESTS} >= {"edsr_baseline_x2", "edsr_baseline_x3", "edsr_baseline_x4", "edsr_x4"}


@pytest.mark.parametrize("case", EDSR_CASES, ids=lambda c: c["file"])
def test_official_checkpoint_detects_loads_and_reproduces_output(case):
    state = load_case_state(case)
    det = SPEC.detect(state)
    assert det is not None
    assert det.scale == case["scale"]
    assert det.assumed == ("res_scale",)
    expected = case["hparams"]
    for key in ("n_resblocks", "n_feats"):
        assert det.hparams[key] == expected[key]
    assert set(det.hparams) == set(expected)  # layout omitted: official is the default
    if expected["res_scale"] == 1.0:
        assert det.hparams == expected

    # res_scale is the one value the weights cannot tell: build with the fixture's true value.
    net = loaded(SPEC, det.scale, {**det.hparams, "res_scale": expected["res_scale"]}, state)
    assert_reproduces_official_output(net, case)


def test_res_scale_assumption_matters_for_the_small_x3_fixture():
    case = next(c for c in EDSR_CASES if c["hparams"]["res_scale"] == 0.1)
    state = load_case_state(case)
    det = SPEC.detect(state)
    assert det.hparams["res_scale"] == 1.0  # 24 features: the baseline convention
    net = loaded(SPEC, det.scale, det.hparams, state)
    io = load_case_io(case)
    with torch.no_grad():
        assumed_out = net(io["input"])
    assert (assumed_out - io["output"]).abs().max().item() > 1e-3


@pytest.mark.parametrize("path", EDSR_MANIFESTS, ids=lambda p: p.stem)
def test_release_layout_detection_and_meta_instantiation(path):
    detect_release_layout(SPEC, path)


@pytest.mark.parametrize("case", OTHER_CASES, ids=lambda c: c["file"])
def test_other_architectures_checkpoints_are_not_edsr(case):
    assert SPEC.detect(load_case_state(case)) is None


@pytest.mark.parametrize("path", OTHER_MANIFESTS, ids=lambda p: p.stem)
def test_other_architectures_layouts_are_not_edsr(path):
    assert SPEC.detect(manifest_state(path)[1]) is None


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_basicsr_layout_round_trip(scale):
    hparams = {"n_resblocks": 2, "n_feats": 8, "res_scale": 1.0, "layout": "basicsr"}
    state = SPEC.instantiate(scale, hparams).state_dict()
    basicsr_keys = {"conv_first.weight", "body.1.conv2.bias", "conv_after_body.weight", "upsample.0.weight"}
    assert basicsr_keys | {"conv_last.bias"} <= set(state)
    assert not any("mean" in key for key in state), "BasicSR keeps the mean out of its checkpoints"
    det = SPEC.detect(state)
    assert (det.scale, det.hparams, det.assumed) == (scale, hparams, ("res_scale",))


def official_to_basicsr_key(key: str, n_resblocks: int) -> str:
    parts = key.split(".")
    if parts[0] == "head":
        return "conv_first." + parts[-1]
    if parts[0] == "tail":
        return ("upsample." + ".".join(parts[2:])) if parts[1] == "0" else "conv_last." + parts[-1]
    if parts[0] == "body" and parts[1] == str(n_resblocks):
        return "conv_after_body." + parts[-1]
    conv = {"0": "conv1", "2": "conv2"}[parts[3]]
    return f"body.{parts[1]}.{conv}.{parts[-1]}"


@pytest.mark.parametrize("scale,res_scale", [(4, 1.0), (3, 0.1)])
def test_basicsr_layout_computes_the_official_function(scale, res_scale):
    torch.manual_seed(0)
    hparams = {"n_resblocks": 2, "n_feats": 8, "res_scale": res_scale}
    official = SPEC.instantiate(scale, hparams).eval()
    basicsr = SPEC.instantiate(scale, {**hparams, "layout": "basicsr"}).eval()
    copied = {
        official_to_basicsr_key(key, 2): value
        for key, value in official.state_dict().items()
        if not key.startswith(("sub_mean", "add_mean"))
    }
    basicsr.load_state_dict(copied, strict=True)
    x = torch.rand(1, 3, 9, 11)
    with torch.no_grad():
        a, b = official(x), basicsr(x)
    assert a.shape == (1, 3, 9 * scale, 11 * scale)
    assert (a - b).abs().max().item() < 1e-5


def test_stored_mean_shift_values_are_used_and_frozen():
    case = EDSR_CASES[0]
    state = dict(load_case_state(case))
    state["add_mean.bias"] = state["add_mean.bias"] + 2.55  # a release whose mean drifted in training
    det = SPEC.detect(state)
    net = loaded(SPEC, det.scale, det.hparams, state)
    io = load_case_io(case)
    with torch.no_grad():
        out = net(io["input"])
    assert torch.allclose(out, io["output"] + 0.01, atol=1e-5)
    assert not any(p.requires_grad for name, p in net.named_parameters() if "mean" in name)
    assert all(p.requires_grad for name, p in net.named_parameters() if "mean" not in name)


@pytest.mark.parametrize("layout", ["official", "basicsr"])
def test_blocks_are_the_residual_blocks(layout):
    hparams = SPEC.resolve({"n_resblocks": 3, "n_feats": 8, "layout": layout})
    blocks = block_modules(SPEC, 2, hparams, ("body.0", "body.1", "body.2"), (8, 8, 8))
    for block in blocks.values():
        assert type(block).__name__.endswith("ResBlock")


def test_preset_parameter_counts_match_the_paper():
    def count(preset: str) -> int:
        return SPEC.param_count(4, SPEC.resolve(preset=preset))

    assert 1.45e6 < count("edsr-baseline") < 1.6e6  # paper: 1.5M
    assert 42.5e6 < count("edsr") < 43.5e6  # paper: 43M
    assert 0.1e6 < count("edsr-lite") < 0.4e6
    assert SPEC.param_count(2, SPEC.resolve(preset="edsr-baseline")) < count("edsr-baseline")


def test_inconsistent_upsampler_is_a_shape_error():
    _, state = manifest_state(LAYOUTS / "edsr_baseline_x2.json")
    state["tail.0.0.weight"] = torch.empty(5 * 64, 64, 3, 3, device="meta")
    with pytest.raises(ShapeMismatchError, match="tail.0"):
        SPEC.detect(state)


def test_unknown_layout_is_a_usage_error():
    with pytest.raises(UsageError, match="layout"):
        SPEC.instantiate(2, {"n_resblocks": 1, "n_feats": 4, "layout": "keras"})


def test_bicubic_skip_predicts_a_residual_over_bicubic_and_survives_a_file_round_trip(tmp_path):
    import torch.nn.functional as F

    from srdistill import build_model, load_model, save_model

    model = build_model("edsr-lite", 2, {"bicubic_skip": True, "n_resblocks": 1})
    with torch.no_grad():
        for p in model.net.tail.parameters():
            p.zero_()  # the body then contributes nothing: output is exactly the bicubic image
        x = torch.rand(1, 3, 9, 13)
        expected = F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)
        assert torch.allclose(model(x), expected, atol=1e-6)
    assert set(model.net.state_dict()) == set(build_model("edsr-lite", 2, {"n_resblocks": 1}).net.state_dict())
    loaded = load_model(save_model(model, tmp_path / "skip.safetensors"))
    assert loaded.hparams["bicubic_skip"] is True
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
