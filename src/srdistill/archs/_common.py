"""Parts shared by the EDSR family (EDSR, RCAN): the EDSR-PyTorch ``common.py`` building blocks.

Both official releases wrap a conv trunk between two 1x1 "MeanShift" convolutions and work on
0..255 images (``rgb_range=255``). The module names here (``sub_mean``, ``head``, ``body``,
``tail``, ``add_mean``; upsampler convs at even indices) are the official ones, so the built
networks load released checkpoints key for key.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ShapeMismatchError, UsageError
from .spec import StateDict, count_indexed, shape_of

RGB_RANGE = 255.0
# DIV2K mean used by every EDSR-PyTorch / RCAN / BasicSR release.
DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)
UPSAMPLER_SCALES = (2, 3, 4, 8)


def default_conv(in_channels: int, out_channels: int, kernel_size: int = 3, bias: bool = True) -> nn.Conv2d:
    """A same-padding convolution (EDSR-PyTorch ``common.default_conv``)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)


class MeanShift(nn.Conv2d):
    """Adds (``sign=+1``) or subtracts (``sign=-1``) the dataset mean as a frozen 1x1 conv.

    The weight and bias are parameters in the official checkpoints, so they are here too. Some
    releases trained them by accident (RCAN's ``self.requires_grad = False`` is a no-op), which is
    why loading keeps the stored values instead of recomputing them; they are frozen for
    distillation because the student must not drift from the teacher's colour normalisation.
    """

    def __init__(self, sign: int, rgb_range: float = RGB_RANGE, rgb_mean: tuple[float, ...] = DIV2K_RGB_MEAN):
        super().__init__(3, 3, kernel_size=1)
        # The constants are computed on the CPU whatever the default device: on the meta device
        # (parameter counting) torch.eye and mul would load torch's Python meta kernels (~1 s).
        with torch.no_grad():
            self.weight.copy_(torch.eye(3, device="cpu").view(3, 3, 1, 1))
            self.bias.copy_(sign * rgb_range * torch.tensor(rgb_mean, device="cpu"))
        for param in self.parameters():
            param.requires_grad = False


class Upsampler(nn.Sequential):
    """conv(n, r*r*n) + PixelShuffle(r), repeated; convs sit at the even indices 0, 2, ...

    EDSR-PyTorch's ``Upsampler`` (act=False, bn=False) and BasicSR's ``Upsample`` share this
    layout, so both EDSR layouts use it.
    """

    def __init__(self, scale: int, n_feats: int):
        if scale == 3:
            stages = [3]
        elif scale in UPSAMPLER_SCALES:
            stages = [2] * int(math.log2(scale))
        else:
            raise UsageError(f"pixel-shuffle upsampler supports scales {list(UPSAMPLER_SCALES)}, not x{scale}")
        layers: list[nn.Module] = []
        for factor in stages:
            layers += [default_conv(n_feats, factor * factor * n_feats, 3), nn.PixelShuffle(factor)]
        super().__init__(*layers)


class MeanShiftedTrunk(nn.Module):
    """``add_mean(tail(body(head(sub_mean(255 x))) + head(...))) / 255`` — the EDSR/RCAN forward.

    Subclasses only supply ``head``, ``body`` and ``tail``. Registration order (sub_mean, add_mean,
    head, body, tail) reproduces the official state-dict key order. Additions are out of place so
    that features captured by hooks are never modified afterwards.
    """

    def __init__(self, head: nn.Module, body: nn.Module, tail: nn.Module, *, bicubic_skip: int = 0):
        super().__init__()
        self.sub_mean = MeanShift(sign=-1)
        self.add_mean = MeanShift(sign=+1)
        self.head = head
        self.body = body
        self.tail = tail
        # srdistill option (not in official releases, adds no weights): the network predicts the
        # residual over a bicubic upsampling of its input. Small nets learn much faster with it.
        self.bicubic_skip = bicubic_skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.head(self.sub_mean(x * RGB_RANGE))
        res = self.body(feat) + feat
        if self.bicubic_skip:
            # The bicubic image carries the mean, so add_mean is not applied on this path.
            base = F.interpolate(x, scale_factor=self.bicubic_skip, mode="bicubic", align_corners=False)
            return self.tail(res) / RGB_RANGE + base
        return self.add_mean(self.tail(res)) / RGB_RANGE


# -- detection helpers -------------------------------------------------------------------------


def upsampler_scale(state: StateDict, prefix: str, n_feats: int) -> int:
    """The scale of an :class:`Upsampler` stored under ``prefix`` (convs at ``prefix.0``, ``.2``, ...)."""
    out_channels = []
    index = 0
    while (shape := shape_of(state, f"{prefix}.{index}.weight")) is not None:
        out_channels.append(shape[0])
        index += 2
    if out_channels == [9 * n_feats]:
        return 3
    if out_channels and all(c == 4 * n_feats for c in out_channels):
        return 2 ** len(out_channels)
    raise ShapeMismatchError(
        f"cannot read the scale from upsampler '{prefix}': conv output channels {out_channels} are not "
        f"[9*{n_feats}] (x3) or k times [4*{n_feats}] (x2^k); the file is not a complete checkpoint "
        "of this architecture"
    )


def expect_shape(state: StateDict, key: str, expected: tuple[int, ...], arch: str) -> None:
    found = shape_of(state, key)
    if found != expected:
        raise ShapeMismatchError(
            f"{arch} checkpoint key '{key}' has shape {list(found) if found else 'missing'}, expected "
            f"{list(expected)}; the file is truncated or mixes architectures (re-export it from the original model)"
        )


def detect_trunk(state: StateDict, arch: str) -> tuple[int, int, int]:
    """``(n_feats, n_body_blocks, scale)`` of a :class:`MeanShiftedTrunk` state dict.

    ``n_body_blocks`` excludes the final body conv ``body.{n}``. Call only after cheap key checks
    said the state dict belongs to ``arch``; inconsistencies then raise ShapeMismatchError.
    """
    for key in ("sub_mean.weight", "add_mean.weight"):
        expect_shape(state, key, (3, 3, 1, 1), arch)
    head = shape_of(state, "head.0.weight")
    if head is None or len(head) != 4 or head[1] != 3:
        raise ShapeMismatchError(
            f"{arch} checkpoint key 'head.0.weight' has shape {list(head) if head else 'missing'}, expected "
            "[n_feats, 3, 3, 3]; only RGB models are supported"
        )
    n_feats = head[0]
    n_blocks = count_indexed(state, "body") - 1
    expect_shape(state, f"body.{n_blocks}.weight", (n_feats, n_feats, 3, 3), arch)
    expect_shape(state, "tail.1.weight", (3, n_feats, 3, 3), arch)
    return n_feats, n_blocks, upsampler_scale(state, "tail.0", n_feats)
