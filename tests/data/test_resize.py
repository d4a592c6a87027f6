"""MATLAB-compatible bicubic resize: against MATLAB's own output and an independent reference."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from shared_data import benchmark_set

from srdistill.data.resize import imresize, output_length


def reference_resize_rows(plane: np.ndarray, scale: float, antialias: bool = True) -> np.ndarray:
    """MATLAB's imresize along the first axis of a float64 plane, written out plainly."""

    def cubic(x):
        x = abs(x)
        if x <= 1:
            return 1.5 * x**3 - 2.5 * x**2 + 1
        if x <= 2:
            return -0.5 * x**3 + 2.5 * x**2 - 4 * x + 2
        return 0.0

    n_in = plane.shape[0]
    n_out = math.ceil(n_in * scale - 1e-9)
    mirror = list(range(1, n_in + 1)) + list(range(n_in, 0, -1))  # MATLAB's aux, 1-based
    width = 4.0 / scale if (scale < 1 and antialias) else 4.0
    out = np.zeros((n_out, plane.shape[1]))
    for x in range(1, n_out + 1):
        u = x / scale + 0.5 * (1 - 1 / scale)
        left = math.floor(u - width / 2)
        taps = []
        for j in range(math.ceil(width) + 2):
            index = left + j
            if scale < 1 and antialias:
                w = scale * cubic(scale * (u - index))
            else:
                w = cubic(u - index)
            taps.append((mirror[(index - 1) % len(mirror)] - 1, w))
        total = sum(w for _, w in taps)
        for source, w in taps:
            out[x - 1] += (w / total) * plane[source]
    return out


def reference_imresize(plane: np.ndarray, scale: float, antialias: bool = True) -> np.ndarray:
    rows = reference_resize_rows(plane, scale, antialias)
    return reference_resize_rows(rows.T, scale, antialias).T


def load(path: Path) -> np.ndarray:
    arr = np.array(Image.open(path))
    return arr[:, :, None] if arr.ndim == 2 else arr


def to_chw(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))).double()


@pytest.mark.parametrize("scale", [2.0, 3.0, 1.5, 4.0])
def test_upscale_matches_plain_reference(scale):
    rng = np.random.default_rng(0)
    plane = rng.uniform(0, 1, size=(5, 7))
    got = imresize(torch.from_numpy(plane)[None], scale=scale)[0].numpy()
    assert got.shape == (math.ceil(5 * scale), math.ceil(7 * scale))
    np.testing.assert_allclose(got, reference_imresize(plane, scale), atol=1e-12)


@pytest.mark.parametrize("scale", [1 / 2, 1 / 3, 1 / 4, 0.7])
@pytest.mark.parametrize("antialias", [True, False])
def test_downscale_matches_plain_reference(scale, antialias):
    rng = np.random.default_rng(1)
    plane = rng.uniform(0, 1, size=(12, 17))
    got = imresize(torch.from_numpy(plane)[None], scale=scale, antialias=antialias)[0].numpy()
    np.testing.assert_allclose(got, reference_imresize(plane, scale, antialias), atol=1e-12)


def test_long_axis_tap_path_matches_reference():
    # Axes longer than 1024 use gathered taps instead of a dense matrix; both must agree.
    rng = np.random.default_rng(2)
    plane = rng.uniform(0, 1, size=(3, 1100))
    got = imresize(torch.from_numpy(plane)[None], scale=0.5)[0].numpy()
    np.testing.assert_allclose(got, reference_imresize(plane, 0.5), atol=1e-12)
    up = imresize(torch.from_numpy(plane)[None], scale=2.0)[0].numpy()
    np.testing.assert_allclose(up, reference_imresize(plane, 2.0), atol=1e-12)
    # A kernel wider than the image: taps wrap through the mirror more than once.
    tiny = imresize(torch.from_numpy(plane)[None], size=(3, 7))[0].numpy()
    np.testing.assert_allclose(tiny, reference_resize_rows(plane.T, 7 / 1100).T, atol=1e-12)


def test_size_argument_uses_per_axis_scale():
    x = torch.rand(1, 2, 8, 12, dtype=torch.float64)
    got = imresize(x, size=(4, 3))
    assert got.shape == (1, 2, 4, 3)
    # Height scale 1/2, width 1/4: each axis must equal a scale-only resize of that axis.
    rows = reference_resize_rows(x[0, 0].numpy(), 0.5)
    both = reference_resize_rows(rows.T, 0.25).T
    np.testing.assert_allclose(got[0, 0].numpy(), both, atol=1e-12)


def test_batch_equals_per_image():
    x = torch.rand(3, 3, 10, 13)
    batched = imresize(x, scale=1 / 3)
    single = torch.stack([imresize(img, scale=1 / 3) for img in x])
    torch.testing.assert_close(batched, single, rtol=0, atol=1e-6)
    assert imresize(x[0], scale=2.0).shape == (3, 20, 26)


def test_dtypes_float64_bfloat16():
    x = torch.rand(1, 3, 9, 9, dtype=torch.float64)
    out64 = imresize(x, scale=2.0)
    assert out64.dtype == torch.float64
    out_bf16 = imresize(x.to(torch.bfloat16), scale=2.0)
    assert out_bf16.dtype == torch.bfloat16
    # bf16 keeps ~3 significant digits; the float32 arithmetic inside must not lose more.
    torch.testing.assert_close(out_bf16.double(), out64, rtol=0, atol=2e-2)
    assert imresize(x.half(), scale=0.5).dtype == torch.float16


def test_output_length_tolerates_inexact_scales():
    assert output_length(228, 1 / 3) == 76
    assert output_length(10, 0.25) == 3  # ceil(2.5)
    assert output_length(7, 1.5) == 11  # ceil(10.5)


def test_identity_scale_returns_copy():
    x = torch.rand(2, 5, 6)
    y = imresize(x, scale=1.0)
    assert torch.equal(x, y) and y is not x


def test_bad_arguments_rejected():
    x = torch.rand(3, 4, 4)
    with pytest.raises(ValueError):
        imresize(x)
    with pytest.raises(ValueError):
        imresize(x, scale=2.0, size=(8, 8))
    with pytest.raises(ValueError):
        imresize(x, scale=-1.0)
    with pytest.raises(TypeError):
        imresize(torch.zeros(3, 4, 4, dtype=torch.uint8), scale=2.0)


def _benchmark_pairs():
    for name in ("Set5", "Set14"):
        for scale in (2, 3, 4):
            yield name, scale


@pytest.mark.parametrize("dataset,scale", list(_benchmark_pairs()))
def test_downscale_reproduces_matlab_lr_files(dataset, scale):
    folder = benchmark_set(dataset)
    hr_dir = folder / "HR"
    float_diffs, uint8_diffs = [], []
    for hr_path in sorted(hr_dir.glob("*.png")):
        hr = load(hr_path)
        h, w = hr.shape[:2]
        hr = hr[: h - h % scale, : w - w % scale]
        lr_file = folder / "LR_bicubic" / f"X{scale}" / f"{hr_path.stem}x{scale}.png"
        expected = load(lr_file).astype(np.float64)
        x = to_chw(hr.astype(np.float64))
        # Float resize rounded once at the end, as for float images: close to MATLAB.
        once = imresize(x, scale=1 / scale).numpy().transpose(1, 2, 0)
        once = np.clip(np.floor(once + 0.5), 0, 255)
        float_diffs.append(np.abs(once - expected).mean())
        # MATLAB's uint8 path (rounded intermediate): identical.
        exact = imresize(x, scale=1 / scale, matlab_uint8=True).numpy().transpose(1, 2, 0)
        uint8_diffs.append(np.abs(exact - expected).mean())
    assert len(float_diffs) >= 5
    assert np.mean(float_diffs) <= 0.2, float_diffs
    assert max(uint8_diffs) == 0.0, uint8_diffs
