"""Feature maps as methods compare them: common spatial size, common scale.

Block outputs are taken at LR resolution, but a network that pads internally (SwinIR pads to a
multiple of its window) emits larger maps: they are cropped back to the input's size (padding
is at the bottom/right). A body that works at another resolution (RRDBNet x2 unshuffles by 2)
is resized to the other side's size where the two meet.

Scale: EDSR/RCAN features live in the 0..255 range and SwinIR's grow by orders of magnitude
across blocks, so L1 on raw features lets the deepest boundary dominate. ``RunningScale``
divides by a running per-channel standard deviation (no gradient through the statistic).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..precision import float32_region

NORMS = ("channel", "global", "none")


def crop_to_input(feature: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Drop the internal padding of a feature map computed on an ``height x width`` input."""
    h, w = feature.shape[-2:]
    if h > height or w > width:
        if h - height < max(1, height // 2) and w - width < max(1, width // 2):
            return feature[..., : min(h, height), : min(w, width)]
    return feature


def match_size(feature: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """Resize to ``size`` (H, W) when the two sides' maps differ (bilinear; identity otherwise)."""
    if tuple(feature.shape[-2:]) == tuple(size):
        return feature
    return F.interpolate(feature, size=tuple(size), mode="bilinear", align_corners=False)


class RunningScale(nn.Module):
    """Divide a feature map by a running estimate of its spread.

    ``mode`` "channel": per-channel standard deviation; "global": one number for the map;
    "none": identity. The statistic is updated in training mode (momentum ``momentum``; the
    first batch initialises it) and is a buffer, so it is checkpointed and synchronised by DDP.
    """

    def __init__(self, channels: int, mode: str = "channel", momentum: float = 0.99, eps: float = 1e-4):
        super().__init__()
        if mode not in NORMS:
            raise ValueError(f"norm mode {mode!r} not in {NORMS}")
        self.mode, self.momentum, self.eps = mode, momentum, eps
        self.register_buffer("std", torch.ones(channels if mode == "channel" else 1))
        self.register_buffer("seen", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    @float32_region()  # called inside the step's autocast: the statistic stays float32
    def _update(self, x: torch.Tensor) -> None:
        x = x.detach().float()
        std = x.std(dim=(0, 2, 3)) if self.mode == "channel" else x.std().reshape(1)
        if int(self.seen) == 0:
            self.std.copy_(std)
        else:
            self.std.mul_(self.momentum).add_(std, alpha=1 - self.momentum)
        self.seen += 1

    def scale(self) -> torch.Tensor:
        # Near-dead channels (constant ReLU outputs) would be amplified into noise: floor each
        # channel's spread at 1% of the mean spread.
        return self.std.clamp_min(0.01 * float(self.std.mean()) + self.eps).view(1, -1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "none":
            return x
        if self.training:
            self._update(x)
        return x / self.scale().to(x.dtype)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """Scale without updating the statistic (for features that are not the model's own)."""
        return x if self.mode == "none" else x / self.scale().to(x.dtype)

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "none":
            return x
        return x * self.scale().to(x.dtype)
