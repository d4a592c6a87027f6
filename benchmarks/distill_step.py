"""Milliseconds per training step of each distillation method, and where the time goes.

    python benchmarks/distill_step.py                  # all pairs, batch 16, 48x48 LR patches
    python benchmarks/distill_step.py --pairs edsr --batch 8 --steps 4

A step is what the engine does: the objective's loss terms, backward, an Adam step. Teacher
signals come from the real per-image cache (``--teacher-cache``-style, built on synthetic
images before timing) or from a live teacher forward. MiPKD is timed with its Block Prior Mixer
off, on every step through the teacher and through the student, so the cost of each part and
of any ``bpm_every`` can be read off:

    teacher forward  = logits(live) - logits(cache)
    mixers (FPM)     = mipkd(bpm off) - logits(cache)
    routed teacher   = mipkd(route=teacher, every step) - mipkd(bpm off)   (amortised: / bpm_every)
    routed student   = mipkd(route=student, every step) - mipkd(bpm off)

Sizes: the issue's pairs; RCAN and SwinIR at reduced widths/depths so a CPU finishes (noted).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from srdistill.data.dataset import ImageSet, PatchDataset, TrainImage, collate_patches
from srdistill.data.folders import ImagePair
from srdistill.distill import DistillContext, match_boundaries
from srdistill.train.objective import TrainingData
from srdistill.models import build_model
from srdistill.distill.registry import get_method
from srdistill.train.objective import Batch

SCALE = 4
SWIN_T = {"depths": (2,) * 6, "num_heads": (6,) * 6, "embed_dim": 60, "img_size": 48}
SWIN_S = {"depths": (2,) * 4, "num_heads": (6,) * 4, "embed_dim": 30, "img_size": 48}
PAIRS = {
    "edsr": ("edsr-baseline", {"bicubic_skip": True}, "edsr-lite", {"bicubic_skip": True}, ""),
    "rcan": ("rcan", {"n_feats": 32, "n_resgroups": 5, "n_resblocks": 10, "reduction": 8},
             "rcan-lite", {"n_feats": 32, "n_resgroups": 5, "n_resblocks": 3, "reduction": 8},
             "RCAN at 32 ch / 5 groups (teacher 10 RCABs per group, student 3)"),
    "swinir": ("swinir-m", SWIN_T, "swinir-s", SWIN_S,
               "SwinIR-M 60 ch x 6 RSTB of depth 2 -> SwinIR-S 30 ch x 4 RSTB of depth 2"),
    "cross": ("swinir-s", SWIN_T, "edsr-lite", {"bicubic_skip": True}, "SwinIR teacher as in the swinir pair"),
}
CONFIGS = [
    ("scratch", "scratch", {}, "cache"),
    ("logits (live teacher)", "logits", {}, "off"),
    ("logits", "logits", {}, "memory"),
    ("fitnet", "fitnet", {}, "memory"),
    ("fakd", "fakd", {}, "memory"),
    ("mipkd (default)", "mipkd", {}, "memory"),
    ("mipkd bpm off", "mipkd", {"bpm_every": 0}, "memory"),
    ("mipkd route=teacher every step", "mipkd", {"bpm_every": 1, "route": "teacher"}, "memory"),
    ("mipkd route=student every step", "mipkd", {"bpm_every": 1, "route": "student"}, "memory"),
    ("mipkd (paper: latent 64, conv3, bpm every step)", "mipkd", {"latent": 64, "encoder": "conv3", "bpm_every": 1, "l_feat": 1.0}, "memory"),
]


def synthetic_images(count: int, lr_size: int) -> ImageSet:
    rng = np.random.default_rng(0)
    images = []
    for i in range(count):
        lr = rng.integers(0, 256, (lr_size, lr_size, 3), dtype=np.uint8)
        hr = rng.integers(0, 256, (lr_size * SCALE, lr_size * SCALE, 3), dtype=np.uint8)
        images.append(TrainImage(f"im{i}", hr.shape[:2], hr, lr))
    return ImageSet([ImagePair(Path(f"im{i}.png"), None) for i in range(count)], images, SCALE, 1.0, True)


def batch_at(dataset: PatchDataset, start: int, n: int) -> Batch:
    raw = collate_patches([dataset[i] for i in range(start, start + n)])
    fmt = torch.channels_last
    return Batch(raw["lr"].float().div(255).contiguous(memory_format=fmt), raw["hr"].float().div(255).contiguous(memory_format=fmt),
                 raw["index"], raw["image"])


def time_config(pair, method: str, options: dict, cache: str, args, dataset) -> dict:
    t_name, t_opts, s_name, s_opts, _ = PAIRS[pair]
    torch.manual_seed(0)
    teacher = build_model(t_name, SCALE, t_opts)
    teacher.net.eval().requires_grad_(False).to(memory_format=torch.channels_last)
    student = build_model(s_name, SCALE, s_opts)
    student.net.train().to(memory_format=torch.channels_last)
    spec = get_method(method)
    found = match_boundaries(teacher, student) if spec.uses_features else ()
    obj = spec.create(DistillContext(teacher, student, found, teacher_cache=cache if cache != "cache" else "auto"), options)
    cache_s = 0.0
    if spec.uses_teacher and cache == "memory":
        start = time.perf_counter()
        obj.prepare(TrainingData(dataset, torch.device("cpu"), nullcontext))
        cache_s = time.perf_counter() - start
    extras = torch.nn.ModuleDict(obj.modules())
    params = [p for p in list(student.net.parameters()) + list(extras.parameters()) if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-4)
    times = []
    for step in range(args.warmup + args.steps):
        b = batch_at(dataset, step * args.batch, args.batch)
        start = time.perf_counter()
        terms = obj.losses(b, student.net)
        total = sum(obj.weights.get(k, 1.0) * v for k, v in terms.items())
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    # FLOPs of one more step (forward + backward): a load-independent account of the cost.
    from torch.utils.flop_counter import FlopCounterMode

    b = batch_at(dataset, (args.warmup + args.steps) * args.batch, args.batch)
    with FlopCounterMode(display=False) as counter:
        terms = obj.losses(b, student.net)
        sum(obj.weights.get(k, 1.0) * v for k, v in terms.items()).backward()
    mixer_params = sum(p.numel() for p in extras.parameters())
    return {"ms": 1e3 * statistics.median(times), "spread_ms": 1e3 * (max(times) - min(times)),
            "gflop": counter.get_total_flops() / 1e9,
            "cache_s_per_mp": cache_s / max(1e-9, args.images * args.lr_size**2 / 1e6) if cache_s else None,
            "mixer_params": mixer_params, "signal": obj.signals.kind if obj.signals is not None else "-"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", default="edsr,rcan,swinir,cross")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--patch", type=int, default=48)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--lr-size", type=int, default=96, help="side of the synthetic LR training images")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--configs", default="", help="comma-separated config labels to run (default: all)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dataset = PatchDataset(synthetic_images(args.images, args.lr_size), patch_size=args.patch, seed=0)
    results = {}
    wanted = {c.strip() for c in args.configs.split(",") if c.strip()}
    for pair in args.pairs.split(","):
        rows = {}
        for label, method, options, cache in CONFIGS:
            if wanted and label not in wanted:
                continue
            rows[label] = time_config(pair, method, options, cache, args, dataset)
            print(f"{pair:7s} {label:48s} {rows[label]['ms']:8.0f} ms {rows[label]['gflop']:8.1f} GFLOP", file=sys.stderr, flush=True)
        results[pair] = rows
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"batch {args.batch} x {args.patch}x{args.patch} LR patches, x{SCALE}, {torch.get_num_threads()} threads, "
          f"median of {args.steps} steps after {args.warmup} warm-up\n")
    for pair, rows in results.items():
        t_name, _, s_name, _, note = PAIRS[pair]
        print(f"### {t_name} -> {s_name}" + (f" ({note})" if note else ""))
        base = rows.get("logits", {}).get("ms")
        scratch = rows.get("scratch", {}).get("ms")
        base_f = rows.get("logits", {}).get("gflop")
        print("| config | ms/step | x scratch | x logits (cached) | GFLOP/step | x logits (GFLOP) | mixer params |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for label, r in rows.items():
            xs = f"{r['ms'] / scratch:.2f}" if scratch else "-"
            xl = f"{r['ms'] / base:.2f}" if base else "-"
            xf = f"{r['gflop'] / base_f:.2f}" if base_f else "-"
            print(f"| {label} | {r['ms']:.0f} | {xs} | {xl} | {r['gflop']:.1f} | {xf} | {r['mixer_params']:,} |")
        get = lambda k: rows.get(k, {}).get("ms")  # noqa: E731
        parts = []
        if get("logits (live teacher)") and base:
            parts.append(f"teacher forward {get('logits (live teacher)') - base:.0f} ms")
        if get("mipkd bpm off") and base:
            parts.append(f"mixers {get('mipkd bpm off') - base:.0f} ms")
        for route in ("teacher", "student"):
            key = f"mipkd route={route} every step"
            if get(key) and get("mipkd bpm off"):
                parts.append(f"routed {route} pass {get(key) - get('mipkd bpm off'):.0f} ms")
        if parts:
            print("\nwhere the time goes (per step): " + "; ".join(parts) + "\n")


if __name__ == "__main__":
    main()
