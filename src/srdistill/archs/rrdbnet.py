"""RRDBNet (ESRGAN / Real-ESRGAN generator) in BasicSR's layout.

Official code: BasicSR ``basicsr/archs/rrdbnet_arch.py``. State-dict keys are BasicSR's:
``conv_first``, ``body.N.rdb{1,2,3}.conv{1..5}``, ``conv_body``, ``conv_up1``, ``conv_up2``,
``conv_hr``, ``conv_last``. Released checkpoints (RealESRGAN_x4plus, ..._x2plus) wrap the dict in
``params_ema``; unwrapping is model I/O's job, not this module's.

The trunk always upsamples x4 (two nearest x2 steps). Real-ESRGAN gets x2 and x1 by
pixel-unshuffling the input first (by 2 and 4), which is why ``conv_first`` then has 12 or 48
input channels and why detection reads the scale from there.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ShapeMismatchError
from .spec import ArchSpec, Detection, Hparams, StateDict, count_indexed, shape_of

# Pixel-unshuffle factor applied to the input for each output scale.
_UNSHUFFLE = {4: 1, 2: 2, 1: 4}
IN_CHANNELS = 3


class ResidualDenseBlock(nn.Module):
    def __init__(self, num_feat: int, num_grow_ch: int):
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_grow_ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, 1, 1)
        # Not in place: hooks may hold on to intermediate tensors.
        self.lrelu = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.lrelu(self.conv1(x))
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * 0.2 + x


class RRDB(nn.Module):
    def __init__(self, num_feat: int, num_grow_ch: int):
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    def __init__(self, *, scale: int, num_feat: int, num_block: int, num_grow_ch: int):
        super().__init__()
        if scale not in _UNSHUFFLE:
            raise ValueError(f"RRDBNet supports scales {sorted(_UNSHUFFLE)}, not {scale}")
        self.scale = scale
        self.unshuffle = _UNSHUFFLE[scale]
        self.conv_first = nn.Conv2d(IN_CHANNELS * self.unshuffle**2, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*(RRDB(num_feat, num_grow_ch) for _ in range(num_block)))
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, IN_CHANNELS, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        feat = x
        if self.unshuffle > 1:
            # Pixel-unshuffle needs sides divisible by the factor. Like Real-ESRGAN's inference
            # (RealESRGANer.pre_process/post_process) we reflect-pad bottom/right to the multiple
            # and crop the output, so any input size works. Replicate stands in where an input
            # side is too small to reflect (reflect padding must be smaller than the side).
            pad_h, pad_w = (-h) % self.unshuffle, (-w) % self.unshuffle
            if pad_h or pad_w:
                mode = "reflect" if pad_h < h and pad_w < w else "replicate"
                feat = F.pad(feat, (0, pad_w, 0, pad_h), mode=mode)
            feat = F.pixel_unshuffle(feat, self.unshuffle)
        feat = self.conv_first(feat)
        feat = feat + self.conv_body(self.body(feat))
        feat = self.lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))
        feat = self.lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))
        out = self.conv_last(self.lrelu(self.conv_hr(feat)))
        return out[..., : h * self.scale, : w * self.scale]


def build(*, scale: int, num_feat: int, num_block: int, num_grow_ch: int) -> RRDBNet:
    return RRDBNet(scale=scale, num_feat=num_feat, num_block=num_block, num_grow_ch=num_grow_ch)


DEFAULTS = {"num_feat": 64, "num_block": 23, "num_grow_ch": 32}
_REQUIRED = (
    "conv_first.weight",
    "conv_body.weight",
    "conv_up1.weight",
    "conv_up2.weight",
    "conv_hr.weight",
    "conv_last.weight",
)


def detect(state: StateDict) -> Detection | None:
    if not all(key in state for key in _REQUIRED):
        return None
    first = shape_of(state, "conv_first.weight")
    if first is None or len(first) != 4:
        return None
    num_feat, in_ch = first[0], first[1]
    by_in_channels = {IN_CHANNELS * f * f: s for s, f in _UNSHUFFLE.items()}
    if in_ch not in by_in_channels:
        raise ShapeMismatchError(
            f"RRDBNet conv_first.weight has {in_ch} input channels; srdistill supports RGB models "
            f"with {sorted(by_in_channels)} (x4, x2 pixel-unshuffle, x1 pixel-unshuffle)"
        )
    out_ch = shape_of(state, "conv_last.weight")[0]
    if out_ch != IN_CHANNELS:
        raise ShapeMismatchError(
            f"RRDBNet conv_last.weight has {out_ch} output channels; srdistill supports RGB models (3)"
        )
    num_block = count_indexed(state, "body")
    hparams = {"num_feat": num_feat, "num_block": num_block, "num_grow_ch": DEFAULTS["num_grow_ch"]}
    assumed: tuple[str, ...] = ()
    grow = shape_of(state, "body.0.rdb1.conv1.weight")
    if grow is not None:
        hparams["num_grow_ch"] = grow[0]
    else:
        # A trunk with no RRDB has no growth convolutions to read it from.
        assumed = ("num_grow_ch",)
    return Detection(scale=by_in_channels[in_ch], hparams=hparams, assumed=assumed)


def blocks(hp: Hparams) -> tuple[str, ...]:
    return tuple(f"body.{i}" for i in range(int(hp["num_block"])))


def block_channels(hp: Hparams) -> tuple[int, ...]:
    return (int(hp["num_feat"]),) * int(hp["num_block"])


def size_multiple(hp: Hparams, scale: int) -> int:
    # pixel-unshuffle needs the input divisible by its factor; forward() pads internally anyway,
    # so this only lets callers (e.g. tiling) pad once, up front.
    return _UNSHUFFLE.get(int(scale), 1)


SPEC = ArchSpec(
    id="rrdbnet",
    title="RRDBNet (ESRGAN / Real-ESRGAN)",
    build=build,
    detect=detect,
    defaults=DEFAULTS,
    small={"num_feat": 16, "num_block": 2, "num_grow_ch": 8},
    presets={"rrdbnet": {"num_feat": 64, "num_block": 23, "num_grow_ch": 32}},  # RealESRGAN_x4plus
    blocks=blocks,
    block_channels=block_channels,
    scales=(1, 2, 4),
    value_range=1.0,
    mean_handling="none",
    size_multiple=size_multiple,
    reference="https://github.com/XPixelGroup/BasicSR/blob/master/basicsr/archs/rrdbnet_arch.py",
)
