"""Speed/quality frontier of students distilled from one teacher at one budget.

Quality comes from ``benchmarks/kd_quality.py`` work folders (one per student, the same teacher,
steps, batches and method): PSNR-Y per set, mean over the seeds run. Speed is measured here, for
every student side by side in one process, round by round (a load change on a shared machine hits
all alike): ``srdistill upscale``'s path (:class:`srdistill.upscale.Upscaler`, the file's own
fused network, measured thread count) on one LR image, output megapixels per second, in float32
and, where the CPU has native bf16 (what ``--dtype auto`` picks there), in bfloat16.

    python benchmarks/frontier.py /work/runs/frontier/{edsr-lite,rfdn,span-s,span-m}

A student is on the frontier when no other one is both faster (float32) and better on Set5.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from srdistill.evaluate import gflops_per_megapixel
from srdistill.models import load_model
from srdistill.upscale import Upscaler
from upscale import native_bf16  # benchmarks/upscale.py, next to this script

SETS = ("Set5", "Set14", "McMaster", "held-out")


def quality(work: Path) -> tuple[dict, Path, int]:
    """Mean PSNR per set over the equal-steps runs of one kd_quality folder, one model file, seeds."""
    runs = [json.loads(line) for line in (work / "runs.jsonl").read_text().splitlines() if line.strip()]
    runs = [r for r in runs if r["regime"] == "steps" and r["method"] != "scratch"]
    if not runs:
        raise SystemExit(f"{work}: no distillation runs in runs.jsonl")
    labels = {r["label"] for r in runs}
    if len(labels) != 1:
        raise SystemExit(f"{work}: several methods ({', '.join(sorted(labels))}); give one folder per student and method")
    first = runs[0]
    model_file = work / f"steps-{first['label']}-s{first['seed']}-{first['steps']}" / "model.safetensors"
    means = {s: statistics.mean(r["sets"][s]["psnr"] for r in runs) for s in SETS if all(s in r["sets"] for r in runs)}
    spread = {s: (max(r["sets"][s]["psnr"] for r in runs) - min(r["sets"][s]["psnr"] for r in runs)) / 2 for s in means}
    return {"label": first["label"], "steps": first["steps"], "psnr": means, "spread": spread}, model_file, len(runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("work", nargs="+", type=Path, help="kd_quality work folders, one per student")
    ap.add_argument("--size", type=int, default=256, help="LR side of the timed image")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    dtypes = ["float32"] + (["bfloat16"] if native_bf16() else [])
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {os.cpu_count()} CPU(s), native bf16: {native_bf16()}, load average at start {load:.1f}")
    students = []
    for work in args.work:
        q, model_file, seeds = quality(work)
        model = load_model(model_file)
        ups = {d: Upscaler(model, device="cpu", dtype=d) for d in dtypes}
        students.append({"name": work.name, "arch": model.arch, "params": model.num_params, "seeds": seeds,
                         "gflop_per_mp": gflops_per_megapixel(model), "ups": ups, "times": {d: [] for d in dtypes}, **q})
    x = torch.rand(3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    for s in students:  # warm-up: the thread count is measured on these passes
        for up in s["ups"].values():
            up.upscale(x)
            up.upscale(x)
    for _ in range(args.rounds):
        for s in students:
            for d, up in s["ups"].items():
                start = time.perf_counter()
                up.upscale(x)
                s["times"][d].append(time.perf_counter() - start)
    out_mp = args.size * args.size * students[0]["ups"]["float32"].scale ** 2 / 1e6
    for s in students:
        s["mp_s"] = {d: out_mp / min(t) for d, t in s["times"].items()}
    for s in students:
        s["frontier"] = not any(o is not s and o["mp_s"]["float32"] >= s["mp_s"]["float32"] and o["psnr"]["Set5"] > s["psnr"]["Set5"]
                                for o in students)

    sets = [name for name in SETS if all(name in s["psnr"] for s in students)]
    head = ["student", "arch", "params", "GFLOP per LR MP"] + [f"{name} PSNR" for name in sets] + [f"out MP/s {d}" for d in dtypes] + ["frontier"]
    print(f"\n{students[0]['label']}, {students[0]['steps']} steps, seeds per student: "
          + ", ".join(f"{s['name']} {s['seeds']}" for s in students) + f"; speed on a {args.size}x{args.size} LR image\n")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for s in sorted(students, key=lambda s: -s["mp_s"]["float32"]):
        cells = [s["name"], s["arch"], f"{s['params'] / 1e3:.0f} K", f"{s['gflop_per_mp']:.1f}"]
        cells += [f"{s['psnr'][name]:.3f}" + (f" ± {s['spread'][name]:.3f}" if s["seeds"] > 1 else "") for name in sets]
        cells += [f"{s['mp_s'][d]:.2f}" for d in dtypes] + ["yes" if s["frontier"] else "-"]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
