"""SPAN-style efficient students: re-parameterisable convolutions and parameter-free attention.

Written from the description in Wan et al., "Swift Parameter-free Attention Network for Efficient
Super-Resolution" (NTIRE 2024 efficient-SR winner), not from its code; srdistill's own layout.

Training form (``fused=False``): every 3x3 convolution is a :class:`RepConv`, the sum of
* a 1x1 -> 3x3 -> 1x1 branch that first widens the channels by ``gain`` (more parameters to
  optimise, the same function class),
* a 1x1 skip convolution, and the identity where input and output widths agree.
All of it is linear, so it collapses into one 3x3 convolution (``fused=True``, the inference
form): :func:`fuse` computes that convolution exactly.

Network (C = ``channels``, n = ``n_blocks``)::

    head        RepConv 3 -> C
    blocks.i    SPAB: three RepConvs with SiLU between them; the third one's output o gives the
                parameter-free attention a = sigmoid(o) - 0.5 (zero-centred, no weights), and the
                block returns (o + x) * a
    body_end    RepConv C -> C after the last block
    merge       1x1 conv over [head, last block, body_end] (3C -> C)
    upsample.0  3x3 conv C -> 3 s^2, then PixelShuffle(s) at upsample.1
    + the input upsampled by nearest neighbour (``image_skip``): the network predicts a residual.

Inputs and outputs are in [0, 1]; there is no mean shift.

Key layout: training form ``head.skip``, ``head.expand``, ``head.spatial``, ``head.project``;
inference form ``head.weight``/``head.bias`` (a plain Conv2d at the same path). Detection tells
the forms apart by those keys.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ShapeMismatchError, UsageError
from .spec import ArchSpec, Detection, Hparams, StateDict, count_indexed, is_square, shape_of

RGB = 3
SCALES = (2, 3, 4)


class RepConv(nn.Module):
    """A 3x3 convolution in training form: widened 1x1 -> 3x3 -> 1x1 branch + 1x1 skip (+ identity).

    The input is zero-padded once, before the branch, and the branch's 3x3 runs unpadded: padding
    the widened feature instead would put the first 1x1's bias (not zeros) under the border taps
    of the fused kernel, and fusion would stop being exact at image edges.
    """

    def __init__(self, in_channels: int, out_channels: int, gain: int):
        super().__init__()
        wide_in, wide_out = in_channels * gain, out_channels * gain
        self.skip = nn.Conv2d(in_channels, out_channels, 1)
        self.expand = nn.Conv2d(in_channels, wide_in, 1)
        self.spatial = nn.Conv2d(wide_in, wide_out, 3)
        self.project = nn.Conv2d(wide_out, out_channels, 1)
        self.identity = in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.spatial(self.expand(F.pad(x, (1, 1, 1, 1)))))
        out = out + self.skip(x)
        return out + x if self.identity else out

    @torch.no_grad()
    def fused_kernel(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(weight, bias)`` of the one 3x3 convolution equal to this module (computed in float64)."""
        a_w, a_b = self.expand.weight.double()[:, :, 0, 0], self.expand.bias.double()
        b_w, b_b = self.spatial.weight.double(), self.spatial.bias.double()
        c_w, c_b = self.project.weight.double()[:, :, 0, 0], self.project.bias.double()
        # expand then spatial: B * (A x + a) = (B A) * x + sum over taps of B a
        weight = torch.einsum("omhw,mi->oihw", b_w, a_w)
        bias = b_b + torch.einsum("omhw,m->o", b_w, a_b)
        # then project (1x1): C (.) + c
        weight = torch.einsum("po,oihw->pihw", c_w, weight)
        bias = c_w @ bias + c_b
        weight[:, :, 1, 1] += self.skip.weight.double()[:, :, 0, 0]
        bias = bias + self.skip.bias.double()
        if self.identity:
            weight[:, :, 1, 1] += torch.eye(weight.shape[0], dtype=weight.dtype, device=weight.device)
        return weight, bias


def _conv3(in_channels: int, out_channels: int, gain: int, fused: bool) -> nn.Module:
    if fused:
        return nn.Conv2d(in_channels, out_channels, 3, padding=1)
    return RepConv(in_channels, out_channels, gain)


class SPAB(nn.Module):
    """Swift parameter-free attention block: three convolutions, then a weight-free attention map."""

    def __init__(self, channels: int, gain: int, fused: bool):
        super().__init__()
        self.c1 = _conv3(channels, channels, gain, fused)
        self.c2 = _conv3(channels, channels, gain, fused)
        self.c3 = _conv3(channels, channels, gain, fused)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.c3(F.silu(self.c2(F.silu(self.c1(x)))))
        # Symmetric around zero, so the attention can damp or flip a feature, and needs no weights.
        attention = torch.sigmoid(out) - 0.5
        return (out + x) * attention


class SPAN(nn.Module):
    def __init__(self, *, scale: int, channels: int, n_blocks: int, gain: int, fused: bool, image_skip: bool):
        super().__init__()
        self.scale = scale
        self.image_skip = image_skip
        self.head = _conv3(RGB, channels, gain, fused)
        self.blocks = nn.Sequential(*(SPAB(channels, gain, fused) for _ in range(n_blocks)))
        self.body_end = _conv3(channels, channels, gain, fused)
        self.merge = nn.Conv2d(3 * channels, channels, 1)
        self.upsample = nn.Sequential(nn.Conv2d(channels, RGB * scale * scale, 3, padding=1), nn.PixelShuffle(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shallow = self.head(x)
        deep = self.blocks(shallow)
        merged = self.merge(torch.cat([shallow, deep, self.body_end(deep)], dim=1))
        out = self.upsample(merged)
        if self.image_skip:
            out = out + F.interpolate(x, scale_factor=self.scale, mode="nearest")
        return out


def build(*, scale: int, channels: int, n_blocks: int, gain: int, fused: bool, image_skip: bool) -> nn.Module:
    if scale not in SCALES:
        raise UsageError(f"span supports scales {list(SCALES)}, not x{scale}")
    if channels < 1 or n_blocks < 1 or gain < 1:
        raise UsageError(f"span needs channels, n_blocks and gain >= 1, got {channels}, {n_blocks}, {gain}")
    return SPAN(scale=scale, channels=channels, n_blocks=n_blocks, gain=gain, fused=fused, image_skip=image_skip)


# -- fusion ----------------------------------------------------------------------------------------
def fuse(net: nn.Module, hparams: Hparams) -> tuple[nn.Module, dict[str, Any]]:
    """The inference form of a training-form SPAN: every RepConv replaced by its exact 3x3 conv.

    Returns ``(net, hparams)`` unchanged when the network is already fused.
    """
    if hparams["fused"]:
        return net, dict(hparams)
    fused_hparams = {**hparams, "fused": True}
    scale = net.scale
    reference = next(net.parameters())
    plain = build(scale=scale, **fused_hparams).to(device=reference.device)
    state = {}
    reparameterised = []
    for name, module in net.named_modules():
        if isinstance(module, RepConv):
            weight, bias = module.fused_kernel()
            state[f"{name}.weight"], state[f"{name}.bias"] = weight, bias
            reparameterised.append(name + ".")
    for key, value in net.state_dict().items():
        # Everything outside the RepConvs (merge, upsample) is copied as it is.
        if not key.startswith(tuple(reparameterised)):
            state[key] = value
    plain.load_state_dict({k: v.to(reference.dtype) for k, v in state.items()}, strict=True)
    return plain.train(net.training), fused_hparams


# -- detection -------------------------------------------------------------------------------------
def detect(state: StateDict) -> Detection | None:
    if "merge.weight" not in state or "blocks.0.c1.weight" not in state and "blocks.0.c1.skip.weight" not in state:
        return None
    fused = "head.weight" in state
    head = shape_of(state, "head.weight" if fused else "head.skip.weight")
    if head is None or len(head) != 4 or head[1] != RGB:
        return None
    channels = head[0]
    gain = 1
    if not fused:
        wide = shape_of(state, "head.expand.weight")
        if wide is None or wide[0] % RGB:
            raise ShapeMismatchError(
                f"span checkpoint key 'head.expand.weight' has shape {list(wide) if wide else 'missing'}, expected "
                f"[3 * gain, 3, 1, 1]; the file is truncated or mixes architectures"
            )
        gain = wide[0] // RGB
    up = shape_of(state, "upsample.0.weight")
    if up is None or up[0] % RGB or not is_square(up[0] // RGB):
        raise ShapeMismatchError(
            f"span checkpoint key 'upsample.0.weight' has shape {list(up) if up else 'missing'}, expected "
            f"[3 * scale^2, {channels}, 3, 3]; the file is truncated or mixes architectures"
        )
    scale = int(round((up[0] // RGB) ** 0.5))
    merge = shape_of(state, "merge.weight")
    if merge != (channels, 3 * channels, 1, 1):
        raise ShapeMismatchError(
            f"span checkpoint key 'merge.weight' has shape {list(merge) if merge else 'missing'}, expected "
            f"[{channels}, {3 * channels}, 1, 1]; the file is truncated or mixes architectures"
        )
    hparams: dict[str, Any] = {"channels": channels, "n_blocks": count_indexed(state, "blocks"), "gain": gain, "fused": fused}
    # image_skip adds no weights: srdistill files record it in metadata; the default is assumed otherwise.
    return Detection(scale=scale, hparams=hparams, assumed=("gain",) if fused else ())


def blocks(hparams: Hparams) -> tuple[str, ...]:
    return tuple(f"blocks.{i}" for i in range(int(hparams["n_blocks"])))


def block_channels(hparams: Hparams) -> tuple[int, ...]:
    return (int(hparams["channels"]),) * int(hparams["n_blocks"])


SPEC = ArchSpec(
    id="span",
    title="SPAN-style student (Wan et al. 2024, Swift Parameter-free Attention Network), re-parameterisable",
    build=build,
    detect=detect,
    defaults={"channels": 48, "n_blocks": 6, "gain": 2, "fused": False, "image_skip": True},
    small={"channels": 8, "n_blocks": 2, "gain": 2},
    presets={
        # Parameter counts are of the fused (deployed) form: ~0.15 M and ~0.43 M at x4.
        "span-s": {"channels": 28, "n_blocks": 6},
        "span-m": {"channels": 48, "n_blocks": 6},
    },
    blocks=blocks,
    block_channels=block_channels,
    scales=SCALES,
    fuse=fuse,
    reference="https://arxiv.org/abs/2311.12770",
)
