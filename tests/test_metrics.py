"""PSNR/SSIM on Y: unit cases and the published bicubic baselines on Set5 / Set14."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from shared_data import benchmark_set

from srdistill.data.resize import imresize
from srdistill.metrics import psnr_y, rgb_to_y, shave_to_scale, ssim_y, to_uint8_hwc

# Published bicubic baselines (PSNR dB / SSIM on Y, crop = scale), e.g. the EDSR/RCAN tables.
PUBLISHED = {
    ("Set5", 2): (33.66, 0.9299),
    ("Set5", 3): (30.39, 0.8682),
    ("Set5", 4): (28.42, 0.8104),
    ("Set14", 2): (30.24, 0.8688),
    ("Set14", 3): (27.55, 0.7742),
    ("Set14", 4): (26.00, 0.7027),
}


def test_rgb_to_y_matches_matlab_formula():
    img = np.array([[[255, 255, 255], [0, 0, 0], [255, 0, 0], [10, 200, 30]]], dtype=np.uint8)
    y = rgb_to_y(img)
    expected = [235.0, 16.0, 16 + 65.481, 16 + (65.481 * 10 + 128.553 * 200 + 24.966 * 30) / 255]
    np.testing.assert_allclose(y[0], expected, atol=1e-9)
    # A float tensor in [0, 1] is rounded to 8 bit first, as MATLAB's im2uint8 does.
    t = torch.tensor([[[0.5 / 255]], [[1.49 / 255]], [[2.5 / 255]]])
    np.testing.assert_array_equal(to_uint8_hwc(t)[0, 0], [1, 1, 3])


def test_identical_images():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(20, 24, 3), dtype=np.uint8)
    assert psnr_y(img, img.copy(), crop=2) == float("inf")
    assert ssim_y(img, img.copy(), crop=2) == pytest.approx(1.0, abs=1e-12)


def test_known_mse():
    # A constant gray offset of d gray levels changes Y by 219/255 * d everywhere.
    hr = np.full((16, 16, 3), 100, dtype=np.uint8)
    sr = hr + np.uint8(10)
    dy = 10 * 219 / 255
    assert psnr_y(sr, hr, crop=0) == pytest.approx(10 * math.log10(255**2 / dy**2), abs=1e-9)
    # Only the centre differs: cropping it away leaves identical borders... and vice versa.
    sr2 = hr.copy()
    sr2[:2] = 0
    assert psnr_y(sr2, hr, crop=2) == float("inf")
    assert psnr_y(sr2, hr, crop=1) < 100


def test_tensor_and_array_inputs_agree():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, size=(30, 31, 3), dtype=np.uint8)
    b = rng.integers(0, 256, size=(30, 31, 3), dtype=np.uint8)
    ta = torch.from_numpy(a).permute(2, 0, 1).float() / 255
    tb = torch.from_numpy(b).permute(2, 0, 1).float()[None] / 255
    assert psnr_y(ta, tb, crop=3) == pytest.approx(psnr_y(a, b, crop=3), abs=1e-12)
    assert ssim_y(ta, tb, crop=3) == pytest.approx(ssim_y(a, b, crop=3), abs=1e-12)


def test_ssim_matches_direct_2d_window():
    # The separable filter must equal filter2(fspecial('gaussian', 11, 1.5), x, 'valid').
    rng = np.random.default_rng(4)
    a = rng.integers(0, 256, size=(14, 15, 1), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-20, 21, size=a.shape), 0, 255).astype(np.uint8)
    x, y = a[:, :, 0].astype(float), b[:, :, 0].astype(float)
    g = np.exp(-((np.arange(11) - 5.0) ** 2)[:, None] / 4.5 - ((np.arange(11) - 5.0) ** 2)[None, :] / 4.5)
    g /= g.sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    for i in range(x.shape[0] - 10):
        for j in range(x.shape[1] - 10):
            px, py = x[i : i + 11, j : j + 11], y[i : i + 11, j : j + 11]
            mx, my = (g * px).sum(), (g * py).sum()
            vx, vy = (g * px * px).sum() - mx * mx, (g * py * py).sum() - my * my
            cxy = (g * px * py).sum() - mx * my
            values.append(((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2)))
    assert ssim_y(b, a, crop=0) == pytest.approx(float(np.mean(values)), abs=1e-12)


def test_grayscale_pairs():
    rng = np.random.default_rng(5)
    gray_hr = rng.integers(0, 256, size=(20, 20), dtype=np.uint8)
    gray_sr = rng.integers(0, 256, size=(20, 20), dtype=np.uint8)
    direct = 10 * math.log10(255**2 / np.mean((gray_sr.astype(float) - gray_hr) ** 2))
    assert psnr_y(gray_sr, gray_hr, crop=0) == pytest.approx(direct, abs=1e-9)
    # An RGB output with R = G = B scores exactly like its gray version against a gray reference.
    rgb_sr = np.repeat(gray_sr[:, :, None], 3, axis=2)
    assert psnr_y(rgb_sr, gray_hr, crop=0) == pytest.approx(direct, abs=1e-9)
    assert ssim_y(rgb_sr, gray_hr, crop=0) == pytest.approx(ssim_y(gray_sr, gray_hr, crop=0), abs=1e-12)


def test_shave_to_scale():
    assert shave_to_scale(np.zeros((10, 13, 3)), 4).shape == (8, 12, 3)
    assert shave_to_scale(torch.zeros(2, 3, 10, 13), 3).shape == (2, 3, 9, 12)


def test_mismatched_sizes_rejected():
    with pytest.raises(ValueError, match="shave_to_scale"):
        psnr_y(np.zeros((10, 10, 3), np.uint8), np.zeros((12, 10, 3), np.uint8), crop=0)


@pytest.mark.parametrize("dataset,scale", sorted(PUBLISHED))
def test_bicubic_baseline_matches_published(dataset, scale):
    folder = benchmark_set(dataset)
    hr_dir = folder / "HR"
    scores = []
    for hr_path in sorted(hr_dir.glob("*.png")):
        hr = shave_to_scale(np.array(Image.open(hr_path)), scale)
        lr = np.array(Image.open(folder / "LR_bicubic" / f"X{scale}" / f"{hr_path.stem}x{scale}.png"))
        if lr.ndim == 2:
            lr = lr[:, :, None]
        lr_t = torch.from_numpy(lr.transpose(2, 0, 1).copy()).double()
        # MATLAB's imresize on a uint8 LR image, as the baselines were made.
        sr = imresize(lr_t, scale=scale, matlab_uint8=True).numpy().transpose(1, 2, 0).astype(np.uint8)
        scores.append((psnr_y(sr, hr, crop=scale), ssim_y(sr, hr, crop=scale)))
    psnr, ssim = np.mean(scores, axis=0)
    want_psnr, want_ssim = PUBLISHED[(dataset, scale)]
    assert abs(psnr - want_psnr) <= 0.03, (psnr, want_psnr)
    assert abs(ssim - want_ssim) <= 0.002, (ssim, want_ssim)
