"""Validation inside training: PSNR / SSIM on Y with crop = scale, computed as ``eval`` does
(MATLAB-bicubic LR from uint8 HR cropped to the scale, output rounded to 8 bit, grayscale images
measured on their gray values)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.dataset import ValImage
from ..metrics import psnr_y, ssim_y
from ..tiling import pad_to_multiple


@torch.no_grad()
def evaluate_images(
    net: nn.Module,
    images: Sequence[ValImage],
    *,
    scale: int,
    device: torch.device,
    size_multiple: int = 1,
    min_size: int = 1,
    channels_last: bool = False,
    keep: int = 0,
) -> dict[str, Any]:
    """Mean PSNR-Y and SSIM-Y of ``net`` (float32, eval mode) over the images; with ``keep``, also
    ``samples``: (name, output, HR) of the first ``keep`` images, uint8 HxWx3 arrays."""
    was_training = net.training
    net.eval()
    psnrs, ssims, samples = [], [], []
    try:
        for image in images:
            lr = torch.from_numpy(image.lr).permute(2, 0, 1).to(device).float().div_(255).unsqueeze(0)
            h, w = lr.shape[-2:]
            padded = pad_to_multiple(lr, size_multiple, min_size)
            if channels_last:
                padded = padded.contiguous(memory_format=torch.channels_last)
            out = net(padded)[0, :, : h * scale, : w * scale].float().cpu()
            sr = (out * 255.0).round().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
            hr = image.hr[:, :, :1] if image.gray else image.hr
            if len(samples) < keep:
                samples.append((image.name, sr, image.hr))
            psnrs.append(psnr_y(sr, hr, crop=scale))
            ssims.append(ssim_y(sr, hr, crop=scale))
    finally:
        net.train(was_training)
    result: dict[str, Any] = {"psnr_y": float(np.mean(psnrs)), "ssim_y": float(np.mean(ssims)), "images": len(psnrs)}
    if keep:
        result["samples"] = samples
    return result
