"""Partial forwards from a boundary (Block Prior Mixer), chain detection, route frequencies."""

from __future__ import annotations

import pytest
import torch
from distill_helpers import FAMILIES, PATCH, frozen_teacher, objective, small

from srdistill.distill.routing import RoutedForward
from srdistill.hooks import block_hooks


def own_feature(model, x, index):
    with torch.no_grad(), block_hooks(model.net, model.blocks, model.spec.feature_view) as seen:
        full = model.net(x)
    return full, seen.features[model.blocks[index]]


@pytest.mark.parametrize("arch", FAMILIES)
def test_forward_from_a_block_with_its_own_feature_reproduces_the_model(arch):
    model = small(arch)
    model.net.eval()
    x = torch.rand(1, 3, PATCH, PATCH)
    runner = RoutedForward(model)
    for index in range(len(model.blocks)):
        full, feature = own_feature(model, x, index)
        with torch.no_grad():
            out = runner.forward_from(model.net, x, index, feature)
        assert torch.allclose(out, full, rtol=1e-4, atol=1e-5), (arch, index)
    for path in model.blocks:  # hooks removed, forwards restored
        module = model.net.get_submodule(path)
        assert not module._forward_hooks and "forward" not in module.__dict__


# What chain detection must find for the families whose structure is known: RFDN (plugin)
# concatenates every block's output, so its earlier blocks still matter after the last one.
KNOWN_CHAIN = {"edsr": True, "swinir": True, "rcan": True, "rrdbnet": True, "rfdn": False}


@pytest.mark.parametrize("arch", FAMILIES)
def test_chain_bodies_skip_the_blocks_before_the_boundary_and_dense_ones_do_not(arch):
    x = torch.rand(1, 3, PATCH, PATCH)
    model = small(arch)
    model.net.eval()
    runner = RoutedForward(model)
    last = len(model.blocks) - 1
    chain = runner.is_chain(model.net, x, last)
    if arch in KNOWN_CHAIN:
        assert chain is KNOWN_CHAIN[arch], arch
    full, feature = own_feature(model, x, last)
    # Wreck the first block: a skipped block cannot change the routed output, a block that is
    # still run (not a chain) must. Either way the detection is checked against what happens.
    with torch.no_grad():
        for p in model.net.get_submodule(model.blocks[0]).parameters():
            p.add_(torch.randn_like(p))
        routed = runner.forward_from(model.net, x, last, feature)
    assert torch.allclose(routed, full, rtol=1e-4, atol=1e-5) is chain, arch


def test_stop_returns_a_later_block_output():
    model = small("edsr", n_resblocks=4)
    model.net.eval()
    x = torch.rand(1, 3, PATCH, PATCH)
    _, f1 = own_feature(model, x, 1)
    _, f3 = own_feature(model, x, 3)
    with torch.no_grad():
        got = RoutedForward(model).forward_from(model.net, x, 1, f1, stop=3)
    assert torch.allclose(got, f3, rtol=1e-4, atol=1e-5)


def test_gradients_reach_the_routed_feature_through_frozen_teacher_blocks():
    teacher = frozen_teacher("swinir")
    x = torch.rand(1, 3, PATCH, PATCH)
    _, feature = own_feature(teacher, x, 0)
    feature = feature.clone().requires_grad_(True)
    RoutedForward(teacher).forward_from(teacher.net, x, 0, feature).abs().mean().backward()
    assert feature.grad is not None and float(feature.grad.abs().sum()) > 0
    assert all(p.grad is None for p in teacher.net.parameters())


def test_route_choices_follow_the_options_with_fair_frequencies():
    teacher, student = frozen_teacher("edsr", n_resblocks=4), small("edsr", n_resblocks=4, n_feats=8)
    obj = objective("mipkd", teacher, student, seed=3, k=4, bpm_every=1)
    n = 4000
    plans = [obj.plan_routes(step) for step in range(n)]
    assert all(len(p) == 1 and len(p[0][1]) == 1 for p in plans)
    teacher_share = sum(p[0][1][0] == "teacher" for p in plans) / n
    assert abs(teacher_share - 0.5) < 4 * (0.25 / n) ** 0.5
    counts = torch.bincount(torch.tensor([p[0][0] for p in plans]), minlength=4).float() / n
    assert torch.all((counts - 0.25).abs() < 4 * (0.25 * 0.75 / n) ** 0.5), counts
    assert obj.plan_routes(17) == objective("mipkd", teacher, student, seed=3, k=4, bpm_every=1).plan_routes(17)  # same on every rank

    every = objective("mipkd", teacher, student, k=4, bpm_every=3, bpm_boundaries="all", route="student", switch="each")
    assert [bool(every.plan_routes(s)) for s in range(7)] == [True, False, False, True, False, False, True]
    assert every.plan_routes(0) == [(0, ["student"] * 4), (1, ["student"] * 3), (2, ["student"] * 2), (3, ["student"])]
    assert objective("mipkd", teacher, student, bpm_every=0).plan_routes(0) == []
