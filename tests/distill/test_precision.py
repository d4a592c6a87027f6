"""Numerically sensitive work is float32 whatever the step's autocast, and frozen networks run
only in dtypes their spec declares safe.

CPU autocast stands in for CUDA autocast: both lower matmuls and convolutions. Each test runs a
sensitive place inside ``torch.autocast("cpu", ...)`` and asks for the result it gives without
autocast, exactly. Before the guards, MiPKD's fitted start solved from a bf16 Gram matrix (on
CUDA there is no bf16 solve: the default method failed at step 0) and the Block Prior Mixer's
routed pass ran a SwinIR teacher in fp16.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from distill_helpers import batch, frozen_teacher, objective, small

from srdistill.distill.features import RunningScale
from srdistill.distill.mixers import FeaturePriorMixer, fit_linear, least_squares
from srdistill.distill.teacher import run_teacher
from srdistill.metrics import psnr_y, ssim_y
from srdistill.precision import float32_region, teacher_dtype_guard
from srdistill.train.ema import ModelEMA

LOW = (torch.bfloat16, torch.float16)


def lowered(dtype):
    return torch.autocast("cpu", dtype=dtype)


def features(seed: int, channels: int = 12, size: int = 9) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # Large, offset values as real EDSR features have: a low-precision Gram matrix shows it.
    return torch.randn(2, channels, size, size, generator=g) * 40 + 100


def test_float32_region_turns_autocast_off_and_back_on():
    with lowered(torch.bfloat16):
        a = torch.randn(4, 4)
        assert (a @ a).dtype == torch.bfloat16
        with float32_region():
            assert not torch.is_autocast_enabled("cpu")
            assert (a @ a).dtype == torch.float32
        assert torch.is_autocast_enabled("cpu") and (a @ a).dtype == torch.bfloat16


@pytest.mark.parametrize("dtype", LOW)
def test_least_squares_is_float32_exact_under_autocast(dtype):
    x, y = features(0), features(1, channels=8)
    want_w, want_b = least_squares(x, y)
    with lowered(dtype):
        got_w, got_b = least_squares(x, y)
    assert got_w.dtype == got_b.dtype == torch.float32
    assert torch.equal(got_w, want_w) and torch.equal(got_b, want_b)


@pytest.mark.parametrize("dtype", LOW)
def test_fitted_mixer_start_is_float32_exact_under_autocast(dtype):
    t, s = features(2), features(3, channels=8)

    def fitted():
        torch.manual_seed(0)
        mixer = FeaturePriorMixer(12, 8, 12, "linear")
        fit_linear(mixer, t, s)
        return mixer.encode_student.weight.clone()

    want = fitted()
    with lowered(dtype):
        got = fitted()
    assert torch.equal(got, want)


@pytest.mark.parametrize("dtype", LOW)
def test_mipkd_fit_inside_the_step_autocast_equals_the_float32_fit(dtype):
    # The engine calls _fit from inside the step's autocast with the features the step captured.
    t_feats = [features(4, channels=16), features(5, channels=16)]
    s_feats = [features(6, channels=8), features(7, channels=8)]

    def fit():
        teacher, student = frozen_teacher("edsr", n_resblocks=4), small("edsr", n_feats=8)
        obj = objective("mipkd-lite", teacher, student)  # the fitted (linear) mixers
        obj._fit(s_feats, t_feats)
        return [m.encode_student.weight.clone() for m in obj.mixers] + [a.conv.weight.clone() for a in obj.adapters]

    want = fit()
    with lowered(dtype):
        got = fit()
    assert all(torch.equal(a, b) for a, b in zip(got, want))


@pytest.mark.parametrize("mode", ["channel", "global"])
def test_running_feature_statistics_are_float32_under_autocast(mode):
    x = features(8)
    want = RunningScale(12, mode)
    want(x)
    got = RunningScale(12, mode)
    with lowered(torch.bfloat16):
        got(x.bfloat16())  # a feature map the step produced in bf16
    assert got.std.dtype == torch.float32
    # The statistic of the bf16 map, computed in float32 (bf16 rounding of the input only).
    assert torch.allclose(got.std, want.std, rtol=1e-2)
    ref = RunningScale(12, mode)
    ref(x.bfloat16().float())
    assert torch.equal(got.std, ref.std)


def test_ema_update_is_float32_exact_under_autocast():
    student = small("edsr", n_feats=8)

    def averaged():
        ema = ModelEMA(student.net, decay=0.9)
        for k in range(3):
            with torch.no_grad():
                for p in student.net.parameters():
                    p.mul_(1.01).add_(0.001 * k)
            ema.update(student.net)
        return [p.clone() for p in ema.net.parameters()]

    state = {k: v.clone() for k, v in student.net.state_dict().items()}
    want = averaged()
    student.net.load_state_dict(state)
    with lowered(torch.bfloat16):
        got = averaged()
    assert all(g.dtype == torch.float32 and torch.equal(g, w) for g, w in zip(got, want))


def test_metrics_of_a_bf16_output_under_autocast_equal_those_of_its_float32_copy():
    g = torch.Generator().manual_seed(0)
    hr = torch.rand(3, 32, 32, generator=g)
    sr = (hr + 0.05 * torch.randn(3, 32, 32, generator=g)).clamp(0, 1).bfloat16()
    want = psnr_y(sr.float(), hr, 4), ssim_y(sr.float(), hr, 4)
    with lowered(torch.bfloat16):
        got = psnr_y(sr, hr, 4), ssim_y(sr, hr, 4)
    assert got == want and np.isfinite(got).all()


def dtypes_seen(model, blocks):
    """Record the dtype of each listed block's output while the context is open."""
    seen: list[torch.dtype] = []
    handles = [model.net.get_submodule(b).register_forward_hook(lambda m, a, out: seen.append(out.dtype)) for b in blocks]
    return seen, handles


def test_plain_teacher_forward_in_fp16_runs_an_fp16_unsafe_teacher_in_float32():
    teacher = frozen_teacher("swinir")
    assert torch.float16 not in teacher.spec.safe_dtypes
    seen, handles = dtypes_seen(teacher, teacher.blocks)
    with lowered(torch.float16):
        got = run_teacher(teacher, torch.rand(1, 3, 16, 16), teacher.blocks)
    for h in handles:
        h.remove()
    assert got.output.dtype == torch.float32 and set(seen) == {torch.float32}


def test_block_prior_mixer_routed_teacher_pass_runs_in_a_safe_dtype():
    # Every step routes (bpm_every=1), always through the teacher after the boundary.
    teacher, student = frozen_teacher("swinir"), small("edsr", n_feats=8)
    obj = objective("mipkd-lite", teacher, student, bpm_every=1, route="teacher", bpm_boundaries="all")
    student.net.train()
    seen, handles = dtypes_seen(teacher, teacher.blocks)
    with lowered(torch.float16):
        terms = obj.losses(batch(), student.net)
    for h in handles:
        h.remove()
    assert "bpm" in terms and terms["bpm"].requires_grad and torch.isfinite(terms["bpm"])
    assert seen and set(seen) == {torch.float32}, seen
    # The routed pass still trains the mixers through the frozen (float32) teacher blocks.
    terms["bpm"].backward()
    assert obj.mixers[0].encode_student.weight.grad is not None


def test_a_network_safe_in_the_autocast_dtype_keeps_it():
    edsr = small("edsr")
    with lowered(torch.float16):
        with teacher_dtype_guard("cpu", edsr.spec.safe_dtypes) as in_float32:
            assert not in_float32 and torch.is_autocast_enabled("cpu")
        with teacher_dtype_guard("cpu", (torch.float32,)) as in_float32:
            assert in_float32 and not torch.is_autocast_enabled("cpu")


def test_float32_region_turns_tf32_matmuls_off_and_restores_the_setting():
    # What a CUDA run sets (train.machine.configure_backends); a flag on CPU, the same code path.
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")
    try:
        with float32_region():
            assert torch.get_float32_matmul_precision() == "highest"
        assert torch.get_float32_matmul_precision() == "high"
    finally:
        torch.set_float32_matmul_precision(before)


@pytest.mark.parametrize("dtype", LOW)
def test_cached_teacher_signals_are_read_inside_the_step_autocast(dtype):
    # The cache stores outputs in float16 and features in bfloat16; stacking them under bf16
    # autocast raised "Unexpected floating ScalarType" (CUDA's default precision, every method).
    from contextlib import nullcontext

    from test_teacher_cache import PATCH as CACHE_PATCH
    from test_teacher_cache import batch_of, image_set

    from srdistill.data.dataset import PatchDataset
    from srdistill.train.objective import TrainingData

    dataset = PatchDataset(image_set(), patch_size=CACHE_PATCH, seed=5)
    obj = objective("fitnet", frozen_teacher("edsr"), small("edsr", n_feats=8))
    obj.teacher_cache_mode = "memory"
    obj.prepare(TrainingData(dataset, torch.device("cpu"), nullcontext))
    want = obj.teacher_signal(batch_of(dataset, 8, 3))
    with lowered(dtype):
        got = obj.teacher_signal(batch_of(dataset, 8, 3))
    assert got.output.dtype == torch.float32 and torch.equal(got.output, want.output)
    assert all(torch.equal(g, w) for g, w in zip(got.features, want.features))
