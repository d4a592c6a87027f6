"""Training step time of the real engine (``srdistill.train.train``) with its default settings.

For each preset at x4, batch 16, 48x48 LR patches: ms per step (median of the timed steps, data
loading included), the data time inside it, achieved GFLOP/s (forward + backward FLOPs counted by
``torch.utils.flop_counter``) and the percentage of this machine's measured matmul peak in the same
precision. The peak is measured first, in the same process, so the numbers are comparable.

    python benchmarks/train_step.py                      # all four presets, fp32 and bf16
    python benchmarks/train_step.py --presets edsr-lite --precisions fp32 --steps 5
    python benchmarks/train_step.py --presets edsr-lite --allocators --rounds 3   # allocators side by side
    python benchmarks/train_step.py --presets edsr-lite --profile                  # where the time goes

``--allocators`` runs each preset in fresh processes, interleaved round by round: glibc's defaults
(``SRDISTILL_ALLOCATOR=system``), glibc keeping freed memory (srdistill's default, allocator.py),
and tcmalloc / jemalloc preloaded where installed (``apt-get install libtcmalloc-minimal4
libjemalloc2``); it prints the median ms/step, the ratio to glibc's defaults, page faults per
step and peak RSS. Runs are short on purpose (a few steps each); on a busy machine repeat them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from srdistill.allocator import tune_host_allocator
from srdistill.train import TrainCallback, TrainConfig, train
from srdistill.train.session import build_student
from srdistill.train.machine import default_threads, native_bf16

PRESETS = ("edsr-lite", "edsr-baseline", "rcan-lite", "swinir-s")
SCALE, BATCH, PATCH = 4, 16, 48
# Slow presets on a 2-core CPU get fewer timed steps by default.
DEFAULT_STEPS = {"edsr-lite": 6, "edsr-baseline": 4, "rcan-lite": 2, "swinir-s": 2}


class StepTimes(TrainCallback):
    def __init__(self):
        self.step_ms, self.data_ms = [], []

    def on_step(self, report):
        self.step_ms.append(report.step_ms)
        self.data_ms.append(report.data_ms)

    def on_message(self, text):
        print(f"  note: {text}", file=sys.stderr)


def matmul_peak(dtype: torch.dtype, seconds: float = 1.5) -> float:
    """Best GFLOP/s of square matmuls (torch.mm and F.linear, which may take different paths)."""
    best = 0.0
    for n in (1024, 2048):
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        for op in (torch.mm, torch.nn.functional.linear):
            op(a, b)
            count, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds / 4:
                op(a, b)
                count += 1
            best = max(best, 2 * n**3 * count / (time.perf_counter() - start) / 1e9)
    return best


def step_flops(preset: str) -> float:
    """FLOPs of one training step (forward + backward) at batch 16, 48x48 LR."""
    from torch.utils.flop_counter import FlopCounterMode

    model = build_student(TrainConfig(arch=preset, data="-", steps=1, scale=SCALE))
    x = torch.rand(1, 3, PATCH, PATCH)
    with FlopCounterMode(display=False) as counter:
        model.net(x).abs().mean().backward()
    return counter.get_total_flops() * BATCH


def make_images(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(4):
        small = (rng.random((24, 24, 3)) * 255).astype(np.uint8)
        Image.fromarray(small).resize((256, 256), Image.BICUBIC).save(folder / f"{i}.png")
    return folder


LIBDIR = Path("/usr/lib/x86_64-linux-gnu")
ALLOCATORS = {  # name -> (environment, a library the variant needs)
    "glibc default": ({"SRDISTILL_ALLOCATOR": "system"}, None),
    "glibc kept (srdistill)": ({}, None),
    "tcmalloc": ({"LD_PRELOAD": str(LIBDIR / "libtcmalloc_minimal.so.4")}, LIBDIR / "libtcmalloc_minimal.so.4"),
    "jemalloc": ({"LD_PRELOAD": str(LIBDIR / "libjemalloc.so.2")}, LIBDIR / "libjemalloc.so.2"),
}


def run(preset: str, precision: str, steps: int, warmup: int, images: Path, workdir: Path, channels_last: bool,
        threads: int) -> StepTimes:
    times = StepTimes()
    config = TrainConfig(
        arch=preset, scale=SCALE, data=str(images), steps=warmup + steps, batch_size=BATCH, patch_size=PATCH,
        precision=precision, channels_last=channels_last, run_dir=str(workdir / f"{preset}-{precision}-{channels_last}"),
        checkpoint_every=0, checkpoint_minutes=0, val_every=0, threads=threads,
    )
    train(config, callback=times)
    times.step_ms, times.data_ms = times.step_ms[warmup:], times.data_ms[warmup:]
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=list(PRESETS))
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--steps", type=int, default=0, help="timed steps per run (0: per-preset default)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--nchw", action="store_true", help="also time fp32 without channels_last")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: the engine's default)")
    parser.add_argument("--allocators", action="store_true", help="compare host allocators, in fresh processes")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds for --allocators")
    parser.add_argument("--profile", action="store_true", help="print the operators' share of the step")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    if args.allocators:
        return compare_allocators(args)
    if args.profile:
        return profile(args)

    threads = args.threads or default_threads()
    torch.set_num_threads(threads)
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    print(f"torch {torch.__version__}, {threads} thread(s), native bf16: {native_bf16(torch.device('cpu'))}, "
          f"allocator: {tune_host_allocator()}")
    print(f"matmul peak: fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s")
    print(f"x{SCALE}, batch {BATCH}, {PATCH}x{PATCH} LR patches, Adam, L1; median of timed steps (data loading included)\n")
    header = f"{'preset':<14} {'prec':<5} {'layout':<6} {'GFLOP/step':>10} {'ms/step':>9} {'data ms':>8} {'GFLOP/s':>8} {'% peak':>7}"
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        images = make_images(Path(tmp) / "images")
        for preset in args.presets:
            flops = step_flops(preset)
            steps = args.steps or DEFAULT_STEPS.get(preset, 3)
            variants = [(p, True) for p in args.precisions]
            if args.nchw and "fp32" in args.precisions:
                variants.insert(1, ("fp32", False))
            for precision, channels_last in variants:
                times = run(preset, precision, steps, args.warmup, images, Path(tmp), channels_last, threads)
                ms = statistics.median(times.step_ms)
                rate = flops / (ms / 1e3) / 1e9
                print(f"{preset:<14} {precision:<5} {'NHWC' if channels_last else 'NCHW':<6} {flops / 1e9:>10.1f} {ms:>9.0f} "
                      f"{statistics.median(times.data_ms):>8.1f} {rate:>8.1f} {100 * rate / peaks[precision]:>6.0f}%",
                      flush=True)


def child(args) -> None:
    """One preset and precision in this process; prints a JSON line for compare_allocators."""
    threads = args.threads or default_threads()
    preset, precision = args.presets[0], args.precisions[0]
    steps = args.steps or DEFAULT_STEPS.get(preset, 3)
    with tempfile.TemporaryDirectory() as tmp:
        images = make_images(Path(tmp) / "images")
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        times = run(preset, precision, steps, args.warmup, images, Path(tmp), True, threads)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    print(json.dumps({"ms": statistics.median(times.step_ms), "faults_per_step": faults / (steps + args.warmup),
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "allocator": tune_host_allocator()}))


def compare_allocators(args) -> None:
    variants = {name: env for name, (env, lib) in ALLOCATORS.items() if lib is None or lib.exists()}
    missing = [name for name in ALLOCATORS if name not in variants]
    threads = args.threads or default_threads()
    print(f"torch {torch.__version__}, {threads} thread(s); x{SCALE}, batch {BATCH}, {PATCH}x{PATCH} LR patches; "
          f"{args.rounds} interleaved rounds, fresh process per run" + (f"; not installed: {', '.join(missing)}" if missing else ""))
    header = f"{'preset':<14} {'prec':<5} {'allocator':<24} {'ms/step':>8} {'vs glibc':>9} {'faults/step':>12} {'peak RSS MB':>12}"
    print(header)
    print("-" * len(header))
    base_env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "SRDISTILL_ALLOCATOR")}
    for preset in args.presets:
        for precision in args.precisions:
            found: dict[str, list[dict]] = {name: [] for name in variants}
            for _ in range(args.rounds):
                for name, env in variants.items():
                    command = [sys.executable, __file__, "--child", "--presets", preset, "--precisions", precision,
                               "--threads", str(threads), "--steps", str(args.steps), "--warmup", str(args.warmup)]
                    out = subprocess.run(command, env={**base_env, **env}, capture_output=True, text=True, check=True)
                    found[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
            base = statistics.median(r["ms"] for r in found["glibc default"])
            for name, runs in found.items():
                ms = statistics.median(r["ms"] for r in runs)
                print(f"{preset:<14} {precision:<5} {name:<24} {ms:>8.0f} {base / ms:>8.2f}x "
                      f"{statistics.median(r['faults_per_step'] for r in runs):>12.0f} "
                      f"{max(r['peak_rss_mb'] for r in runs):>12.0f}", flush=True)


def profile(args) -> None:
    """Self time of each operator over the timed steps of the first preset (data included)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    threads = args.threads or default_threads()
    torch.set_num_threads(threads)
    preset, precision = args.presets[0], args.precisions[0]
    steps = args.steps or DEFAULT_STEPS.get(preset, 3)

    class Profiled(StepTimes):
        def __init__(self):
            super().__init__()
            self.prof = torch_profile(activities=[ProfilerActivity.CPU])

        def on_step(self, report):
            super().on_step(report)
            if len(self.step_ms) == args.warmup:
                self.prof.__enter__()

    seen = Profiled()
    with tempfile.TemporaryDirectory() as tmp:
        images = make_images(Path(tmp) / "images")
        config = TrainConfig(
            arch=preset, scale=SCALE, data=str(images), steps=args.warmup + steps, batch_size=BATCH, patch_size=PATCH,
            precision=precision, run_dir=str(Path(tmp) / "run"), checkpoint_every=0, checkpoint_minutes=0, val_every=0,
            threads=threads,
        )
        train(config, callback=seen)
        seen.prof.__exit__(None, None, None)
    rows = sorted(seen.prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in rows)
    print(f"{preset} {precision}, {threads} thread(s), allocator: {tune_host_allocator()}: "
          f"{total / 1e3 / steps:.0f} ms of operator time per step")
    print(f"{'operator':<44} {'% of step':>9} {'ms/step':>8} {'calls/step':>10}")
    for event in rows[:15]:
        print(f"{event.key[:44]:<44} {100 * event.self_cpu_time_total / total:>8.1f}% "
              f"{event.self_cpu_time_total / 1e3 / steps:>8.1f} {event.count / steps:>10.1f}")


if __name__ == "__main__":
    main()
