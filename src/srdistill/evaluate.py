"""Evaluate models on benchmark sets exactly as super-resolution papers do.

    from srdistill.evaluate import evaluate

    results = evaluate(["edsr_x4.safetensors"], "../shared/data/benchmarks", scale=4)
    for row in results.rows: print(row.set, row.method, row.psnr, row.ssim)

Convention (see :mod:`srdistill.metrics`): PSNR/SSIM on BT.601 Y, border crop = scale, on
8-bit-rounded outputs, HR cropped to a multiple of the scale (MATLAB ``modcrop``). Grayscale
images stay grayscale (Set14's ``bridge``), as in the published tables.

Data: a set is a folder of HR images (LR made on the fly with the MATLAB-compatible bicubic
downscale, computed as MATLAB does on ``uint8`` images), or the benchmark layout ``HR/`` +
``LR_bicubic/X{s}/`` (the given LR is used). A folder holding several such sets (``benchmarks/``
with ``Set5/``, ``Set14/``...) evaluates each. The bicubic baseline upsamples the LR with the same
``uint8`` MATLAB ``imresize``; it reproduces the published Set5/Set14 numbers to ~0.01 dB.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .bundled import bundled_name
from .data.folders import IMAGE_SUFFIXES, ImagePair, find_images
from .data.arrays import chw_to_hwc_uint8, hwc_to_chw_float, read_uint8
from .data.resize import imresize_uint8
from .errors import DataError, ImageError, UsageError, param
from .metrics import psnr_y, shave_to_scale, ssim_y
from .models import SRModel, load_model

BICUBIC = "bicubic"
# FLOPs are counted on a probe of this many input pixels per side and scaled to a megapixel.
_FLOP_PROBE = 64


@dataclass
class ImageScore:
    name: str
    psnr: float
    ssim: float
    seconds: float


@dataclass
class EvalRow:
    set: str
    method: str
    scale: int
    psnr: float
    ssim: float
    images: int
    params: int | None
    gflops_per_mp: float | None  # per megapixel of *input*, FLOPs = 2 x multiply-accumulates
    seconds_per_image: float
    per_image: list[ImageScore] = field(default_factory=list)


@dataclass
class EvalResults:
    scale: int
    rows: list[EvalRow]

    def to_dict(self) -> dict:
        return {"scale": self.scale, "rows": [asdict(r) for r in self.rows]}

    def row(self, set_name: str, method: str) -> EvalRow:
        for r in self.rows:
            if r.set == set_name and r.method == method:
                return r
        raise KeyError((set_name, method))


@dataclass(frozen=True)
class EvalSet:
    name: str
    pairs: tuple[ImagePair, ...]
    source: str  # "given LR" or "generated LR"


# -- data -----------------------------------------------------------------------------------------
def _is_set(folder: Path) -> bool:
    if (folder / "HR").is_dir():
        return True
    return any(p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir())


def find_sets(data: str | Path | Sequence[str | Path], scale: int, *, what: str = "data") -> list[EvalSet]:
    """Evaluation sets in ``data``: one set folder, a folder of set folders, or several of either.
    ``what`` is the parameter the caller took ``data`` as, for messages."""
    folders = [data] if isinstance(data, (str, Path)) else list(data)
    if not folders:
        raise UsageError(f"no {param(what)} folder given; pass {param(what, 'path/to/Set5')} (HR images or HR/ + LR_bicubic/)")
    sets: list[EvalSet] = []
    for entry in folders:
        folder = Path(entry).expanduser()
        if not folder.is_dir():
            raise DataError(f"{param(what)} {folder} is not a folder; give a folder of HR images or one with HR/ and LR_bicubic/X{scale}/")
        members = [folder] if _is_set(folder) else sorted(p for p in folder.iterdir() if p.is_dir() and _is_set(p))
        if not members:
            raise DataError(f"{param(what)} {folder} holds no images and no set folders (HR/ or image files); check the path")
        for member in members:
            contents = find_images(member, scale, what=what)
            sets.append(EvalSet(member.name, tuple(contents.pairs), "given LR" if contents.paired else "generated LR"))
    return sets


def matlab_downscale(hr: np.ndarray, scale: int) -> np.ndarray:
    """H x W x C uint8 -> LR uint8, like MATLAB ``imresize(hr, 1/scale, 'bicubic')`` on uint8."""
    return imresize_uint8(hr, 1.0 / scale)


def matlab_upscale(lr: np.ndarray, scale: int) -> np.ndarray:
    """The bicubic baseline: H x W x C uint8 -> uint8, like MATLAB ``imresize(lr, scale)`` on uint8."""
    return imresize_uint8(lr, float(scale))


def load_pair(pair: ImagePair, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """(LR, HR) as H x W x C uint8 with HR exactly ``scale`` times LR."""
    hr = shave_to_scale(read_uint8(pair.hr), scale)
    if hr.shape[0] == 0 or hr.shape[1] == 0:
        raise DataError(f"{pair.hr}: image is smaller than the scale x{scale}")
    if pair.lr is None:
        return matlab_downscale(hr, scale), np.ascontiguousarray(hr)
    lr = read_uint8(pair.lr)
    if (lr.shape[0] * scale, lr.shape[1] * scale) != hr.shape[:2] or lr.shape[2] != hr.shape[2]:
        raise DataError(
            f"{pair.lr.name} is {lr.shape[1]}x{lr.shape[0]}x{lr.shape[2]} but {pair.hr.name} cropped to x{scale} is "
            f"{hr.shape[1]}x{hr.shape[0]}x{hr.shape[2]}; check {param('scale')} and the LR folder"
        )
    return lr, np.ascontiguousarray(hr)


# -- model statistics ------------------------------------------------------------------------------
def gflops_per_megapixel(model: SRModel) -> float:
    """Forward FLOPs (2 x MACs, convolutions, linears and attention matmuls) per input megapixel."""
    from torch.utils.flop_counter import FlopCounterMode

    m = model.spec.pad_multiple(model.hparams, model.scale)
    side = -(-_FLOP_PROBE // m) * m
    param = next(model.net.parameters(), None)
    probe = torch.zeros(1, 3, side, side, device=param.device if param is not None else "cpu")
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model.net(probe)
    return counter.get_total_flops() / (side * side) * 1e6 / 1e9


def model_label(model: SRModel, taken: set[str]) -> str:
    """A short unique name for a table row: the bundled name (``teacher-x4``) while it is free, else the file's stem."""
    bundled = bundled_name(model.source)
    if bundled and bundled not in taken:
        return bundled
    base = model.source.stem if model.source is not None else (model.preset or model.arch)
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    return name


def _named_models(models: Sequence[SRModel | str | Path] | Mapping[str, SRModel]) -> dict[str, SRModel]:
    if isinstance(models, Mapping):
        return dict(models)
    named: dict[str, SRModel] = {}
    for m in models:
        model = m if isinstance(m, SRModel) else load_model(m)
        named[model_label(model, set(named) | {BICUBIC})] = model
    return named


# -- the evaluation -------------------------------------------------------------------------------
def evaluate(
    models: Sequence[SRModel | str | Path] | Mapping[str, SRModel],
    data_dir: str | Path | Sequence[str | Path],
    scale: int,
    bicubic: bool = True,
    *,
    device: str | torch.device | None = None,
    tile: int | None = None,
    on_image: Callable[[str, str, str], None] | None = None,
) -> EvalResults:
    """PSNR/SSIM-Y of each model (and the bicubic baseline) on each set, side by side.

    ``models``: SRModels or model files (a mapping gives them names). ``on_image(set, method,
    image)`` is called after every image (progress).
    """
    from .upscale import Upscaler

    named = _named_models(models)
    if not named and not bicubic:
        raise UsageError(f"nothing to evaluate: pass {param('models')} and/or {param('bicubic', True)}")
    for name, model in named.items():
        if model.scale != scale:
            raise UsageError(f"model {name} is x{model.scale} but {param('scale')} is {scale}; evaluate it with {param('scale', model.scale)}")
    sets = find_sets(data_dir, scale, what="data_dir")
    upscalers = {name: Upscaler(m, scale=scale, tile=tile, device=device, allow_resize=False) for name, m in named.items()}
    stats = {name: (m.num_params, gflops_per_megapixel(m)) for name, m in named.items()}
    methods = ([BICUBIC] if bicubic else []) + list(named)

    rows = []
    for eval_set in sets:
        scores: dict[str, list[ImageScore]] = {m: [] for m in methods}
        for pair in eval_set.pairs:
            try:
                lr, hr = load_pair(pair, scale)
            except ImageError as exc:
                raise DataError(f"set {eval_set.name}: {exc}") from None
            for method in methods:
                start = time.perf_counter()
                if method == BICUBIC:
                    sr = matlab_upscale(lr, scale)
                else:
                    out = upscalers[method].upscale(hwc_to_chw_float(lr) / 255.0, name=pair.hr.name)
                    _synchronize(upscalers[method].device)
                    sr = chw_to_hwc_uint8(out * 255.0)
                seconds = time.perf_counter() - start
                scores[method].append(ImageScore(pair.hr.stem, psnr_y(sr, hr, scale), ssim_y(sr, hr, scale), seconds))
                if on_image is not None:
                    on_image(eval_set.name, method, pair.hr.name)
        for method in methods:
            per = scores[method]
            params, gflops = stats.get(method, (None, None))
            rows.append(EvalRow(
                set=eval_set.name, method=method, scale=scale,
                psnr=float(np.mean([s.psnr for s in per])), ssim=float(np.mean([s.ssim for s in per])),
                images=len(per), params=params, gflops_per_mp=gflops,
                seconds_per_image=float(np.mean([s.seconds for s in per])), per_image=per,
            ))
    return EvalResults(scale, rows)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


__all__ = ["EvalResults", "EvalRow", "evaluate", "find_sets", "gflops_per_megapixel", "matlab_downscale", "matlab_upscale"]
