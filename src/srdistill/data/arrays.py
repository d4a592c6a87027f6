"""Image arrays as the benchmark protocol handles them: ``H x W x C`` uint8 on disk and in the
metrics, ``C x H x W`` float32 in 0..255 around the network.

Outputs are rounded with ``torch.round`` (half to even), which is what the evaluation numbers
were measured with; ``imageio.from_tensor`` rounds half up for writing files, so the two are not
interchangeable without changing reported scores.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .imageio import read_image, to_8bit


def read_uint8(path: Path) -> np.ndarray:
    """H x W x C uint8 (C = 1 or 3; alpha ignored), 16-bit reduced as MATLAB ``im2uint8`` does."""
    return np.ascontiguousarray(to_8bit(read_image(path).pixels))


def hwc_to_chw_float(arr: np.ndarray) -> torch.Tensor:
    """H x W x C uint8 -> C x H x W float32, values kept in 0..255."""
    return torch.from_numpy(arr.transpose(2, 0, 1).astype(np.float32))


def chw_to_hwc_uint8(x: torch.Tensor) -> np.ndarray:
    """C x H x W float in 0..255 -> H x W x C uint8, rounded half to even and clipped."""
    return x.round().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
