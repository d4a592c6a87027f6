"""The run folder's records: ``metrics.jsonl`` (one JSON object per line) and ``curve.png``.

``metrics.jsonl`` is an append-only log (flushed per record, so a killed run keeps what it
logged); on resume, records after the checkpoint's step are dropped by an atomic rewrite, so the
log reads as one continuous run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..io.atomic import atomic_write


class MetricsLog:
    def __init__(self, path: Path):
        self.path = path
        self._fh = None

    def read(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        records = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
        return records

    def truncate_after(self, step: int) -> None:
        records = [r for r in self.read() if int(r.get("step", 0)) <= step]
        with atomic_write(self.path, overwrite=True) as tmp:
            tmp.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")

    def append(self, record: dict[str, Any]) -> None:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open for the run
        self._fh.write(json.dumps(record) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


# -- the training curve, drawn with Pillow ----------------------------------------------------------
_W, _H, _MARGIN_L, _MARGIN_R, _MARGIN_T, _GAP = 760, 560, 70, 20, 30, 50


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step) + 1)]


def _panel(draw, box, xs: Sequence[float], ys: Sequence[float], title: str, colour, log_y: bool, x_range) -> None:
    left, top, right, bottom = box
    draw.rectangle(box, outline=(120, 120, 120))
    draw.text((left, top - 16), title, fill=(0, 0, 0))
    if not xs:
        draw.text((left + 10, top + 10), "no data yet", fill=(120, 120, 120))
        return
    vals = [math.log10(y) if log_y else y for y in ys]
    lo, hi = min(vals), max(vals)
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    x_lo, x_hi = x_range
    x_hi = max(x_hi, x_lo + 1)

    def px(x, v):
        return (left + (x - x_lo) / (x_hi - x_lo) * (right - left), bottom - (v - lo) / (hi - lo) * (bottom - top))

    for tick in _ticks(lo, hi):
        _, y = px(x_lo, tick)
        draw.line((left, y, left + 4, y), fill=(120, 120, 120))
        label = f"{10 ** tick:.3g}" if log_y else f"{tick:.4g}"
        draw.text((4, y - 6), label, fill=(60, 60, 60))
    for tick in _ticks(x_lo, x_hi):
        x, _ = px(tick, lo)
        draw.line((x, bottom, x, bottom - 4), fill=(120, 120, 120))
        draw.text((x - 10, bottom + 4), f"{tick:g}", fill=(60, 60, 60))
    points = [px(x, v) for x, v in zip(xs, vals)]
    if len(points) == 1:
        x, y = points[0]
        draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=colour)
    else:
        draw.line(points, fill=colour, width=2)


def draw_curve(records: Sequence[dict[str, Any]], path: Path, title: str) -> None:
    """Loss (log scale) and validation PSNR against step, as a PNG."""
    from PIL import Image, ImageDraw

    train = [r for r in records if "loss" in r and r["loss"] is not None and r["loss"] > 0 and math.isfinite(r["loss"])]
    val = [r for r in records if "val_psnr_y" in r and math.isfinite(r["val_psnr_y"])]
    steps = [r["step"] for r in train + val] or [0]
    x_range = (0, max(steps))
    image = Image.new("RGB", (_W, _H), "white")
    draw = ImageDraw.Draw(image)
    draw.text((_MARGIN_L, 6), title, fill=(0, 0, 0))
    panel_h = (_H - _MARGIN_T - 2 * _GAP) // 2
    top1 = _MARGIN_T + 20
    box1 = (_MARGIN_L, top1, _W - _MARGIN_R, top1 + panel_h)
    top2 = box1[3] + _GAP
    box2 = (_MARGIN_L, top2, _W - _MARGIN_R, top2 + panel_h)
    _panel(draw, box1, [r["step"] for r in train], [r["loss"] for r in train], "training loss (log)", (200, 60, 40), True, x_range)
    _panel(draw, box2, [r["step"] for r in val], [r["val_psnr_y"] for r in val], "validation PSNR-Y (dB)", (30, 90, 200), False, x_range)
    with atomic_write(path, overwrite=True) as tmp:
        image.save(tmp, format="PNG")


class LossWindow:
    """Averages of the steps since the last ``metrics.jsonl`` record."""

    def __init__(self, weights: dict[str, float]):
        self.weights = weights
        self._reset(0.0)

    def _reset(self, now: float) -> None:
        self.sums: dict[str, float] = {}
        self.updates = self.skipped = 0
        self.data_s = 0.0
        self.start = now

    def add(self, terms: dict[str, float], skipped: bool, data_s: float) -> None:
        if skipped:
            self.skipped += 1
        else:
            self.updates += 1
            for name, value in terms.items():
                self.sums[name] = self.sums.get(name, 0.0) + value
        self.data_s += data_s

    def record(self, *, step: int, lr: float, grad_norm: float, samples_per_step: int, elapsed: float, now: float) -> dict[str, Any]:
        steps, span, n = self.updates + self.skipped, now - self.start, self.updates
        out = {
            "step": step,
            "loss": sum(self.weights.get(k, 1.0) * v for k, v in self.sums.items()) / n if n else None,
            **{f"loss_{k}": v / n for k, v in self.sums.items()},
            "lr": lr,
            "grad_norm": grad_norm if math.isfinite(grad_norm) else None,
            "steps_per_s": steps / span if span > 0 else None,
            "samples_per_s": steps * samples_per_step / span if span > 0 else None,
            "data_ms": self.data_s / max(1, steps) * 1e3,
            "skipped": self.skipped,
            "elapsed": round(elapsed, 3),
        }
        self._reset(now)
        return out
