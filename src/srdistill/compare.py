"""Side-by-side crops people can look at: bicubic | each model | HR, labelled with PSNR.

    from srdistill.compare import compare_arrays, load_inputs, render

    lr, hr = load_inputs("butterfly.png", 4, from_hr=True)
    sheet = render(compare_arrays(lr, {"edsr": model}, 4, hr=hr))   # a Pillow RGB image
    write_image("compare.png", np.asarray(sheet))                  # srdistill.data.imageio

Crops are ``(x, y, w, h)`` in the pixels of the image you pass (the HR image with ``from_hr``,
snapped to the scale grid; the low-resolution input otherwise). Without crops the region of
highest detail (largest mean luminance gradient of the input) is chosen. Each crop is upscaled
with real context around it (the tile padding), so a panel shows what the whole-image result
shows there. Panels are zoomed with nearest neighbour so that pixels stay visible. PSNR is the
field's Y-channel PSNR measured on the crop itself (no border shave).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from .data.arrays import chw_to_hwc_uint8, hwc_to_chw_float, read_uint8
from .errors import UsageError, param
from .evaluate import matlab_downscale, matlab_upscale
from .metrics import psnr_y, shave_to_scale
from .models import SRModel
from .tiling import DEFAULT_TILE_PAD

PANEL_TARGET = 256  # zoom small crops up to about this many pixels per panel side
LABEL_HEIGHT = 30
GAP = 4
AUTO_CROP = 48  # default auto crop side, in low-resolution pixels


@dataclass(frozen=True)
class Crop:
    x: int
    y: int
    w: int
    h: int

    @classmethod
    def parse(cls, text: str) -> Crop:
        parts = text.replace(" ", "").split(",")
        try:
            x, y, w, h = (int(p) for p in parts)
        except ValueError:
            raise UsageError(f"{param('crop')} {text!r} must be x,y,w,h in pixels, e.g. 100,80,64,64") from None
        if w <= 0 or h <= 0 or x < 0 or y < 0:
            raise UsageError(f"{param('crop')} {text!r}: x and y must be >= 0, w and h > 0")
        return cls(x, y, w, h)


@dataclass
class Panel:
    label: str
    pixels: np.ndarray  # h x w x 3 uint8 (output resolution, before zoom)
    psnr: float | None


@dataclass
class Sheet:
    rows: list[list[Panel]]
    crops: list[Crop]  # in low-resolution pixels
    scale: int
    zoom: int


def highest_detail(lr: np.ndarray, side: int) -> Crop:
    """The ``side`` x ``side`` window of the image with the largest mean gradient magnitude."""
    h, w = lr.shape[:2]
    side_h, side_w = min(side, h), min(side, w)
    y = torch.from_numpy(lr.astype(np.float32)).mean(-1)[None, None]
    grad = torch.zeros_like(y)
    grad[..., :, 1:] += (y[..., :, 1:] - y[..., :, :-1]).abs()
    grad[..., 1:, :] += (y[..., 1:, :] - y[..., :-1, :]).abs()
    energy = F.avg_pool2d(grad, (side_h, side_w), stride=1)[0, 0]
    idx = int(torch.argmax(energy))
    top, left = divmod(idx, energy.shape[1])
    return Crop(left, top, side_w, side_h)


def _rgb(arr: np.ndarray) -> np.ndarray:
    return np.repeat(arr, 3, axis=2) if arr.shape[2] == 1 else arr


def _lr_crop(crop: Crop, scale: int, from_hr: bool, lr_shape: tuple[int, ...]) -> Crop:
    if from_hr:
        x0, y0 = crop.x // scale, crop.y // scale
        crop = Crop(x0, y0, math.ceil((crop.x + crop.w) / scale) - x0, math.ceil((crop.y + crop.h) / scale) - y0)
    h, w = lr_shape[:2]
    if crop.x + crop.w > w or crop.y + crop.h > h:
        where = "the HR image" if from_hr else "the input"
        raise UsageError(
            f"crop {crop.x},{crop.y},{crop.w},{crop.h} lies outside {where} "
            f"({w * (scale if from_hr else 1)}x{h * (scale if from_hr else 1)}); pick a region inside it"
        )
    return crop


def compare_arrays(
    lr: np.ndarray,
    models: Mapping[str, SRModel],
    scale: int,
    *,
    hr: np.ndarray | None = None,
    crops: Sequence[Crop] = (),
    from_hr: bool = False,
    zoom: int | None = None,
    device: str | None = None,
) -> Sheet:
    """Panels for each crop of ``lr`` (H x W x C uint8); ``hr`` is ``scale`` x ``lr`` if given."""
    from .upscale import Upscaler

    for name, model in models.items():
        if model.scale != scale:
            raise UsageError(f"model {name} is x{model.scale} but the comparison is x{scale}; compare models of one scale")
    upscalers = {name: Upscaler(m, scale=scale, device=device, allow_resize=False) for name, m in models.items()}
    lr_crops = [_lr_crop(c, scale, from_hr, lr.shape) for c in crops] or [highest_detail(lr, AUTO_CROP)]
    rows = []
    for c in lr_crops:
        # Upscale the crop with context around it, then cut the crop out of the result.
        m = DEFAULT_TILE_PAD
        x0, y0 = max(0, c.x - m), max(0, c.y - m)
        x1, y1 = min(lr.shape[1], c.x + c.w + m), min(lr.shape[0], c.y + c.h + m)
        context = np.ascontiguousarray(lr[y0:y1, x0:x1])
        cut = (slice((c.y - y0) * scale, (c.y - y0 + c.h) * scale), slice((c.x - x0) * scale, (c.x - x0 + c.w) * scale))
        truth = hr[c.y * scale : (c.y + c.h) * scale, c.x * scale : (c.x + c.w) * scale] if hr is not None else None
        outputs = {"bicubic": matlab_upscale(context, scale)[cut]}
        for name, up in upscalers.items():
            outputs[name] = chw_to_hwc_uint8(up.upscale(hwc_to_chw_float(context) / 255.0, name=name) * 255.0)[cut]
        row = [Panel(name, _rgb(img), psnr_y(img, truth, 0) if truth is not None else None) for name, img in outputs.items()]
        if truth is not None:
            row.append(Panel("HR", _rgb(truth), None))
        rows.append(row)
    biggest = max(max(p.pixels.shape[:2]) for row in rows for p in row)
    return Sheet(rows, lr_crops, scale, zoom or max(1, PANEL_TARGET // biggest))


def render(sheet: Sheet) -> Image.Image:
    """The sheet as one RGB image: a row of zoomed, labelled panels per crop."""
    font = ImageFont.load_default()
    z = sheet.zoom
    cell_w = max(p.pixels.shape[1] for row in sheet.rows for p in row) * z
    cell_h = max(p.pixels.shape[0] for row in sheet.rows for p in row) * z
    cols = max(len(row) for row in sheet.rows)
    canvas = Image.new("RGB", (cols * (cell_w + GAP) + GAP, len(sheet.rows) * (cell_h + LABEL_HEIGHT + GAP) + GAP), "white")
    draw = ImageDraw.Draw(canvas)
    for r, row in enumerate(sheet.rows):
        top = GAP + r * (cell_h + LABEL_HEIGHT + GAP)
        for c, panel in enumerate(row):
            left = GAP + c * (cell_w + GAP)
            img = Image.fromarray(panel.pixels)
            img = img.resize((img.width * z, img.height * z), Image.Resampling.NEAREST)
            canvas.paste(img, (left, top))
            draw.text((left + 2, top + img.height + 2), panel.label[:40], fill="black", font=font)
            if panel.psnr is not None:
                value = "inf" if math.isinf(panel.psnr) else f"{panel.psnr:.2f}"
                draw.text((left + 2, top + img.height + 15), f"PSNR {value} dB", fill="black", font=font)
    return canvas


def load_inputs(image: str | Path, scale: int, *, hr: str | Path | None = None, from_hr: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """(LR, HR or None) as uint8 H x W x C from the files the user named."""
    if from_hr and hr is not None:
        raise UsageError(f"give either {param('hr')} FILE or {param('from_hr', True)}, not both")
    pixels = read_uint8(Path(image))
    if from_hr:
        truth = np.ascontiguousarray(shave_to_scale(pixels, scale))
        if truth.shape[0] == 0 or truth.shape[1] == 0:
            raise UsageError(f"{image} is smaller than the scale x{scale}; {param('from_hr')} needs a larger image")
        return matlab_downscale(truth, scale), truth
    if hr is None:
        return pixels, None
    truth = read_uint8(Path(hr))
    want = (pixels.shape[0] * scale, pixels.shape[1] * scale)
    if truth.shape[0] < want[0] or truth.shape[1] < want[1] or truth.shape[0] >= want[0] + scale or truth.shape[1] >= want[1] + scale:
        raise UsageError(
            f"{param('hr')} {hr} is {truth.shape[1]}x{truth.shape[0]} but x{scale} of {image} is {want[1]}x{want[0]}; "
            f"give the matching HR image or the right {param('scale')}"
        )
    truth = np.ascontiguousarray(truth[: want[0], : want[1]])
    if truth.shape[2] != pixels.shape[2]:
        truth, pixels = _rgb(truth), _rgb(pixels)
    return pixels, truth


__all__ = ["Crop", "Panel", "Sheet", "compare_arrays", "highest_detail", "load_inputs", "render"]
