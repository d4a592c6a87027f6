"""Swin transformer building blocks with the module names and buffers of the official SwinIR.

Parameter and buffer names match ``models/network_swinir.py`` of JingyunLiang/SwinIR exactly,
so a released checkpoint loads with ``strict=True``. Modules of the official code that hold no
state (PatchEmbed/PatchUnEmbed inside an RSTB, dropout, DropPath at rate 0) are plain tensor
reshapes here: they never appear in a state dict.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

# The official code fills masked logits with -100 rather than -inf: after softmax the masked
# weights are ~e-44, not exactly 0, and a faithful port must reproduce that.
MASKED_LOGIT = -100.0


def window_partition(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """B x H x W x C -> (B * nW) x ws x ws x C, windows in row-major order."""
    b, h, w, c = x.shape
    x = x.view(b, h // window_size, window_size, w // window_size, window_size, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size, window_size, c)


def window_reverse(windows: torch.Tensor, window_size: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`."""
    b = windows.shape[0] // ((h // window_size) * (w // window_size))
    x = windows.view(b, h // window_size, w // window_size, window_size, window_size, -1)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, -1)


def _on_default_device(shape: tuple[int, ...], dtype: torch.dtype, cpu_value) -> torch.Tensor:
    """A constant buffer on the default device (which a ``torch.device`` context may set).

    On the meta device only the shape matters, and computing values there would make torch
    import its Python meta kernels (seconds, once per process). Elsewhere the value comes from a
    CPU cache shared by every block of a model, copied so no two buffers share storage (which
    safetensors refuses to save).
    """
    device = torch.get_default_device()
    if device.type == "meta":
        return torch.empty(shape, dtype=dtype, device=device)
    return cpu_value().to(device, copy=True)


def _band_labels(length, window_size: int, shift_size: int, device) -> torch.Tensor:
    """Per row (or column) of a rolled image: 0 before the last window, 1 in its unshifted part, 2 in the shift.

    The official ``calculate_mask`` slices ``[0, -ws)``, ``[-ws, -shift)``, ``[-shift, end)``;
    comparisons against ``length`` give the same bands and, unlike slice assignment, the tracer
    records them, so an exported graph builds the mask for whatever size it is run at.
    """
    index = torch.arange(length, device=device)
    return (index >= length - window_size).long() + (index >= length - shift_size).long()


def _mask_values(h, w, window_size: int, shift_size: int, device, dtype) -> torch.Tensor:
    """The mask for an h x w token grid; ``h`` and ``w`` may be ints or (while tracing) traced sizes."""
    rows = _band_labels(h, window_size, shift_size, device)
    cols = _band_labels(w, window_size, shift_size, device)
    region = (rows.unsqueeze(1) * 3 + cols.unsqueeze(0)).view(1, h, w, 1)
    windows = window_partition(region, window_size).view(-1, window_size * window_size)
    different = windows.unsqueeze(1) != windows.unsqueeze(2)
    return torch.zeros(different.shape, device=device, dtype=dtype).masked_fill(different, MASKED_LOGIT)


@functools.lru_cache(maxsize=8)
def _cpu_mask(h: int, w: int, window_size: int, shift_size: int) -> torch.Tensor:
    return _mask_values(h, w, window_size, shift_size, "cpu", torch.float32)


def shifted_window_mask(
    size: tuple[int, int],
    window_size: int,
    shift_size: int,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Additive attention mask (nW x ws*ws x ws*ws) of a cyclically shifted window layout.

    After the roll, a window at the bottom/right edge holds tokens from up to four image regions
    that are not neighbours; tokens only attend within their own region. Same regions and the
    same 0 / -100 values as the official ``calculate_mask``. ``device=None``: the default device.
    """
    h, w = (int(s) for s in size)
    if device is not None:
        # Forward-time masks: built where they are used (no host-device copy, no sync).
        return _mask_values(h, w, window_size, shift_size, device, dtype)
    tokens = window_size * window_size
    shape = ((h // window_size) * (w // window_size), tokens, tokens)
    return _on_default_device(shape, dtype, lambda: _cpu_mask(h, w, window_size, shift_size).to(dtype))


@functools.lru_cache(maxsize=8)
def _cpu_relative_position_index(window_size: int) -> torch.Tensor:
    steps = torch.arange(window_size, device="cpu")
    coords = torch.stack(torch.meshgrid(steps, steps, indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()
    rel[:, :, 0] += window_size - 1
    rel[:, :, 1] += window_size - 1
    rel[:, :, 0] *= 2 * window_size - 1
    return rel.sum(-1)


def relative_position_index(window_size: int) -> torch.Tensor:
    """(ws*ws) x (ws*ws) int64 index into the (2ws-1)^2 bias table, as the official code builds it."""
    tokens = window_size * window_size
    return _on_default_device((tokens, tokens), torch.int64, lambda: _cpu_relative_position_index(window_size))


class WindowAttention(nn.Module):
    """Multi-head self-attention inside a window, with a learned relative position bias."""

    def __init__(self, dim: int, window_size: int, num_heads: int):
        super().__init__()
        self.window_size = window_size
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        # Persistent: the official checkpoints store it, so strict loading needs it.
        self.register_buffer("relative_position_index", relative_position_index(window_size))
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        windows, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(windows, tokens, 3, self.num_heads, dim // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q * self.scale) @ k.transpose(-2, -1)

        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        bias = bias.view(tokens, tokens, -1).permute(2, 0, 1).contiguous()
        attn = attn + bias.unsqueeze(0)
        if mask is not None:
            n_windows = mask.shape[0]
            attn = attn.view(windows // n_windows, n_windows, self.num_heads, tokens, tokens)
            attn = (attn + mask.unsqueeze(1).unsqueeze(0)).view(-1, self.num_heads, tokens, tokens)
        attn = attn.softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(windows, tokens, dim)
        return self.proj(out)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def mlp_hidden(dim: int, mlp_ratio: float) -> int:
    # Official: int(dim * mlp_ratio). The epsilon keeps a detected ratio (hidden / dim, which
    # may be a hair under the true value in floating point) from truncating one unit short.
    return int(dim * mlp_ratio + 1e-6)


class SwinTransformerBlock(nn.Module):
    """One (shifted) window attention + MLP block, pre-norm, on B x (H*W) x C tokens."""

    def __init__(
        self,
        dim: int,
        input_resolution: tuple[int, int],
        num_heads: int,
        window_size: int,
        shift_size: int,
        mlp_ratio: float,
    ):
        super().__init__()
        self.input_resolution = tuple(input_resolution)
        self.window_size = window_size
        self.shift_size = shift_size
        if min(self.input_resolution) <= window_size:
            # Official behaviour: a training size no larger than the window means one window,
            # no shift, and a window (and bias table) the size of the training image.
            self.shift_size = 0
            self.window_size = min(self.input_resolution)
        if not 0 <= self.shift_size < self.window_size:
            raise ValueError(f"shift_size {self.shift_size} must be in [0, window_size {self.window_size})")

        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, self.window_size, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, mlp_hidden(dim, mlp_ratio))
        # Persistent and shaped by the training size: released checkpoints carry it. Blocks
        # without a shift register None, which keeps the key out of the state dict as upstream.
        mask = None
        if self.shift_size:
            mask = shifted_window_mask(self.input_resolution, self.window_size, self.shift_size)
        self.register_buffer("attn_mask", mask)

    def _mask_for(self, size: tuple[int, int], like: torch.Tensor) -> torch.Tensor | None:
        if self.shift_size == 0:
            return None
        if torch.jit.is_tracing():
            # An exported graph runs at any size: the mask is built in-graph from the traced size
            # (same values as the stored one; comparing against it would fix the size).
            return _mask_values(size[0], size[1], self.window_size, self.shift_size, like.device, like.dtype)
        if size == self.input_resolution:
            return self.attn_mask
        # Any other size gets a fresh mask, as upstream; built directly on the input's device and
        # dtype (identical 0 / -100 values) so bf16 models do not mix dtypes in the matmul.
        return shifted_window_mask(size, self.window_size, self.shift_size, device=like.device, dtype=like.dtype)

    def forward(self, x: torch.Tensor, x_size: tuple[int, int]) -> torch.Tensor:
        # No int() on the sizes: while tracing they are traced values, and int() would bake the
        # trace's input size into the graph.
        h, w = x_size
        b, _, c = x.shape
        ws, shift = self.window_size, self.shift_size

        shortcut = x
        x = self.norm1(x).view(b, h, w, c)
        if shift:
            x = torch.roll(x, shifts=(-shift, -shift), dims=(1, 2))
        windows = window_partition(x, ws).view(-1, ws * ws, c)
        windows = self.attn(windows, mask=self._mask_for((h, w), x))
        x = window_reverse(windows.view(-1, ws, ws, c), ws, h, w)
        if shift:
            x = torch.roll(x, shifts=(shift, shift), dims=(1, 2))
        x = shortcut + x.reshape(b, h * w, c)
        return x + self.mlp(self.norm2(x))


class BasicLayer(nn.Module):
    """A stack of blocks alternating plain and shifted windows (the RSTB's ``residual_group``)."""

    def __init__(self, dim, input_resolution, depth, num_heads, window_size, mlp_ratio):
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinTransformerBlock(
                dim,
                input_resolution,
                num_heads,
                window_size,
                shift_size=0 if i % 2 == 0 else window_size // 2,
                mlp_ratio=mlp_ratio,
            )
            for i in range(depth)
        )

    def forward(self, x: torch.Tensor, x_size: tuple[int, int]) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, x_size)
        return x


def residual_conv(dim: int, resi_connection: str) -> nn.Module:
    """The conv closing each RSTB and the body: one 3x3 conv, or a cheaper 3-conv bottleneck."""
    if resi_connection == "1conv":
        return nn.Conv2d(dim, dim, 3, 1, 1)
    if resi_connection == "3conv":
        return nn.Sequential(
            nn.Conv2d(dim, dim // 4, 3, 1, 1),
            nn.LeakyReLU(negative_slope=0.2),
            nn.Conv2d(dim // 4, dim // 4, 1, 1, 0),
            nn.LeakyReLU(negative_slope=0.2),
            nn.Conv2d(dim // 4, dim, 3, 1, 1),
        )
    raise ValueError(f"resi_connection must be '1conv' or '3conv', not {resi_connection!r}")


def tokens_to_map(x: torch.Tensor, x_size: tuple[int, int]) -> torch.Tensor:
    b, _, c = x.shape
    return x.transpose(1, 2).reshape(b, c, x_size[0], x_size[1])


def map_to_tokens(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(2).transpose(1, 2)


class RSTB(nn.Module):
    """Residual Swin Transformer Block: tokens in, tokens out, called as ``layer(x, x_size)``."""

    def __init__(self, dim, input_resolution, depth, num_heads, window_size, mlp_ratio, resi_connection):
        super().__init__()
        self.residual_group = BasicLayer(dim, input_resolution, depth, num_heads, window_size, mlp_ratio)
        self.conv = residual_conv(dim, resi_connection)

    def forward(self, x: torch.Tensor, x_size: tuple[int, int]) -> torch.Tensor:
        body = tokens_to_map(self.residual_group(x, x_size), x_size)
        return map_to_tokens(self.conv(body)) + x


class PatchEmbed(nn.Module):
    """Feature map -> tokens, then LayerNorm (``patch_norm=True``, patch size 1)."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(map_to_tokens(x))


def init_like_official(module: nn.Module) -> None:
    """The official ``_init_weights``: only matters for students trained from scratch."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


__all__ = [
    "RSTB",
    "BasicLayer",
    "PatchEmbed",
    "SwinTransformerBlock",
    "WindowAttention",
    "init_like_official",
    "map_to_tokens",
    "mlp_hidden",
    "relative_position_index",
    "residual_conv",
    "shifted_window_mask",
    "tokens_to_map",
    "window_partition",
    "window_reverse",
]
