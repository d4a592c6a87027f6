"""Images of any channel layout through a network that only knows RGB.

Grayscale is replicated to RGB and the output averaged back to one channel; alpha (RGBA, LA) goes
through the network as a second batch item (alpha replicated to three channels, the mean taken
back) so edges stay as sharp as the colour. Straight (un-premultiplied) alpha hides arbitrary
colours under transparent pixels -- usually black -- which the network would smear into the
visible edge as a dark fringe; so before upscaling, transparent pixels get the colour of their
nearest visible neighbours ("bleeding", an alpha-weighted pyramid fill). Fully opaque alpha is not
run through the network (it stays exactly 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import UsageError


def bleed_transparent(color: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Give fully transparent pixels the colour of the nearest visible ones (C x H x W, 1 x H x W).

    An alpha-weighted image pyramid: each level averages 2x2 blocks of colour*alpha and alpha;
    going back up, a pixel without any visible colour takes its parent's. Visible pixels
    (alpha > 0) keep their own colour exactly.
    """
    visible = alpha > 0
    if bool(visible.all()) or not bool(visible.any()):
        return color
    levels = [(color * alpha, alpha)]
    while min(levels[-1][1].shape[-2:]) > 1:
        c, a = levels[-1]
        levels.append((F.avg_pool2d(c[None], 2, ceil_mode=True)[0], F.avg_pool2d(a[None], 2, ceil_mode=True)[0]))
    filled = None
    for c, a in reversed(levels):
        own = c / a.clamp_min(1e-12)
        if filled is None:
            filled = own
        else:
            up = F.interpolate(filled[None], size=c.shape[-2:], mode="nearest")[0]
            filled = torch.where(a > 0, own, up)
    return torch.where(visible, color, filled)


@dataclass(frozen=True)
class Channels:
    """How an image was split into network planes, so that the output can be put back together."""

    color: int  # 1 or 3
    alpha: bool  # alpha present
    alpha_opaque: bool  # alpha present and exactly 1 everywhere: not run through the network


def split_channels(img: torch.Tensor) -> tuple[torch.Tensor, Channels]:
    """C x H x W -> network planes B x 3 x H x W and how to put the output back together."""
    c = img.shape[0]
    if c not in (1, 2, 3, 4):
        raise UsageError(f"images must have 1 (gray), 2 (gray+alpha), 3 (RGB) or 4 (RGBA) channels, got {c}")
    color_n = 3 if c >= 3 else 1
    color = img[:color_n]
    if c in (1, 3):
        return color.expand(3, -1, -1)[None], Channels(color_n, False, False)
    alpha = img[color_n:]
    if bool((alpha == 1).all()):
        return color.expand(3, -1, -1)[None], Channels(color_n, True, True)
    color = bleed_transparent(color, alpha)
    return torch.stack([color.expand(3, -1, -1), alpha.expand(3, -1, -1)]), Channels(color_n, True, False)


def merge_channels(out: torch.Tensor, kind: Channels) -> torch.Tensor:
    """B x 3 x h x w network output -> C x h x w image in [0, 1]."""
    color = out[0] if kind.color == 3 else out[0].mean(0, keepdim=True)
    parts = [color]
    if kind.alpha:
        parts.append(torch.ones_like(color[:1]) if kind.alpha_opaque else out[1].mean(0, keepdim=True))
    return torch.cat(parts).clamp_(0, 1)


__all__ = ["Channels", "bleed_transparent", "merge_channels", "split_channels"]
