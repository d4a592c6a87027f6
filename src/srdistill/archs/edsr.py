"""EDSR (Lim et al., 2017), in the EDSR-PyTorch release layout or BasicSR's.

Official layout (``src/model/edsr.py``)::

    sub_mean, add_mean            MeanShift 1x1 convs (stored values kept)
    head.0                        conv 3 -> n_feats
    body.0 .. body.{n-1}          ResBlock: body.0 conv, body.1 ReLU, body.2 conv; x + res_scale * res
    body.{n}                      conv closing the trunk, then the global skip
    tail.0.{0,2,..}, tail.1       pixel-shuffle upsampler, conv n_feats -> 3

BasicSR layout (``basicsr/archs/edsr_arch.py``): ``conv_first``, ``body.N.conv1/conv2``,
``conv_after_body``, ``upsample.{0,2,..}``, ``conv_last``; the DIV2K mean is a constant outside
the state dict and is applied as ``(x - mean) * 255`` ... ``/ 255 + mean``, the same function as
the official MeanShift pair with its default values. The ``layout`` hyperparameter picks the key
names; everything else (blocks, channels, hyperparameters) is shared.

``bicubic_skip`` (srdistill's option, off for official checkpoints) makes the network predict the
residual over a bicubic upsampling of its input; it adds no weights.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import UsageError
from ._common import DIV2K_RGB_MEAN, RGB_RANGE, MeanShiftedTrunk, Upsampler, default_conv, detect_trunk, upsampler_scale
from .spec import ArchSpec, Detection, Hparams, StateDict, count_indexed, shape_of

LAYOUTS = ("official", "basicsr")
# The EDSR paper's large model (256 features) needs residual scaling 0.1 to train stably; the
# baselines use none. Weights cannot tell (0.1 * W equals W with scale 1), so detection assumes this.
LARGE_MODEL_FEATS = 256


def conventional_res_scale(n_feats: int) -> float:
    return 0.1 if n_feats >= LARGE_MODEL_FEATS else 1.0


class ResBlock(nn.Module):
    """conv-ReLU-conv with a scaled residual; keys ``body.0``, ``body.2`` (EDSR-PyTorch)."""

    def __init__(self, n_feats: int, res_scale: float):
        super().__init__()
        self.body = nn.Sequential(default_conv(n_feats, n_feats), nn.ReLU(inplace=True), default_conv(n_feats, n_feats))
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = self.body(x)
        # Skipping a multiply by 1.0 saves an elementwise op and its backward per block.
        return x + (res if self.res_scale == 1.0 else res * self.res_scale)


class EDSR(MeanShiftedTrunk):
    def __init__(self, *, scale: int, n_resblocks: int, n_feats: int, res_scale: float, bicubic_skip: bool = False):
        body = [ResBlock(n_feats, res_scale) for _ in range(n_resblocks)]
        super().__init__(
            head=nn.Sequential(default_conv(3, n_feats)),
            body=nn.Sequential(*body, default_conv(n_feats, n_feats)),
            tail=nn.Sequential(Upsampler(scale, n_feats), default_conv(n_feats, 3)),
            bicubic_skip=scale if bicubic_skip else 0,
        )


class BasicSRResBlock(nn.Module):
    """BasicSR ``ResidualBlockNoBN``: the same function as :class:`ResBlock`, keys ``conv1``/``conv2``."""

    def __init__(self, n_feats: int, res_scale: float):
        super().__init__()
        self.res_scale = res_scale
        self.conv1 = default_conv(n_feats, n_feats)
        self.conv2 = default_conv(n_feats, n_feats)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.relu(self.conv1(x))) * self.res_scale


class EDSRBasicSR(nn.Module):
    def __init__(self, *, scale: int, n_resblocks: int, n_feats: int, res_scale: float):
        super().__init__()
        # Not persistent: BasicSR keeps the mean out of its checkpoints; a buffer still follows .to().
        self.register_buffer("mean", torch.tensor(DIV2K_RGB_MEAN).view(1, 3, 1, 1), persistent=False)
        self.conv_first = default_conv(3, n_feats)
        self.body = nn.Sequential(*(BasicSRResBlock(n_feats, res_scale) for _ in range(n_resblocks)))
        self.conv_after_body = default_conv(n_feats, n_feats)
        self.upsample = Upsampler(scale, n_feats)
        self.conv_last = default_conv(n_feats, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = self.mean.to(x.dtype)
        x = self.conv_first((x - mean) * RGB_RANGE)
        res = self.conv_after_body(self.body(x)) + x
        return self.conv_last(self.upsample(res)) / RGB_RANGE + mean


def build(*, scale: int, n_resblocks: int, n_feats: int, res_scale: float, layout: str, bicubic_skip: bool) -> nn.Module:
    if layout not in LAYOUTS:
        raise UsageError(f"edsr layout must be one of {list(LAYOUTS)}, not {layout!r}")
    if layout == "basicsr":
        if bicubic_skip:
            raise UsageError("edsr bicubic_skip is available with layout=official only")
        return EDSRBasicSR(scale=scale, n_resblocks=n_resblocks, n_feats=n_feats, res_scale=float(res_scale))
    return EDSR(scale=scale, n_resblocks=n_resblocks, n_feats=n_feats, res_scale=float(res_scale), bicubic_skip=bicubic_skip)


def _detected(scale: int, n_feats: int, n_resblocks: int, layout: str) -> Detection:
    hparams: dict[str, Any] = {
        "n_resblocks": n_resblocks,
        "n_feats": n_feats,
        "res_scale": conventional_res_scale(n_feats),
    }
    # ``layout`` is srdistill's switch, not an official constructor argument: it is reported only
    # when it differs from the default, so official checkpoints detect to the official names alone.
    if layout != "official":
        hparams["layout"] = layout
    # bicubic_skip (no weights) is never in official releases; srdistill files record it in metadata.
    return Detection(scale=scale, hparams=hparams, assumed=("res_scale",))


def detect(state: StateDict) -> Detection | None:
    if "body.0.body.0.weight" in state and "sub_mean.weight" in state and "head.0.weight" in state:
        # RCAN nests one level deeper (body.G.body.B.body.0); a residual-group key means it is not EDSR.
        if "body.0.body.0.body.0.weight" in state or "body.0.body.3.conv_du.0.weight" in state:
            return None
        n_feats, n_resblocks, scale = detect_trunk(state, "edsr")
        return _detected(scale, n_feats, n_resblocks, "official")
    if "conv_first.weight" in state and "body.0.conv1.weight" in state and "conv_after_body.weight" in state:
        if "upsample.0.weight" not in state or "conv_last.weight" not in state:
            return None  # another BasicSR network built from ResidualBlockNoBN (e.g. MSRResNet)
        head = shape_of(state, "conv_first.weight")
        if head is None or len(head) != 4 or head[1] != 3:
            return None
        n_feats = head[0]
        scale = upsampler_scale(state, "upsample", n_feats)
        return _detected(scale, n_feats, count_indexed(state, "body"), "basicsr")
    return None


def blocks(hparams: Hparams) -> tuple[str, ...]:
    # Both layouts keep the residual blocks at body.0 .. body.{n-1}.
    return tuple(f"body.{i}" for i in range(int(hparams["n_resblocks"])))


def block_channels(hparams: Hparams) -> tuple[int, ...]:
    return (int(hparams["n_feats"]),) * int(hparams["n_resblocks"])


SPEC = ArchSpec(
    id="edsr",
    title="EDSR (Lim et al. 2017, Enhanced Deep Residual Networks)",
    build=build,
    detect=detect,
    defaults={"n_resblocks": 16, "n_feats": 64, "res_scale": 1.0, "layout": "official", "bicubic_skip": False},
    small={"n_resblocks": 2, "n_feats": 16},
    presets={
        "edsr": {"n_resblocks": 32, "n_feats": 256, "res_scale": 0.1},
        "edsr-baseline": {"n_resblocks": 16, "n_feats": 64, "res_scale": 1.0},
        "edsr-lite": {"n_resblocks": 8, "n_feats": 32, "res_scale": 1.0, "bicubic_skip": True},
    },
    blocks=blocks,
    block_channels=block_channels,
    scales=(2, 3, 4),
    value_range=RGB_RANGE,
    mean_handling=(
        "inside the network at rgb_range 255: official layout uses MeanShift 1x1 convs sub_mean/add_mean "
        "(stored values kept); basicsr layout uses the fixed DIV2K mean (0.4488, 0.4371, 0.4040)"
    ),
    reference="https://github.com/sanghyun-son/EDSR-PyTorch/blob/master/src/model/edsr.py",
)
