"""RFDN as an srdistill architecture plugin (the worked example of a third-party plugin).

RFDN: Residual Feature Distillation Network (Liu, Tang, Wu; AIM 2020 efficient SR winner).
Official code: https://github.com/njulj/RFDN (``RFDN.py`` + ``block.py``); the released
``trained_model/RFDN_AIM.pth`` is a bare state dict that loads strictly into this module.

Key layout (official names, kept exactly):
    fea_conv                      3x3, 3 -> nf
    B1 .. Bn                      RFDB blocks (official code hard-wires B1..B4; n is detected)
      c1_d c2_d c3_d              1x1, nf -> nf/2   (distilled branches)
      c1_r c2_r c3_r              3x3, nf -> nf     (shallow residual blocks)
      c4                          3x3, nf -> nf/2
      c5                          1x1, 4*(nf/2) -> nf
      esa.conv1 conv_f conv_max conv2 conv3 conv3_ conv4   (ESA, f = nf/4 channels)
    c.0                           1x1, n*nf -> nf, then LeakyReLU(0.05) at ``c.1`` (no weights)
    LR_conv                       3x3, nf -> nf
    upsampler.0                   3x3, nf -> 3*s*s, then PixelShuffle(s) at ``upsampler.1``

The official ``RFDN.__init__`` ignores its ``upscale`` argument and always builds x4; x2/x3 here
differ only in ``upsampler.0``'s output channels, which is also where detection reads the scale.
Inputs are in [0, 1] (the official test script divides uint8 images by 255), no mean shift.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from srdistill.archs.spec import ArchSpec, Detection, Hparams, StateDict, is_square, shape_of
from srdistill.errors import ShapeMismatchError, UsageError

RGB = 3
SCALES = (2, 3, 4)
# ESA reduces the map with a stride-2 3x3 convolution (no padding) and then a 7x7 max-pool, so
# anything smaller than 15 pixels on a side leaves nothing to pool.
MIN_SIZE = 15
LRELU_SLOPE = 0.05  # block.py's activation() default, used by RFDB and the fusion conv ``c``


def _conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1, padding: int | None = None) -> nn.Conv2d:
    # block.conv_layer pads to keep the size ("same"); ESA passes its own padding.
    pad = (kernel - 1) // 2 if padding is None else padding
    return nn.Conv2d(in_ch, out_ch, kernel, stride, pad)


class ESA(nn.Module):
    """Enhanced spatial attention: a coarse, large-receptive-field mask multiplied onto x."""

    def __init__(self, channels: int):
        super().__init__()
        f = channels // 4
        self.conv1 = _conv(channels, f, 1)
        self.conv_f = _conv(f, f, 1)
        self.conv_max = _conv(f, f, 3, padding=1)
        self.conv2 = _conv(f, f, 3, stride=2, padding=0)
        self.conv3 = _conv(f, f, 3, padding=1)
        self.conv3_ = _conv(f, f, 3, padding=1)
        self.conv4 = _conv(f, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reduced = self.conv1(x)
        coarse = F.max_pool2d(self.conv2(reduced), kernel_size=7, stride=3)
        # Official naming: conv_max runs on the pooled map, conv3/conv3_ after it.
        coarse = F.relu(self.conv_max(coarse))
        coarse = self.conv3_(F.relu(self.conv3(coarse)))
        coarse = F.interpolate(coarse, size=x.shape[-2:], mode="bilinear", align_corners=False)
        mask = torch.sigmoid(self.conv4(coarse + self.conv_f(reduced)))
        return x * mask


class RFDB(nn.Module):
    """Residual feature distillation block: three distill/refine steps, fused, then ESA."""

    def __init__(self, channels: int):
        super().__init__()
        distilled = channels // 2
        self.c1_d = _conv(channels, distilled, 1)
        self.c1_r = _conv(channels, channels, 3)
        self.c2_d = _conv(channels, distilled, 1)
        self.c2_r = _conv(channels, channels, 3)
        self.c3_d = _conv(channels, distilled, 1)
        self.c3_r = _conv(channels, channels, 3)
        self.c4 = _conv(channels, distilled, 3)
        self.act = nn.LeakyReLU(LRELU_SLOPE)
        self.c5 = _conv(distilled * 4, channels, 1)
        self.esa = ESA(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        distilled = []
        refined = x
        for to_distilled, to_refined in ((self.c1_d, self.c1_r), (self.c2_d, self.c2_r), (self.c3_d, self.c3_r)):
            distilled.append(self.act(to_distilled(refined)))
            refined = self.act(to_refined(refined) + refined)  # shallow residual block
        distilled.append(self.act(self.c4(refined)))
        # No block-level skip: the official RFDB returns the attended fusion alone.
        return self.esa(self.c5(torch.cat(distilled, dim=1)))


class RFDN(nn.Module):
    def __init__(self, *, scale: int, nf: int, num_modules: int):
        super().__init__()
        self.num_modules = num_modules
        self.fea_conv = _conv(RGB, nf, 3)
        for i in range(1, num_modules + 1):
            setattr(self, f"B{i}", RFDB(nf))
        self.c = nn.Sequential(_conv(nf * num_modules, nf, 1), nn.LeakyReLU(LRELU_SLOPE))
        self.LR_conv = _conv(nf, nf, 3)
        self.upsampler = nn.Sequential(_conv(nf, RGB * scale * scale, 3), nn.PixelShuffle(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h < MIN_SIZE or w < MIN_SIZE:
            raise UsageError(
                f"RFDN needs inputs of at least {MIN_SIZE}x{MIN_SIZE} pixels (its ESA attention pools "
                f"7x7 after a stride-2 conv), got {h}x{w}; pad the input (srdistill upscale does)"
            )
        shallow = self.fea_conv(x)
        outputs = []
        feat = shallow
        for i in range(1, self.num_modules + 1):
            feat = getattr(self, f"B{i}")(feat)
            outputs.append(feat)
        fused = self.c(torch.cat(outputs, dim=1))
        return self.upsampler(self.LR_conv(fused) + shallow)


def build(*, scale: int, nf: int, num_modules: int) -> RFDN:
    return RFDN(scale=scale, nf=nf, num_modules=num_modules)


DEFAULTS = {"nf": 50, "num_modules": 4}
_REQUIRED = (
    "fea_conv.weight",
    "B1.c1_d.weight",
    "B1.esa.conv4.weight",
    "c.0.weight",
    "LR_conv.weight",
    "upsampler.0.weight",
)


def _count_blocks(state: StateDict) -> int:
    n = 0
    while f"B{n + 1}.c1_d.weight" in state:
        n += 1
    return n


def detect(state: StateDict) -> Detection | None:
    # Key names alone separate RFDN from look-alikes (IMDN has IMDB1.., not B1.c1_d).
    if not all(key in state for key in _REQUIRED):
        return None
    nf, in_ch = shape_of(state, "fea_conv.weight")[:2]
    if in_ch != RGB:
        raise ShapeMismatchError(f"RFDN fea_conv.weight has {in_ch} input channels; srdistill supports RGB models (3)")
    num_modules = _count_blocks(state)
    fusion_in = shape_of(state, "c.0.weight")[1]
    if fusion_in != nf * num_modules:
        raise ShapeMismatchError(
            f"RFDN c.0.weight expects {fusion_in} input channels but B1..B{num_modules} give "
            f"{nf * num_modules}; the checkpoint is missing blocks or is not an RFDN"
        )
    up_out = shape_of(state, "upsampler.0.weight")[0]
    scale_sq, rest = divmod(up_out, RGB)
    scale = int(round(scale_sq**0.5)) if rest == 0 and is_square(scale_sq) else 0
    if scale not in SCALES:
        raise ShapeMismatchError(
            f"RFDN upsampler.0.weight has {up_out} output channels; expected 3*s*s for s in {list(SCALES)}"
        )
    return Detection(scale=scale, hparams={"nf": nf, "num_modules": num_modules})


def blocks(hp: Hparams) -> tuple[str, ...]:
    return tuple(f"B{i}" for i in range(1, int(hp["num_modules"]) + 1))


def block_channels(hp: Hparams) -> tuple[int, ...]:
    return (int(hp["nf"]),) * int(hp["num_modules"])


# Every field srdistill reads; see README.md next to this file for what each one is for.
SPEC = ArchSpec(
    id="rfdn",
    title="RFDN (Residual Feature Distillation Network)",
    build=build,
    detect=detect,
    defaults=DEFAULTS,
    small={"nf": 16, "num_modules": 2},
    presets={"rfdn": {"nf": 50, "num_modules": 4}},  # the released AIM 2020 model (x4)
    blocks=blocks,
    block_channels=block_channels,
    scales=SCALES,
    value_range=1.0,
    mean_handling="none",
    min_size=MIN_SIZE,
    reference="https://github.com/njulj/RFDN",
)
