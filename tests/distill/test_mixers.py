"""Feature Prior Mixer, 3D mask, adapters and feature scaling."""

from __future__ import annotations

import pytest
import torch

from srdistill.distill.features import RunningScale, crop_to_input, match_size
from srdistill.distill.mixers import ChannelAdapter, FeaturePriorMixer, random_mask


def test_mask_is_complementary_teacher_gets_i_student_gets_one_minus_i():
    z_t, z_s = torch.full((4, 8, 6, 6), 3.0), torch.full((4, 8, 6, 6), -5.0)
    torch.manual_seed(0)
    mask = random_mask(z_t, 0.5)
    mixed = FeaturePriorMixer.mix(z_t, z_s, mask)
    assert torch.equal(mixed[mask == 1], z_t[mask == 1]) and torch.equal(mixed[mask == 0], z_s[mask == 0])
    assert set(mask.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(FeaturePriorMixer.mix(z_t, z_s, torch.ones_like(mask)), z_t)
    assert torch.equal(FeaturePriorMixer.mix(z_t, z_s, torch.zeros_like(mask)), z_s)


def test_mask_is_3d_per_sample_with_the_requested_ratio_and_redrawn_each_call():
    torch.manual_seed(0)
    like = torch.empty(8, 16, 24, 24)
    for ratio in (0.25, 0.5, 0.9):
        mask = random_mask(like, ratio)
        assert mask.shape == like.shape
        n = mask.numel()
        assert abs(float(mask.mean()) - ratio) < 4 * (ratio * (1 - ratio) / n) ** 0.5
    a, b = random_mask(like, 0.5), random_mask(like, 0.5)
    assert not torch.equal(a, b)
    assert not torch.equal(a[0], a[1])  # per sample
    assert not torch.equal(a[0, 0], a[0, 1])  # per channel, not one 2D mask broadcast


def test_mixer_maps_both_widths_into_teacher_space():
    fpm = FeaturePriorMixer(teacher_channels=24, student_channels=8, latent=12)
    mixed, auto = fpm(torch.rand(2, 24, 10, 10), torch.rand(2, 8, 10, 10))
    assert mixed.shape == auto.shape == (2, 24, 10, 10)
    assert fpm.student_to_teacher(torch.rand(2, 8, 10, 10)).shape == (2, 24, 10, 10)
    cheap = FeaturePriorMixer(24, 8, 12, kind="conv1")
    assert sum(p.numel() for p in cheap.parameters()) < sum(p.numel() for p in fpm.parameters()) / 5


def test_mixer_with_all_teacher_mask_ignores_the_student():
    fpm = FeaturePriorMixer(6, 4, 8)
    t = torch.rand(1, 6, 5, 5)
    mask = torch.ones(1, 8, 5, 5)
    a, _ = fpm(t, torch.rand(1, 4, 5, 5), mask)
    b, auto = fpm(t, torch.rand(1, 4, 5, 5), mask)
    assert torch.allclose(a, b) and torch.allclose(a, auto)


def test_adapter_shapes():
    assert ChannelAdapter(180, 64)(torch.rand(1, 180, 7, 9)).shape == (1, 64, 7, 9)
    assert ChannelAdapter(32, 64).conv.kernel_size == (1, 1)


def test_running_scale_normalises_per_channel_and_inverts():
    torch.manual_seed(0)
    scale = RunningScale(3).train()
    x = torch.randn(4, 3, 8, 8) * torch.tensor([1.0, 30.0, 0.5]).view(1, 3, 1, 1)
    y = scale(x)
    stds = y.transpose(0, 1).flatten(1).std(dim=1)
    assert torch.allclose(stds, torch.ones(3), atol=1e-3)
    assert torch.allclose(scale.inverse(y), x, rtol=1e-5, atol=1e-6)
    scale.eval()
    before = scale.std.clone()
    scale(x * 10)
    assert torch.equal(scale.std, before)  # statistics frozen outside training
    dead = RunningScale(2).train()
    dead(torch.stack([torch.randn(2, 8, 8), torch.zeros(2, 8, 8)], dim=1))
    # A dead channel is floored at 1% of the mean spread, not divided by ~zero.
    assert float(dead.scale().min()) == pytest.approx(0.01 * float(dead.std.mean()), abs=2e-4)
    assert RunningScale(3, "none")(x) is x


def test_feature_sizes_are_cropped_and_matched():
    padded = torch.rand(1, 4, 24, 24)  # a window-padded map for a 21x22 input
    assert crop_to_input(padded, 21, 22).shape[-2:] == (21, 22)
    small = torch.rand(1, 4, 8, 8)  # a body at half resolution is left alone
    assert crop_to_input(small, 16, 16).shape[-2:] == (8, 8)
    assert match_size(small, (16, 16)).shape[-2:] == (16, 16)
    assert match_size(padded, (24, 24)) is padded


def test_feature_mixer_window_covers_the_requested_share_with_every_position_equally_likely():
    from srdistill.distill.methods.mipkd import random_window

    torch.manual_seed(0)
    for h, w, area in ((48, 48, 0.25), (17, 30, 0.5), (5, 5, 1.0), (3, 40, 0.01)):
        hits = torch.zeros(h, w)
        draws = 400
        for _ in range(draws):
            rows, cols = random_window(h, w, area)
            assert len(set(rows.tolist())) == len(rows) and len(set(cols.tolist())) == len(cols)  # no position twice
            assert abs(len(rows) * len(cols) / (h * w) - area) < 0.2 or area < 0.05
            hits[rows[:, None], cols[None, :]] += 1
        share = hits / draws
        expected = share.mean()
        # Uniform placement inside the map would give a 48x48 map's centre 576x a corner's share.
        assert share.max() / max(float(share.min()), 1e-9) < 2.5 or area < 0.05
        assert abs(float(share[0, 0]) - float(expected)) < 0.1 and abs(float(share[h // 2, w // 2]) - float(expected)) < 0.1


def test_fitted_linear_mixer_starts_at_the_teacher_and_the_least_squares_student_map():
    from srdistill.distill.mixers import fit_linear, least_squares

    torch.manual_seed(0)
    s = torch.randn(4, 6, 8, 8)
    true = torch.randn(10, 6)
    t = torch.einsum("oc,nchw->nohw", true, s) + 0.5 + 0.01 * torch.randn(4, 10, 8, 8)
    weight, bias = least_squares(s, t)
    assert torch.allclose(weight, true, atol=0.02) and torch.allclose(bias, torch.full((10,), 0.5), atol=0.02)
    fpm = FeaturePriorMixer(10, 6, 10, kind="linear")
    fit_linear(fpm, t, s)
    mixed, auto = fpm(t, s)
    assert torch.allclose(auto, t, atol=1e-5)  # the auto-encoder path starts exact
    assert (mixed - t).abs().mean() < 0.02  # the student's share is its least-squares account of t
