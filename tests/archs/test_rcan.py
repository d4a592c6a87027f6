"""RCAN spec: official fixture and release layout, presets, separation from EDSR, detection errors."""

from __future__ import annotations

import pytest
import torch
from official_fixtures import (
    assert_official_case,
    block_modules,
    cases_except,
    cases_for,
    detect_as,
    detect_release_layout,
    load_case_state,
    manifest_state,
    manifests_except,
    manifests_for,
)

from srdistill.archs.rcan import SPEC
from srdistill.errors import ShapeMismatchError

RCAN_CASES = cases_for("rcan")
OTHER_CASES = cases_except("rcan")
RCAN_MANIFESTS = manifests_for("rcan")
OTHER_MANIFESTS = manifests_except("rcan")


def test_fixtures_present():
    assert [c["file"] for c in RCAN_CASES] == ["rcan_small_x2.pth"]
    assert [p.stem for p in RCAN_MANIFESTS] == ["rcan_x4"]


@pytest.mark.parametrize("case", RCAN_CASES, ids=lambda c: c["file"])
def test_official_checkpoint_detects_loads_and_reproduces_output(case):
    assert_official_case(SPEC, case)


@pytest.mark.parametrize("path", RCAN_MANIFESTS, ids=lambda p: p.stem)
def test_release_layout_detection_and_meta_instantiation(path):
    detect_release_layout(SPEC, path)


@pytest.mark.parametrize("case", OTHER_CASES, ids=lambda c: c["file"])
def test_other_architectures_checkpoints_are_not_rcan(case):
    assert SPEC.detect(load_case_state(case)) is None


@pytest.mark.parametrize("path", OTHER_MANIFESTS, ids=lambda p: p.stem)
def test_other_architectures_layouts_are_not_rcan(path):
    assert SPEC.detect(manifest_state(path)[1]) is None


def test_edsr_does_not_claim_rcan_state_dicts():
    from srdistill.archs.edsr import SPEC as EDSR

    # n_resblocks=2 puts the group's closing conv at body.0.body.2, an EDSR-looking key.
    assert "body.0.body.2.weight" in load_case_state(RCAN_CASES[0])
    assert EDSR.detect(load_case_state(RCAN_CASES[0])) is None
    assert EDSR.detect(manifest_state(RCAN_MANIFESTS[0])[1]) is None


@pytest.mark.parametrize("scale,reduction", [(3, 2), (4, 8)])
def test_detection_round_trip(scale, reduction):
    hparams = {"n_resgroups": 3, "n_resblocks": 1, "n_feats": 8, "reduction": reduction}
    detect_as(SPEC, SPEC.instantiate(scale, hparams).state_dict(), scale, hparams)


def test_blocks_are_the_residual_groups():
    hparams = SPEC.resolve({"n_resgroups": 2, "n_resblocks": 1, "n_feats": 8, "reduction": 4})
    blocks = block_modules(SPEC, 2, hparams, ("body.0", "body.1"), (8, 8))
    for block in blocks.values():
        assert type(block).__name__ == "ResidualGroup"


def test_preset_parameter_counts_match_the_paper():
    full = SPEC.param_count(4, SPEC.resolve(preset="rcan"))
    lite = SPEC.param_count(4, SPEC.resolve(preset="rcan-lite"))
    assert 15.4e6 < full < 15.8e6  # paper: 15.6M
    assert 4e6 < lite < 6e6  # 6 of 20 RCABs per group


def test_mean_shift_is_frozen_and_the_rest_trains():
    net = SPEC.instantiate(2, {"n_resgroups": 1, "n_resblocks": 1, "n_feats": 8, "reduction": 4})
    frozen = {name for name, p in net.named_parameters() if not p.requires_grad}
    assert frozen == {"sub_mean.weight", "sub_mean.bias", "add_mean.weight", "add_mean.bias"}


def test_reduction_that_no_integer_gives_is_a_shape_error():
    _, state = manifest_state(RCAN_MANIFESTS[0])
    state["body.0.body.0.body.3.conv_du.0.weight"] = torch.empty(40, 64, 1, 1, device="meta")  # 64 // r is never 40
    with pytest.raises(ShapeMismatchError, match="conv_du"):
        SPEC.detect(state)
