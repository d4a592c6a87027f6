"""Every registered architecture — built-ins and installed plugins — with no per-arch test code.

For each arch and scale: a small instance survives a state-dict round trip through detection
(same scale and hyperparameters), runs an odd-sized input (sized from the spec's ``min_size`` and
``size_multiple``, so the network's own padding runs) to the right shape with finite values
without touching the input, and every declared block boundary fires exactly once with the
declared channels. Files written by srdistill load back to the same function.
"""

from __future__ import annotations

from importlib import metadata

import pytest
import torch

from srdistill import load_model, save_model
from srdistill.archs.registry import ARCHS, list_archs
from srdistill.hooks import block_hooks
from srdistill.models import SRModel

ARCH_SCALES = [(arch_id, s) for arch_id, spec in sorted(list_archs().items()) for s in spec.scales]


def small(arch_id: str, scale: int) -> SRModel:
    spec = ARCHS.get(arch_id)
    hp = spec.resolve(spec.small)
    torch.manual_seed(0)
    return SRModel(spec, scale, hp, spec.instantiate(scale, hp).eval())


def input_size(model: SRModel) -> tuple[int, int]:
    """Height and width of at least 17 and ``min_size``, neither a multiple of the spec's
    ``size_multiple`` when that is above 1: the input a caller would not have padded."""
    multiple = model.spec.pad_multiple(model.hparams, model.scale)
    sides = []
    for side in (max(17, model.spec.min_size), max(23, model.spec.min_size + 6)):
        while multiple > 1 and side % multiple == 0:
            side += 1
        sides.append(side)
    return sides[0], sides[1]


def test_builtins_are_registered():
    own = {ep.name for ep in metadata.distribution("srdistill").entry_points if ep.group == ARCHS.group}
    assert {"edsr", "rcan", "swinir", "rrdbnet"} <= own <= set(ARCHS.ids())
    for arch_id in own:
        assert ARCHS.provenance(arch_id).builtin


@pytest.mark.parametrize("arch_id,scale", ARCH_SCALES)
def test_detection_round_trip(arch_id, scale):
    model = small(arch_id, scale)
    det = model.spec.detect(model.net.state_dict())
    assert det is not None, f"{arch_id} does not recognise its own state dict"
    assert det.scale == scale
    found = model.spec.resolve(det.hparams)
    for key in model.hparams:
        if key not in det.assumed:
            assert found[key] == model.hparams[key], key


@pytest.mark.parametrize("arch_id,scale", ARCH_SCALES)
def test_forward_shape_finite_and_input_untouched(arch_id, scale):
    model = small(arch_id, scale)
    h, w = input_size(model)
    x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(1))
    before = x.clone()
    with torch.no_grad():
        y = model(x)
    assert y.shape == (1, 3, h * scale, w * scale)
    assert torch.isfinite(y).all()
    assert torch.equal(x, before), "forward modified its input in place"


@pytest.mark.parametrize("arch_id,scale", ARCH_SCALES)
def test_block_boundaries_fire_once_with_declared_channels(arch_id, scale):
    model = small(arch_id, scale)
    blocks, channels = model.blocks, model.block_channels
    assert len(blocks) == len(channels) > 0
    x = torch.rand(2, 3, *input_size(model))
    with torch.no_grad(), block_hooks(model.net, blocks, model.spec.feature_view) as seen:
        model(x)
        seen.check_fired_once()
    for path, c in zip(blocks, channels):
        feat = seen.features[path]
        assert feat.ndim == 4 and feat.shape[0] == 2 and feat.shape[1] == c, (path, tuple(feat.shape))
    # The context manager removed every hook.
    for path in blocks:
        assert not model.net.get_submodule(path)._forward_hooks


@pytest.mark.parametrize("arch_id,scale", ARCH_SCALES)
def test_replacing_a_boundary_changes_the_output(arch_id, scale):
    """What the Block Prior Mixer relies on: a hook can substitute a block's output."""
    model = small(arch_id, scale)
    x = torch.rand(1, 3, *input_size(model))
    first = model.blocks[0]
    with torch.no_grad():
        ref = model(x)
        with block_hooks(model.net, [first], model.spec.feature_view, replace={first: lambda f: f * 0}) as seen:
            out = model(x)
        seen.check_fired_once()
    assert out.shape == ref.shape
    assert not torch.allclose(out, ref)


@pytest.mark.parametrize("arch_id", sorted(list_archs()))
def test_safetensors_round_trip_through_metadata(arch_id, tmp_path):
    spec = ARCHS.get(arch_id)
    model = small(arch_id, spec.scales[-1])
    path = save_model(model, tmp_path / f"{arch_id}.safetensors")
    loaded = load_model(path)
    assert loaded.arch == arch_id and loaded.scale == model.scale and loaded.hparams == model.hparams
    assert loaded.metadata["identified_by"] == "metadata"
    x = torch.rand(1, 3, *input_size(model))
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


@pytest.mark.parametrize("arch_id", sorted(list_archs()))
def test_presets_resolve_and_count_parameters(arch_id):
    spec = ARCHS.get(arch_id)
    assert spec.presets, f"{arch_id} declares no preset"
    for name in spec.presets:
        assert name == arch_id or name.startswith(arch_id + "-")
        hp = spec.resolve(preset=name)
        assert spec.param_count(4 if 4 in spec.scales else spec.scales[0], hp) > 0
        assert len(spec.blocks(hp)) == len(spec.block_channels(hp)) > 0
