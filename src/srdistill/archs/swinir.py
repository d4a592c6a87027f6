"""SwinIR (Liang et al. 2021) for super-resolution, state-dict compatible with the official release.

Covers the three SR reconstruction heads of ``models/network_swinir.py``: ``pixelshuffle``
(classical SR), ``pixelshuffledirect`` (lightweight SR) and ``nearest+conv`` (real-world SR),
with ``1conv`` or ``3conv`` residual connections. The denoising / JPEG variants (no upsampler,
scale 1) and absolute position embeddings (``ape``) are refused with a clear error.

Released checkpoints store the persistent ``attn_mask`` buffer of every shifted block, shaped
by the *training* patch size: (img_size/ws)^2 x ws^2 x ws^2. Detection reads ``img_size`` back
from that shape so loading is strict; at run time an input (after padding) of exactly
``img_size`` uses the stored mask and any other size computes a fresh one, as upstream does.
Under the ONNX tracer the padding and the mask are computed from the traced size instead, so the
exported graph runs at any size (``srdistill export``).
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ShapeMismatchError, UnknownArchitectureError, UsageError
from ._swin_blocks import RSTB, PatchEmbed, init_like_official, residual_conv, tokens_to_map
from .spec import TOKENS, ArchSpec, Detection, Hparams, StateDict, count_indexed, is_square, shape_of

REFERENCE = "https://github.com/JingyunLiang/SwinIR/blob/main/models/network_swinir.py"
# DIV2K RGB mean; the official model keeps it as a plain tensor attribute (not in the state dict).
RGB_MEAN = (0.4488, 0.4371, 0.4040)
# Width of the reconstruction head of the classical and real-world variants (fixed upstream).
NUM_FEAT = 64
UPSAMPLERS = ("pixelshuffle", "pixelshuffledirect", "nearest+conv")
RESI_CONNECTIONS = ("1conv", "3conv")


def _pixelshuffle_upsample(scale: int, num_feat: int) -> nn.Sequential:
    """Official ``Upsample``: log2(scale) conv + PixelShuffle(2) steps, or one x3 step."""
    layers: list[nn.Module] = []
    if scale & (scale - 1) == 0:
        for _ in range(int(math.log2(scale))):
            layers += [nn.Conv2d(num_feat, 4 * num_feat, 3, 1, 1), nn.PixelShuffle(2)]
    elif scale == 3:
        layers += [nn.Conv2d(num_feat, 9 * num_feat, 3, 1, 1), nn.PixelShuffle(3)]
    else:
        raise UsageError(f"swinir upsampler 'pixelshuffle' supports scales 2^n and 3, not x{scale}")
    return nn.Sequential(*layers)


class SwinIR(nn.Module):
    """SwinIR for RGB super-resolution. Input N x 3 x H x W in [0, 1], output N x 3 x sH x sW.

    The constructor is the spec's ``build``: keyword-only official names, checked here so that
    an impossible combination fails with a named error before any layer is made.
    """

    def __init__(
        self,
        *,
        scale: int,
        img_size: int,
        window_size: int,
        depths: tuple[int, ...],
        embed_dim: int,
        num_heads: tuple[int, ...],
        mlp_ratio: float,
        upsampler: str,
        resi_connection: str,
    ):
        depths, num_heads = tuple(int(d) for d in depths), tuple(int(h) for h in num_heads)
        _check_hparams(scale, img_size, window_size, depths, embed_dim, num_heads, upsampler, resi_connection)
        super().__init__()
        self.scale = scale
        self.window_size = window_size
        self.upsampler = upsampler
        # Non-persistent: follows .to(device/dtype) but stays out of the state dict, as upstream.
        self.register_buffer("mean", torch.tensor(RGB_MEAN).view(1, 3, 1, 1), persistent=False)

        resolution = (img_size, img_size)
        self.conv_first = nn.Conv2d(3, embed_dim, 3, 1, 1)
        self.patch_embed = PatchEmbed(embed_dim)
        self.layers = nn.ModuleList(
            RSTB(embed_dim, resolution, depth, heads, window_size, float(mlp_ratio), resi_connection)
            for depth, heads in zip(depths, num_heads)
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.conv_after_body = residual_conv(embed_dim, resi_connection)

        if upsampler == "pixelshuffle":
            self.conv_before_upsample = nn.Sequential(nn.Conv2d(embed_dim, NUM_FEAT, 3, 1, 1), nn.LeakyReLU())
            self.upsample = _pixelshuffle_upsample(scale, NUM_FEAT)
            self.conv_last = nn.Conv2d(NUM_FEAT, 3, 3, 1, 1)
        elif upsampler == "pixelshuffledirect":
            self.upsample = nn.Sequential(nn.Conv2d(embed_dim, 3 * scale * scale, 3, 1, 1), nn.PixelShuffle(scale))
        elif upsampler == "nearest+conv":
            # Note the two slopes: nn.LeakyReLU() default 0.01 before upsampling, 0.2 after.
            self.conv_before_upsample = nn.Sequential(nn.Conv2d(embed_dim, NUM_FEAT, 3, 1, 1), nn.LeakyReLU())
            self.conv_up1 = nn.Conv2d(NUM_FEAT, NUM_FEAT, 3, 1, 1)
            if scale == 4:
                self.conv_up2 = nn.Conv2d(NUM_FEAT, NUM_FEAT, 3, 1, 1)
            self.conv_hr = nn.Conv2d(NUM_FEAT, NUM_FEAT, 3, 1, 1)
            self.conv_last = nn.Conv2d(NUM_FEAT, 3, 3, 1, 1)
            self.lrelu = nn.LeakyReLU(negative_slope=0.2)
        self.apply(init_like_official)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x_size = (x.shape[2], x.shape[3])
        tokens = self.patch_embed(x)
        for layer in self.layers:
            tokens = layer(tokens, x_size)
        return tokens_to_map(self.norm(tokens), x_size)

    def _reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsampler == "pixelshuffle":
            return self.conv_last(self.upsample(self.conv_before_upsample(x)))
        if self.upsampler == "pixelshuffledirect":
            return self.upsample(x)
        x = self.conv_before_upsample(x)
        x = self.lrelu(self.conv_up1(F.interpolate(x, scale_factor=2, mode="nearest")))
        if self.scale == 4:
            x = self.lrelu(self.conv_up2(F.interpolate(x, scale_factor=2, mode="nearest")))
        return self.conv_last(self.lrelu(self.conv_hr(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2], x.shape[3]
        # Windows need sides that are multiples of window_size: reflect-pad bottom/right and
        # crop the output afterwards (upstream ``check_image_size``).
        pad_h = (self.window_size - h % self.window_size) % self.window_size
        pad_w = (self.window_size - w % self.window_size) % self.window_size
        # While tracing the pads are traced values: always pad (zero pads are exact no-ops), so
        # the graph pads any input size rather than the one it was traced at.
        if torch.jit.is_tracing() or pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
        mean = self.mean.to(x.dtype)
        # img_range is 1.0 for every released SR model, so the upstream "* img_range" and
        # "/ img_range" are exact no-ops and are left out.
        x = self.conv_first(x - mean)
        x = self.conv_after_body(self.forward_features(x)) + x
        out = self._reconstruct(x) + mean
        return out[:, :, : h * self.scale, : w * self.scale]


def _check_hparams(scale, img_size, window_size, depths, embed_dim, num_heads, upsampler, resi_connection) -> None:
    """Refuse combinations the official constructor would build wrongly or crash on."""
    if upsampler not in UPSAMPLERS:
        raise UsageError(f"swinir upsampler must be one of {', '.join(UPSAMPLERS)}, not {upsampler!r}")
    if resi_connection not in RESI_CONNECTIONS:
        raise UsageError(f"swinir resi_connection must be '1conv' or '3conv', not {resi_connection!r}")
    if upsampler == "nearest+conv" and scale not in (2, 4):
        raise UsageError(f"swinir upsampler 'nearest+conv' supports x2 and x4, not x{scale}; use 'pixelshuffle'")
    if not depths or len(depths) != len(num_heads):
        raise UsageError(f"swinir depths {depths} and num_heads {num_heads} must be non-empty and equally long")
    bad_heads = [h for h in num_heads if h <= 0 or embed_dim % h]
    if bad_heads:
        raise UsageError(f"swinir embed_dim {embed_dim} is not divisible by num_heads {bad_heads[0]}; pick a divisor")
    if img_size > window_size and img_size % window_size:
        raise UsageError(f"swinir img_size {img_size} must be a multiple of window_size {window_size}")


# The class is its own builder (its constructor checks the hyperparameters first), so the
# keyword-only signature is written once.
build = SwinIR


# -- detection -----------------------------------------------------------------------------------
_FINGERPRINT = ("conv_first.weight", "layers.0.residual_group.blocks.0.attn.relative_position_bias_table")
_SWINIR_KEY = re.compile(
    r"""(
      (conv_first | patch_embed\.norm | norm | conv_before_upsample\.0 | upsample\.\d+
       | conv_up1 | conv_up2 | conv_hr | conv_last | (layers\.\d+\.conv | conv_after_body)(\.[024])?
       | layers\.\d+\.residual_group\.blocks\.\d+\.(norm1 | norm2 | attn\.qkv | attn\.proj | mlp\.fc1 | mlp\.fc2)
      )\.(weight | bias)
      | layers\.\d+\.residual_group\.blocks\.\d+\.(attn_mask
          | attn\.relative_position_bias_table | attn\.relative_position_index)
    )$""",
    re.VERBOSE,
)


def _detect_upsampler(state: StateDict) -> tuple[str, int]:
    if "conv_up1.weight" in state:
        return "nearest+conv", 4 if "conv_up2.weight" in state else 2
    first = shape_of(state, "upsample.0.weight")
    if first is None:
        raise UnknownArchitectureError(
            "SwinIR checkpoint without an upsampler (denoising / JPEG model, scale 1): "
            "srdistill only handles super-resolution models; use an SR checkpoint"
        )
    if "conv_before_upsample.0.weight" not in state:
        # pixelshuffledirect: one conv straight to 3 * s * s channels.
        scale = math.isqrt(first[0] // 3)
        if 3 * scale * scale != first[0]:
            raise ShapeMismatchError(f"SwinIR upsample.0.weight has {first[0]} outputs, not 3*s*s for any scale s")
        return "pixelshuffledirect", scale
    num_feat = shape_of(state, "conv_before_upsample.0.weight")[0]
    steps = 0
    while f"upsample.{2 * steps}.weight" in state:
        steps += 1
    if steps == 1 and first[0] == 9 * num_feat:
        return "pixelshuffle", 3
    if first[0] != 4 * num_feat:
        raise ShapeMismatchError(
            f"SwinIR upsample.0.weight has {first[0]} outputs; expected 4*{num_feat} (x2 steps) or 9*{num_feat} (x3)"
        )
    return "pixelshuffle", 2**steps


def _window_from_table(rows: int, key: str) -> int:
    side = math.isqrt(rows)
    if side * side != rows or side % 2 == 0:
        raise ShapeMismatchError(f"SwinIR {key} has {rows} rows, not (2*window_size-1)^2")
    return (side + 1) // 2


def _detect_img_size(state: StateDict, depths: tuple[int, ...], window_size: int) -> int | None:
    """Training patch size from the first stored shifted-window mask, or None if there is none."""
    for i, depth in enumerate(depths):
        if depth < 2:
            continue
        key = f"layers.{i}.residual_group.blocks.1.attn_mask"
        mask = shape_of(state, key)
        if mask is None:
            return None
        tokens = window_size * window_size
        if len(mask) != 3 or mask[1:] != (tokens, tokens) or not is_square(mask[0]):
            raise ShapeMismatchError(
                f"SwinIR {key} has shape {mask}; expected (n*n, {tokens}, {tokens}) for a square img_size "
                "(non-square training sizes are not supported)"
            )
        return window_size * math.isqrt(mask[0])
    return None


def detect(state: StateDict) -> Detection | None:
    if any(key not in state for key in _FINGERPRINT):
        return None
    if not all(_SWINIR_KEY.match(key) for key in state if key != "absolute_pos_embed"):
        # Another Swin-family network with modules SwinIR lacks (HAT, Swin2SR, forks): not ours.
        # Shapes are the loader's job (it compares every key against the built network).
        return None
    if "absolute_pos_embed" in state:
        raise UnknownArchitectureError(
            "SwinIR checkpoint with absolute_pos_embed (ape=True) is not supported: it only runs at its "
            "training size; use a checkpoint trained with ape=False (all official SR releases)"
        )
    embed_dim, in_chans = shape_of(state, "conv_first.weight")[:2]
    if in_chans != 3:
        raise UnknownArchitectureError(
            f"SwinIR conv_first.weight takes {in_chans} input channels; srdistill handles RGB (3-channel) models only"
        )
    upsampler, scale = _detect_upsampler(state)

    n_layers = count_indexed(state, "layers")
    depths = tuple(count_indexed(state, f"layers.{i}.residual_group.blocks") for i in range(n_layers))
    tables = [f"layers.{i}.residual_group.blocks.0.attn.relative_position_bias_table" for i in range(n_layers)]
    num_heads = tuple(shape_of(state, key)[1] for key in tables)
    window_size = _window_from_table(shape_of(state, tables[0])[0], tables[0])
    hidden = shape_of(state, "layers.0.residual_group.blocks.0.mlp.fc1.weight")[0]
    if "layers.0.conv.weight" in state:
        resi_connection = "1conv"
    elif "layers.0.conv.0.weight" in state:
        resi_connection = "3conv"
    else:
        raise ShapeMismatchError(
            "SwinIR checkpoint has neither layers.0.conv.weight (1conv) nor layers.0.conv.0.weight (3conv)"
        )

    assumed: tuple[str, ...] = ()
    img_size = _detect_img_size(state, depths, window_size)
    if img_size is None:
        # No stored mask: the training size was at most the window (upstream then shrinks the
        # window to the image and drops the shift) or every RSTB has depth 1. Either way the
        # weights fit img_size == window_size, but the original padding multiple is unknown.
        img_size, assumed = window_size, ("img_size", "window_size")

    hparams: dict[str, Any] = {
        "img_size": img_size,
        "window_size": window_size,
        "depths": depths,
        "embed_dim": embed_dim,
        "num_heads": num_heads,
        "mlp_ratio": hidden / embed_dim,
        "upsampler": upsampler,
        "resi_connection": resi_connection,
    }
    return Detection(scale=scale, hparams=hparams, assumed=assumed)


# -- spec ----------------------------------------------------------------------------------------
def _blocks(hparams: Hparams) -> tuple[str, ...]:
    return tuple(f"layers.{i}" for i in range(len(hparams["depths"])))


def _block_channels(hparams: Hparams) -> tuple[int, ...]:
    return (int(hparams["embed_dim"]),) * len(hparams["depths"])


SWINIR_M_CLASSICAL = {
    # 001_classicalSR_DIV2K_s48w8_SwinIR-M: trained on 48x48 patches.
    "img_size": 48,
    "window_size": 8,
    "depths": (6, 6, 6, 6, 6, 6),
    "embed_dim": 180,
    "num_heads": (6, 6, 6, 6, 6, 6),
    "mlp_ratio": 2.0,
    "upsampler": "pixelshuffle",
    "resi_connection": "1conv",
}

PRESETS = {
    "swinir-m": dict(SWINIR_M_CLASSICAL),
    # 002_lightweightSR_DIV2K_s64w8_SwinIR-S: 900k parameters, one-step pixel shuffle.
    "swinir-s": {
        "img_size": 64,
        "window_size": 8,
        "depths": (6, 6, 6, 6),
        "embed_dim": 60,
        "num_heads": (6, 6, 6, 6),
        "mlp_ratio": 2.0,
        "upsampler": "pixelshuffledirect",
        "resi_connection": "1conv",
    },
    # 003_realSR_BSRGAN_DFO_s64w8_SwinIR-M: nearest-neighbour + conv head (fewer artefacts).
    "swinir-realworld": {**SWINIR_M_CLASSICAL, "img_size": 64, "upsampler": "nearest+conv"},
}

SPEC = ArchSpec(
    id="swinir",
    title="SwinIR (Swin Transformer image restoration)",
    build=build,
    detect=detect,
    defaults=dict(SWINIR_M_CLASSICAL),
    presets=PRESETS,
    blocks=_blocks,
    block_channels=_block_channels,
    scales=(2, 3, 4, 8),
    feature_view=TOKENS,
    value_range=1.0,
    mean_handling="subtracts the DIV2K RGB mean (0.4488, 0.4371, 0.4040) inside forward, adds it back (img_range 1.0)",
    # The forward pads to this itself; tiling on multiples of it keeps tiles free of padding.
    size_multiple=lambda hp, scale: int(hp["window_size"]),
    # Reflect padding to a multiple of the window needs pad < side: 5 px for the official window 8.
    min_size=5,
    # fp16 overflows in the attention logits; bf16 has float32's exponent range.
    safe_dtypes=(torch.float32, torch.bfloat16),
    reference=REFERENCE,
    # The fixtures' size: two RSTBs of two blocks, so both plain and shifted windows run.
    small={"img_size": 16, "window_size": 4, "depths": (2, 2), "embed_dim": 24, "num_heads": (2, 2)},
)

__all__ = ["SPEC", "SwinIR", "build", "detect"]
