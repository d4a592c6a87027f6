"""The tensor-level inference path: a model prepared once, applied to C x H x W images.

    upscaler = Upscaler(model, tile=256)        # device, dtype and threads chosen here
    sr = upscaler.upscale(lr)                    # C x H x W in [0, 1] -> C x sH x sW, float32 on the CPU

Scale: the network's own scale, or another one reached by running the network and then the
MATLAB-compatible bicubic resize (``allow_resize``), like Real-ESRGAN's ``--outscale``. Tiles,
their blending and the memory policy are :mod:`srdistill.tiling`; channel layouts (gray, alpha)
are :mod:`srdistill.upscale.channels`. Progress goes to an :class:`UpscaleProgress`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..data.resize import imresize
from ..errors import SrdistillError, UsageError, param
from ..inference import Runner, TileOutOfMemory, choose_device, choose_dtype, parse_dtype
from ..models import SRModel
from ..tiling import BAND_BUDGET, DEFAULT_TILE_PAD, MIN_TILE, TilePlan, auto_tile, plan_tiles, run_tiled
from .channels import merge_channels, split_channels
from .onnx_runner import OnnxRunner, check_backend
from .progress import UpscaleProgress


def _resolve_scale(model: SRModel, scale: int | None, allow_resize: bool) -> int:
    if scale is None:
        return model.scale
    if scale < 1 or int(scale) != scale:
        raise UsageError(f"{param('scale')} must be a positive integer, got {scale}")
    scale = int(scale)
    if scale != model.scale and not allow_resize:
        raise UsageError(
            f"model is x{model.scale}, {param('scale')} {scale} asked; pass a x{scale} model, {param('scale', model.scale)}, "
            f"or allow the bicubic resize after the model ({param('allow_resize', True)})"
        )
    return scale


class Upscaler:
    """A model prepared once (device, dtype, tile size) and applied to many images."""

    def __init__(
        self,
        model: SRModel,
        *,
        scale: int | None = None,
        tile: int | None = None,
        tile_pad: int | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        tta: bool = False,
        allow_resize: bool = True,
        threads: int | None = None,
        progress: UpscaleProgress | None = None,
        backend: str = "torch",
    ):
        self.model = model
        self.scale = _resolve_scale(model, scale, allow_resize)
        self.progress = progress or UpscaleProgress()
        if backend == "onnxruntime" and device in (None, "auto"):
            device = "cpu"  # the backend is a CPU runtime: auto means the CPU here
        self.device = choose_device(device)
        self.dtype = choose_dtype(tuple(model.spec.safe_dtypes), self.device, parse_dtype(dtype))
        self.backend = check_backend(backend, self.device, self.dtype)
        multiple = model.spec.pad_multiple(model.hparams, model.scale)
        if threads is not None and threads < 1:
            raise UsageError(f"{param('threads')} must be >= 1, got {threads}")
        if tile is not None and tile < 0:
            raise UsageError(f"{param('tile')} must be >= 0 (0: the whole image at once), got {tile}")
        # threads=None: the count is measured on the first tiles (see inference.ThreadTuner).
        if self.backend == "onnxruntime":
            self.runner = OnnxRunner.prepare(model, threads=threads)
        else:
            self.runner = Runner.prepare(model.net, model.scale, multiple, self.device, self.dtype,
                                         int(model.spec.min_size), threads=threads)
        self.tile_pad = DEFAULT_TILE_PAD if tile_pad is None else int(tile_pad)
        self.tta = tta
        self._tile = tile

    @property
    def tile(self) -> int:
        """The tile core size: as given (0: the whole image), or the automatic one for a small image."""
        if self._tile is not None:
            return self._tile
        return auto_tile(self.runner, self.tile_pad)

    def tile_for(self, height: int, width: int, channels: int = 3, output_bytes: int = 4) -> int:
        """The tile size for one image: what the memory policy leaves after the image's own buffers."""
        if self._tile == 0:
            return self._whole(height, width)
        if self._tile is not None:
            return self._tile
        s = self.model.scale
        # Still to come: the output, the accumulation band and the emit temporaries.
        reserved = height * width * channels * s * s * output_bytes + 2 * BAND_BUDGET
        return auto_tile(self.runner, self.tile_pad, reserved)

    def _whole(self, height: int, width: int) -> int:
        """A tile core that holds the whole image: one forward, as Real-ESRGAN's ``--tile 0``."""
        m = self.runner.multiple
        return -(-max(height, width) // m) * m

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        return height * self.scale, width * self.scale

    def describe(self) -> str:
        runtime = "onnxruntime" if self.backend == "onnxruntime" else self.device.type
        return (f"{self.model.arch} x{self.model.scale} on {runtime} ({str(self.dtype).replace('torch.', '')}), "
                + (f"tile {self.tile} + pad {self.tile_pad}" if self.tile else "whole image (no tiles)")
                + (", TTA x8" if self.tta else ""))

    def run(
        self,
        img: torch.Tensor,
        sink: Callable[[int, torch.Tensor], None],
        name: str = "",
        *,
        output_bytes: int = 4,
        on_plan: Callable[[TilePlan], None] | None = None,
    ) -> int:
        """Upscale a C x H x W float image at the model's scale, handing finished rows to ``sink``.

        ``output_bytes``: bytes per output value the caller keeps (4 float, 1 or 2 for 8/16-bit
        files), for the memory policy. ``on_plan`` sees the tile grid before work starts. Returns
        the number of tiles. On an out-of-memory tile the tile is halved and the image restarted
        (the sink then receives rows again; they are simply rewritten).
        """
        if img.dim() != 3:
            raise UsageError(f"expected a C x H x W image, got shape {tuple(img.shape)}")
        img = img.detach().to("cpu", torch.float32)
        planes, kind = split_channels(img)
        channels, height, width = img.shape
        tile = self.tile_for(height, width, channels, output_bytes)
        whole = self._tile == 0  # no band budget either: one tile, one forward
        while True:
            plan = plan_tiles(height, width, tile, self.tile_pad, self.runner.multiple, scale=self.model.scale,
                              band_budget=None if whole else BAND_BUDGET // planes.shape[0])
            if on_plan is not None:
                on_plan(plan)
            try:
                with torch.inference_mode():
                    run_tiled(
                        self.runner, planes, plan,
                        lambda y0, band: sink(y0, merge_channels(band, kind)),
                        tta=self.tta, on_tile=self.progress.tile_done,
                    )
                return plan.count
            except TileOutOfMemory:
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                if tile <= max(MIN_TILE, self.runner.multiple):
                    raise SrdistillError(
                        f"{name or 'image'}: out of memory on {self.device} even with {tile}px tiles; "
                        f"use {param('device', 'cpu')} or free device memory"
                    ) from None
                # The whole image did not fit either: from here on tiles, halved until they fit.
                whole = False
                tile = max(self.runner.multiple, tile // 2)
                self._tile = tile
                self.progress.note(f"{name or 'image'}: out of memory on {self.device}; retrying with {tile}px tiles")
            finally:
                self.runner.restore_threads()

    def upscale(self, img: torch.Tensor, name: str = "", on_plan: Callable[[TilePlan], None] | None = None) -> torch.Tensor:
        """C x H x W (or 1 x C x H x W) float in [0, 1] -> the upscaled image, float32 on the CPU."""
        batched = img.dim() == 4
        if batched:
            return torch.stack([self.upscale(x, name, on_plan) for x in img])
        c, h, w = img.shape
        s_model = self.model.scale
        out = torch.empty(c, h * s_model, w * s_model)

        def sink(y0: int, rows: torch.Tensor) -> None:
            out[:, y0 : y0 + rows.shape[-2]] = rows

        self.run(img, sink, name, on_plan=on_plan)
        return self.rescale(out, h, w)

    def rescale(self, out: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """The model's output brought to the requested scale (MATLAB bicubic), if they differ."""
        if self.scale == self.model.scale:
            return out
        return imresize(out, size=(height * self.scale, width * self.scale)).clamp_(0, 1)


def upscale_tensor(model: SRModel, img: torch.Tensor, **options) -> torch.Tensor:
    """Upscale ``img`` (C x H x W or N x C x H x W, float in [0, 1]; C = 1, 2, 3 or 4).

    ``options`` are :class:`Upscaler`'s (``scale``, ``tile``, ``tile_pad``, ``device``, ``dtype``,
    ``tta``, ``allow_resize``, ``threads``, ``progress``, ``backend``: "torch" or "onnxruntime"). Tiles are streamed through the device;
    the result is float32 on the CPU, clamped to [0, 1]. ``tile=None`` picks the tile size from
    free device memory. See :mod:`srdistill.tiling` for when tiled output equals untiled output.
    """
    return Upscaler(model, **options).upscale(img)


__all__ = ["Upscaler", "upscale_tensor"]
