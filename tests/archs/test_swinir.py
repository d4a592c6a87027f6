"""SwinIR: official fixtures load strictly and reproduce the official output; detection from the
released layouts; the stored-vs-fresh shifted-window mask paths; refusals of unsupported variants."""

from __future__ import annotations

import pytest
import torch
from official_fixtures import (
    LAYOUTS,
    assert_official_case,
    case_named,
    cases_for,
    detect_release_layout,
    load_case_state,
    loaded,
    manifest_shapes,
    meta_shapes,
)

from srdistill.archs._swin_blocks import shifted_window_mask
from srdistill.archs.spec import TOKENS
from srdistill.archs.swinir import SPEC
from srdistill.errors import SrdistillError, UnknownArchitectureError, UsageError

CASES = cases_for("swinir")
MANIFESTS = {
    "swinir_m_classical_x4.json": "swinir-m",
    "swinir_s_lightweight_x4.json": "swinir-s",
    "swinir_m_realworld_x4.json": "swinir-realworld",
}


def _loaded(case: dict) -> torch.nn.Module:
    state = load_case_state(case)
    det = SPEC.detect(state)
    return loaded(SPEC, det.scale, det.hparams, state)


def _classical_case() -> dict:
    return case_named("swinir_classical_small_x4.pth")


@pytest.mark.parametrize("case", CASES, ids=[c["file"] for c in CASES])
def test_official_fixture_detects_loads_and_reproduces_output(case):
    assert_official_case(SPEC, case)


@pytest.mark.parametrize("manifest", sorted(MANIFESTS))
def test_released_layout_detected_from_shapes_and_rebuilt_exactly(manifest):
    info, _ = detect_release_layout(SPEC, LAYOUTS / manifest)
    # The preset named after the release builds exactly the released layout.
    preset = SPEC.resolve(preset=MANIFESTS[manifest])
    assert meta_shapes(SPEC, info["scale"], preset) == manifest_shapes(info)


def test_stored_mask_only_at_training_size_fresh_mask_otherwise():
    case = _classical_case()  # img_size 16, window 4
    net = _loaded(case)
    masked_blocks = [m for m in net.modules() if getattr(m, "attn_mask", None) is not None]
    assert masked_blocks
    for block in masked_blocks:
        assert torch.equal(block.attn_mask, shifted_window_mask((16, 16), 4, 2))

    torch.manual_seed(0)
    at_size, off_size = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 17, 23)
    with torch.no_grad():
        ref_at, ref_off = net(at_size), net(off_size)
        # Break the stored masks: only the input of exactly img_size may notice.
        for block in masked_blocks:
            block.attn_mask.zero_()
        broken_at, broken_off = net(at_size), net(off_size)
    assert ref_at.shape == (1, 3, 64, 64) and ref_off.shape == (1, 3, 68, 92)
    assert torch.isfinite(ref_at).all() and torch.isfinite(ref_off).all()
    assert (broken_at - ref_at).abs().max().item() > 1e-4
    assert torch.equal(broken_off, ref_off)


def _calculate_mask_as_published(h: int, w: int, window: int, shift: int) -> torch.Tensor:
    """The paper code's construction: label nine image regions by slice assignment, compare labels per window."""
    regions = torch.zeros(1, h, w, 1)
    bands = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    for label, (rows, cols) in enumerate((r, c) for r in bands for c in bands):
        regions[:, rows, cols, :] = label
    windows = regions.view(h // window, window, w // window, window).permute(0, 2, 1, 3).reshape(-1, window * window)
    diff = windows.unsqueeze(1) - windows.unsqueeze(2)
    return diff.masked_fill(diff != 0, -100.0).masked_fill(diff == 0, 0.0)


# One window (every band but the first empty), non-square grids, the released window 8 / shift 4,
# and an odd shift.
@pytest.mark.parametrize("h, w, window, shift", [(4, 4, 4, 2), (8, 12, 4, 2), (40, 56, 8, 4), (16, 24, 8, 3)])
def test_shifted_window_mask_equals_the_published_construction(h, w, window, shift):
    # The mask is built from index comparisons (which an ONNX trace records) rather than slice
    # assignment; both the forward-time and the constructor path must give the same 0 / -100.
    expected = _calculate_mask_as_published(h, w, window, shift)
    assert torch.equal(shifted_window_mask((h, w), window, shift, device="cpu"), expected)
    assert torch.equal(shifted_window_mask((h, w), window, shift), expected)
    half = shifted_window_mask((h, w), window, shift, device="cpu", dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16 and torch.equal(half.float(), expected)


def test_blocks_emit_tokens_the_token_view_maps_to_feature_maps():
    case = _classical_case()
    net = _loaded(case)
    hparams = SPEC.detect(load_case_state(case)).hparams
    paths = SPEC.blocks(hparams)
    assert paths == ("layers.0", "layers.1")
    assert SPEC.feature_view is TOKENS
    modules = dict(net.named_modules())
    seen = {}
    handles = [
        modules[p].register_forward_hook(lambda m, args, out, p=p: seen.__setitem__(p, (args, out))) for p in paths
    ]
    with torch.no_grad():
        net(torch.rand(1, 3, 17, 23))
    for h in handles:
        h.remove()
    for path, channels in zip(paths, SPEC.block_channels(hparams)):
        args, out = seen[path]
        feature = TOKENS.to_nchw(out, args)
        # The network pads to the window multiple before the body: 17x23 -> 20x24.
        assert feature.shape == (1, channels, 20, 24)
        assert torch.equal(TOKENS.from_nchw(feature, out, args), out)
    assert SPEC.pad_multiple(hparams, 4) == 4


def test_bfloat16_forward_runs_on_the_fresh_mask_path():
    net = _loaded(_classical_case())
    x = torch.rand(1, 3, 17, 23)
    with torch.no_grad():
        ref = net(x)
        out = net.to(torch.bfloat16)(x.to(torch.bfloat16))
    assert out.dtype == torch.bfloat16 and out.shape == ref.shape
    assert (out.float() - ref).abs().max().item() < 0.1
    assert torch.float16 not in SPEC.safe_dtypes


def test_detect_ignores_other_architectures():
    edsr_like = {"head.0.weight": torch.zeros(64, 3, 3, 3), "body.0.body.0.weight": torch.zeros(64, 64, 3, 3)}
    assert SPEC.detect(edsr_like) is None
    # A Swin-family fork with modules SwinIR lacks (e.g. HAT's overlapping attention) is not ours.
    fork = dict(load_case_state(_classical_case()))
    fork["layers.0.residual_group.overlap_attn.qkv.weight"] = torch.zeros(72, 24)
    assert SPEC.detect(fork) is None


def test_unsupported_variants_are_refused_with_a_named_error():
    base = load_case_state(_classical_case())
    with_ape = {**base, "absolute_pos_embed": torch.zeros(1, 256, 24)}
    with pytest.raises(UnknownArchitectureError, match="absolute_pos_embed"):
        SPEC.detect(with_ape)
    denoiser = {k: v for k, v in base.items() if not k.startswith(("upsample.", "conv_before_upsample."))}
    with pytest.raises(UnknownArchitectureError, match="upsampler"):
        SPEC.detect(denoiser)
    assert issubclass(UnknownArchitectureError, SrdistillError)


def test_build_rejects_impossible_hyperparameters():
    with pytest.raises(UsageError, match="nearest\\+conv"):
        SPEC.instantiate(3, SPEC.resolve(preset="swinir-realworld"))
    with pytest.raises(UsageError, match="divisible"):
        SPEC.instantiate(2, {**SPEC.resolve(preset="swinir-s"), "num_heads": (7, 7, 7, 7)})
    with pytest.raises(UsageError, match="upsampler"):
        SPEC.instantiate(4, {"upsampler": "pixelshuffle_direct"})
