"""RCAN (Zhang et al., 2018), in the official ``RCAN_TestCode/code/model/rcan.py`` layout.

The same MeanShift trunk as EDSR (see ``_common``), with residual groups as the body::

    body.G                        ResidualGroup, G < n_resgroups
    body.G.body.B                 RCAB: body.0 conv, body.1 ReLU, body.2 conv, body.3 CALayer
    body.G.body.B.body.3.conv_du  channel attention: .0 1x1 conv n -> n//reduction, .2 back to n
    body.G.body.{n_resblocks}     conv closing the group, then the group skip
    body.{n_resgroups}            conv closing the trunk, then the global skip

The official RCAB has a ``res_scale`` argument but ignores it (the scaling line is commented
out), so there is no residual scaling here.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ShapeMismatchError
from ._common import RGB_RANGE, MeanShiftedTrunk, Upsampler, default_conv, detect_trunk, expect_shape
from .spec import ArchSpec, Detection, Hparams, StateDict, count_indexed, shape_of


class CALayer(nn.Module):
    """Channel attention: global average pool, squeeze-excite 1x1 convs, sigmoid gate."""

    def __init__(self, n_feats: int, reduction: int):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        squeezed = n_feats // reduction
        self.conv_du = nn.Sequential(
            nn.Conv2d(n_feats, squeezed, 1, padding=0, bias=True),
            nn.ReLU(inplace=True),
            nn.Conv2d(squeezed, n_feats, 1, padding=0, bias=True),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.conv_du(self.avg_pool(x))


class RCAB(nn.Module):
    def __init__(self, n_feats: int, reduction: int):
        super().__init__()
        self.body = nn.Sequential(
            default_conv(n_feats, n_feats),
            nn.ReLU(inplace=True),
            default_conv(n_feats, n_feats),
            CALayer(n_feats, reduction),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + x


class ResidualGroup(nn.Module):
    def __init__(self, n_feats: int, reduction: int, n_resblocks: int):
        super().__init__()
        rcabs = [RCAB(n_feats, reduction) for _ in range(n_resblocks)]
        self.body = nn.Sequential(*rcabs, default_conv(n_feats, n_feats))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + x


class RCAN(MeanShiftedTrunk):
    def __init__(self, *, scale: int, n_resgroups: int, n_resblocks: int, n_feats: int, reduction: int):
        groups = [ResidualGroup(n_feats, reduction, n_resblocks) for _ in range(n_resgroups)]
        super().__init__(
            head=nn.Sequential(default_conv(3, n_feats)),
            body=nn.Sequential(*groups, default_conv(n_feats, n_feats)),
            tail=nn.Sequential(Upsampler(scale, n_feats), default_conv(n_feats, 3)),
        )


def build(*, scale: int, n_resgroups: int, n_resblocks: int, n_feats: int, reduction: int) -> nn.Module:
    return RCAN(scale=scale, n_resgroups=n_resgroups, n_resblocks=n_resblocks, n_feats=n_feats, reduction=reduction)


def detect(state: StateDict) -> Detection | None:
    squeeze = shape_of(state, "body.0.body.0.body.3.conv_du.0.weight")
    if squeeze is None or "sub_mean.weight" not in state or "head.0.weight" not in state:
        return None
    n_feats, n_resgroups, scale = detect_trunk(state, "rcan")
    n_resblocks = count_indexed(state, "body.0.body") - 1
    expect_shape(state, f"body.0.body.{n_resblocks}.weight", (n_feats, n_feats, 3, 3), "rcan")
    # Only n_feats // reduction is stored. Every reduction with the same quotient builds the same
    # network; n_feats // squeezed is the largest such one and the exact divisor releases use (64 // 4 = 16).
    squeezed = squeeze[0]
    reduction = n_feats // squeezed if squeezed else 0
    if squeezed == 0 or n_feats // reduction != squeezed:
        raise ShapeMismatchError(
            f"rcan checkpoint key 'body.0.body.0.body.3.conv_du.0.weight' has {squeezed} output channels, which is "
            f"n_feats // reduction for no integer reduction (n_feats {n_feats}); the file is not an RCAN checkpoint"
        )
    hparams = {"n_resgroups": n_resgroups, "n_resblocks": n_resblocks, "n_feats": n_feats, "reduction": reduction}
    return Detection(scale=scale, hparams=hparams)


def blocks(hparams: Hparams) -> tuple[str, ...]:
    # Residual groups: 10 boundaries for the released model rather than 200 RCABs.
    return tuple(f"body.{g}" for g in range(int(hparams["n_resgroups"])))


def block_channels(hparams: Hparams) -> tuple[int, ...]:
    return (int(hparams["n_feats"]),) * int(hparams["n_resgroups"])


SPEC = ArchSpec(
    id="rcan",
    title="RCAN (Zhang et al. 2018, Residual Channel Attention Networks)",
    build=build,
    detect=detect,
    defaults={"n_resgroups": 10, "n_resblocks": 20, "n_feats": 64, "reduction": 16},
    small={"n_resgroups": 2, "n_resblocks": 2, "n_feats": 16, "reduction": 4},
    presets={
        "rcan": {"n_resgroups": 10, "n_resblocks": 20, "n_feats": 64, "reduction": 16},
        # The MiPKD paper's RCAN student: 6 RCABs per group instead of 20.
        "rcan-lite": {"n_resgroups": 10, "n_resblocks": 6, "n_feats": 64, "reduction": 16},
    },
    blocks=blocks,
    block_channels=block_channels,
    scales=(2, 3, 4),
    value_range=RGB_RANGE,
    mean_handling="MeanShift 1x1 convs sub_mean/add_mean inside the network (stored values kept), rgb_range 255",
    reference="https://github.com/yulunzhang/RCAN/blob/master/RCAN_TestCode/code/model/rcan.py",
)
