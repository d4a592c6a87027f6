"""PSNR and SSIM exactly as super-resolution papers report them.

The convention (SRCNN, VDSR, EDSR, RCAN, SwinIR tables): both images are 8-bit; luminance is
BT.601 ``Y`` from MATLAB's ``rgb2ycbcr`` (range 16..235, kept as unrounded float64); ``crop``
pixels are removed on every side (usually ``crop = scale``); PSNR uses peak 255; SSIM is Wang et
al.'s ``ssim_index.m``: 11x11 Gaussian window (sigma 1.5), ``C1 = (0.01*255)^2``,
``C2 = (0.03*255)^2``, 'valid' filtering, the mean of the SSIM map, and no downsampling.

Inputs are ``uint8`` arrays (``H x W x 3``, ``H x W x 1`` or ``H x W``), ``uint16`` arrays
(reduced to 8 bit), or float tensors/arrays in [0, 1] (``C x H x W`` or ``1 x C x H x W`` tensors,
``H x W x C`` arrays), which are first rounded to 8 bit as MATLAB does: ``round(clamp(x,0,1)*255)``.

Grayscale: the benchmark scripts call ``rgb2ycbcr`` only on 3-channel images, so a grayscale image
(Set14's ``bridge``) is measured on its own 0..255 values. This matters: replicating it to RGB
first (``Y = 16 + 219*gray/255``) lowers its errors by 219/255 and raises Set14's average PSNR
by ~0.09 dB above the published bicubic baselines, which are reproduced only with the gray values
used directly. When exactly one image of a pair is grayscale (an RGB model output for a gray
reference), the RGB one is measured as ``(Y - 16) * 255/219``, which equals its gray value when
R = G = B, so a model and the bicubic baseline are scored on the same scale.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["psnr_y", "rgb_to_y", "shave_to_scale", "ssim_y", "to_uint8_hwc"]

_Y_WEIGHTS = np.array([65.481, 128.553, 24.966], dtype=np.float64)


def to_uint8_hwc(img: np.ndarray | torch.Tensor) -> np.ndarray:
    """Any accepted image form as a ``uint8`` ``H x W x C`` array (C is 1 or 3)."""
    if torch.is_tensor(img):
        t = img.detach().to("cpu")
        if t.dim() == 4:
            if t.shape[0] != 1:
                raise ValueError(f"metrics take one image at a time, got a batch of shape {tuple(t.shape)}")
            t = t[0]
        if t.dim() == 2:
            t = t[None]
        if t.dim() != 3:
            raise ValueError(f"expected a C x H x W tensor, got shape {tuple(t.shape)}")
        if not t.is_floating_point():
            raise ValueError(f"image tensors must be float in [0, 1], got dtype {t.dtype}")
        arr = t.double().permute(1, 2, 0).numpy()
    else:
        arr = np.asarray(img)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        if arr.ndim != 3:
            raise ValueError(f"expected an H x W x C array, got shape {arr.shape}")
        if arr.dtype == np.uint8:
            pass
        elif arr.dtype == np.uint16:
            arr = arr.astype(np.float64) / 65535.0
        elif np.issubdtype(arr.dtype, np.floating):
            arr = arr.astype(np.float64)
        else:
            raise ValueError(f"unsupported image dtype {arr.dtype}; use uint8, uint16 or float in [0, 1]")
    if arr.dtype != np.uint8:
        # MATLAB's im2uint8: round half away from zero, which for values >= 0 is floor(x + 0.5).
        arr = np.floor(np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if arr.shape[2] not in (1, 3):
        raise ValueError(f"expected 1 or 3 channels, got {arr.shape[2]} (drop alpha before measuring)")
    return arr


def rgb_to_y(img: np.ndarray | torch.Tensor) -> np.ndarray:
    """BT.601 luma as MATLAB ``rgb2ycbcr``, unrounded float64 ``H x W`` on the 0..255 scale (16..235).

    Accepts the same inputs as :func:`psnr_y`; the image is rounded to 8 bit first. A 1-channel
    image is treated as RGB with R = G = B (``16 + 219 * gray / 255``); the metrics do not use that
    path for grayscale (see the module notes).
    """
    return _y_of_uint8(to_uint8_hwc(img))


def _y_of_uint8(arr: np.ndarray) -> np.ndarray:
    rgb = arr.astype(np.float64) / 255.0
    if rgb.shape[2] == 1:
        rgb = np.repeat(rgb, 3, axis=2)
    return 16.0 + rgb @ _Y_WEIGHTS


def _luma_pair(sr, hr) -> tuple[np.ndarray, np.ndarray]:
    """The two images' luminance on the scale the benchmark scripts use (module notes)."""
    a, b = to_uint8_hwc(sr), to_uint8_hwc(hr)
    if a.shape[2] == 3 and b.shape[2] == 3:
        return _y_of_uint8(a), _y_of_uint8(b)

    def gray_scale(arr: np.ndarray) -> np.ndarray:
        if arr.shape[2] == 1:
            return arr[:, :, 0].astype(np.float64)
        return (_y_of_uint8(arr) - 16.0) * (255.0 / 219.0)

    return gray_scale(a), gray_scale(b)


def shave_to_scale(hr, scale: int):
    """Crop ``hr`` to height and width multiples of ``scale``, keeping the top-left (MATLAB ``modcrop``).

    Arrays are ``H x W [x C]``; tensors are ``[... x] H x W``.
    """
    if scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    if torch.is_tensor(hr):
        h, w = hr.shape[-2], hr.shape[-1]
        return hr[..., : h - h % scale, : w - w % scale]
    h, w = hr.shape[0], hr.shape[1]
    return hr[: h - h % scale, : w - w % scale]


def _cropped_pair(sr, hr, crop: int) -> tuple[np.ndarray, np.ndarray]:
    y_sr, y_hr = _luma_pair(sr, hr)
    if y_sr.shape != y_hr.shape:
        raise ValueError(f"image sizes differ: SR {y_sr.shape[1]}x{y_sr.shape[0]} vs "
                         f"HR {y_hr.shape[1]}x{y_hr.shape[0]} (crop HR with shave_to_scale first)")
    if crop < 0:
        raise ValueError(f"crop must be >= 0, got {crop}")
    if crop:
        y_sr, y_hr = y_sr[crop:-crop, crop:-crop], y_hr[crop:-crop, crop:-crop]
    if y_sr.size == 0:
        raise ValueError(f"a {crop}-pixel border crop leaves nothing of a {y_hr.shape} image")
    return y_sr, y_hr


def psnr_y(sr, hr, crop: int) -> float:
    """PSNR (dB, peak 255) between the Y channels after an 8-bit round and a ``crop`` border.

    Identical images give ``float('inf')``.
    """
    y_sr, y_hr = _cropped_pair(sr, hr, crop)
    mse = float(np.mean((y_sr - y_hr) ** 2))
    if mse == 0.0:
        return float("inf")
    return 10.0 * math.log10(255.0**2 / mse)


def _gaussian_1d(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    # fspecial('gaussian', 11, 1.5) is the outer product of this normalised 1-D window.
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum()


def _filter_valid(img: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation with ``outer(g, g)`` (the window is symmetric, so = filter2)."""
    n = g.size
    h, w = img.shape
    rows = sum(g[k] * img[k : h - n + 1 + k, :] for k in range(n))
    return sum(g[k] * rows[:, k : w - n + 1 + k] for k in range(n))


def _ssim_index(a: np.ndarray, b: np.ndarray) -> float:
    if min(a.shape) < 11:
        raise ValueError(f"SSIM needs at least 11x11 pixels after cropping, got {a.shape[1]}x{a.shape[0]}")
    c1 = (0.01 * 255.0) ** 2
    c2 = (0.03 * 255.0) ** 2
    g = _gaussian_1d()
    mu_a, mu_b = _filter_valid(a, g), _filter_valid(b, g)
    mu_aa, mu_bb, mu_ab = mu_a * mu_a, mu_b * mu_b, mu_a * mu_b
    var_a = _filter_valid(a * a, g) - mu_aa
    var_b = _filter_valid(b * b, g) - mu_bb
    cov = _filter_valid(a * b, g) - mu_ab
    ssim_map = ((2 * mu_ab + c1) * (2 * cov + c2)) / ((mu_aa + mu_bb + c1) * (var_a + var_b + c2))
    return float(ssim_map.mean())


def ssim_y(sr, hr, crop: int) -> float:
    """SSIM of the Y channels (Wang et al. ``ssim_index``) after an 8-bit round and a ``crop`` border."""
    y_sr, y_hr = _cropped_pair(sr, hr, crop)
    return _ssim_index(y_sr, y_hr)
