"""SwinIR: official fixtures load strictly and reproduce the official output; detection from the
released layouts; the stored-vs-fresh shifted-window mask paths; refusals of unsupported variants."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from srdistill.archs._swin_blocks import shifted_window_mask
from srdistill.archs.spec import TOKENS
from srdistill.archs.swinir import SPEC
from srdistill.errors import SrdistillError, UnknownArchitectureError, UsageError

FIXTURES = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures" / "official"
CASES = [c for c in json.loads((FIXTURES / "cases.json").read_text()) if c["arch"] == "swinir"]
MANIFESTS = {
    "swinir_m_classical_x4.json": "swinir-m",
    "swinir_s_lightweight_x4.json": "swinir-s",
    "swinir_m_realworld_x4.json": "swinir-realworld",
}


def _as_detected(hparams: dict) -> dict:
    """cases.json spells tuples as JSON lists."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in hparams.items()}


def _state(case: dict) -> dict[str, torch.Tensor]:
    ckpt = torch.load(FIXTURES / case["file"], weights_only=True)
    return ckpt[case["wrapper"]] if case["wrapper"] else ckpt


def _loaded(case: dict) -> torch.nn.Module:
    state = _state(case)
    det = SPEC.detect(state)
    net = SPEC.instantiate(det.scale, det.hparams).eval()
    net.load_state_dict(state, strict=True)
    return net


def _meta_state(shapes: dict[str, list[int]]) -> dict[str, torch.Tensor]:
    return {key: torch.empty(shape, device="meta") for key, shape in shapes.items()}


def _classical_case() -> dict:
    return next(c for c in CASES if c["file"] == "swinir_classical_small_x4.pth")


@pytest.mark.parametrize("case", CASES, ids=[c["file"] for c in CASES])
def test_official_fixture_detects_loads_and_reproduces_output(case):
    state = _state(case)
    det = SPEC.detect(state)
    assert det is not None
    assert det.scale == case["scale"]
    assert det.hparams == _as_detected(case["hparams"])
    assert det.assumed == ()

    net = SPEC.instantiate(det.scale, det.hparams).eval()
    net.load_state_dict(state, strict=True)
    io = load_file(FIXTURES / case["io"])
    x = io["input"]
    before = x.clone()
    with torch.no_grad():
        out = net(x)
    assert torch.equal(x, before), "forward modified its input"
    assert out.shape == io["output"].shape
    assert (out - io["output"]).abs().max().item() < 1e-5


@pytest.mark.parametrize("manifest", sorted(MANIFESTS))
def test_released_layout_detected_from_shapes_and_rebuilt_exactly(manifest):
    layout = json.loads((FIXTURES / "layouts" / manifest).read_text())
    det = SPEC.detect(_meta_state(layout["tensors"]))
    assert det is not None
    assert det.scale == layout["scale"]
    assert det.hparams == _as_detected(layout["hparams"])

    def shapes(hparams):
        with torch.device("meta"):
            net = SPEC.instantiate(layout["scale"], hparams)
        return {key: list(t.shape) for key, t in net.state_dict().items()}

    assert shapes(det.hparams) == layout["tensors"]
    # The preset named after the release builds exactly the released layout.
    assert shapes(SPEC.resolve(preset=MANIFESTS[manifest])) == layout["tensors"]


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


def test_blocks_emit_tokens_the_token_view_maps_to_feature_maps():
    case = _classical_case()
    net = _loaded(case)
    hparams = SPEC.detect(_state(case)).hparams
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
    fork = dict(_state(_classical_case()))
    fork["layers.0.residual_group.overlap_attn.qkv.weight"] = torch.zeros(72, 24)
    assert SPEC.detect(fork) is None


def test_unsupported_variants_are_refused_with_a_named_error():
    base = _state(_classical_case())
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
