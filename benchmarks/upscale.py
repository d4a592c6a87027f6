"""Upscale speed and memory: srdistill's tiled inference against a naive full-image PyTorch loop.

For ``edsr-lite``, ``edsr-baseline``, ``swinir-s`` and the SPAN-style ``span-s``/``span-m`` (fused, as
deployed) at x4 (random weights; speed does not depend on them), for each backend (PyTorch, and
ONNX Runtime where ``srdistill[onnx]`` is installed), side by side in one run: output megapixels per second, achieved GFLOP/s (forward FLOPs counted by
``torch.utils.flop_counter``) against this machine's matmul peak measured first in the same
process, and the ratio against a naive loop (``net(x)`` on the whole image, NCHW float32, default
threads, ``torch.no_grad``). Naive and tiled runs alternate and the best of each is kept, so a
load change on a shared machine hits both. Then the memory check: a 12-megapixel photo upscaled
x4 to PNG by ``upscale_file`` in a fresh subprocess, its peak RSS.

    python benchmarks/upscale.py                          # the table + the 12 MP check (tiny model)
    python benchmarks/upscale.py --rss-preset edsr-lite   # 12 MP check with a real preset (minutes)
    python benchmarks/upscale.py --write                  # also record in benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

import srdistill
from srdistill.evaluate import gflops_per_megapixel
from srdistill.upscale import Upscaler, upscale_file

PRESETS = ("edsr-lite", "span-s", "span-m", "edsr-baseline", "swinir-s")
SCALE = 4
# LR side per preset: big enough for several tiles where the memory policy makes them, small
# enough for a 2-core CPU (swinir-s runs at a few GFLOP/s there).
DEFAULT_SIZE = {"edsr-lite": 256, "rfdn": 256, "span-s": 256, "span-m": 192, "edsr-baseline": 192, "swinir-s": 64}
TINY = {"n_feats": 8, "n_resblocks": 1}
RESULTS = Path(__file__).with_name("RESULTS.md")


def matmul_peak(dtype: torch.dtype, seconds: float = 1.0) -> float:
    """Best GFLOP/s of a large square torch.mm."""
    n = 2048
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)
    best = 0.0
    for _ in range(3):
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 3:
            torch.mm(a, b)
            count += 1
        best = max(best, 2 * n**3 * count / (time.perf_counter() - start) / 1e9)
    return best


def native_bf16() -> bool:
    cpu = getattr(torch, "cpu", None)
    checks = [getattr(cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(check() for check in checks if check is not None)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def onnxruntime_available() -> bool:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def bench_preset(preset: str, size: int, repeats: int, dtypes: list[str], backends: list[str]) -> list[dict]:
    torch.manual_seed(0)
    # Re-parameterisable students are timed in the form srdistill writes and deploys: fused.
    model = srdistill.build_model(preset, SCALE).fuse()
    net = model.net.eval()
    x = torch.rand(1, 3, size, size)
    gflop = gflops_per_megapixel(model) * size * size / 1e6
    default_threads = torch.get_num_threads()

    def naive():
        torch.set_num_threads(default_threads)
        with torch.no_grad():
            net(x)

    rows = []
    # Measured thread count (the default), then the same pipeline pinned to torch's default count:
    # separates what channels_last/tiling give from what the thread choice gives.
    variants = [("torch", dtype, None) for dtype in dtypes] + [("torch", "float32", default_threads)]
    variants += [(backend, "float32", None) for backend in backends if backend != "torch"]
    for backend, dtype, threads in variants:
        try:
            up = Upscaler(model, device="cpu", dtype=dtype, threads=threads, backend=backend)
        except srdistill.SrdistillError as exc:  # e.g. a graph ONNX Runtime cannot run at every size
            print(f"  {preset} {backend}: skipped ({exc})", flush=True)
            continue
        tile = up.tile_for(size, size)
        for _ in range(2 if size > tile else 3):  # warm-up; the thread count is measured on these passes
            up.upscale(x[0])
        naive()
        best_naive, best_ours = float("inf"), float("inf")
        for _ in range(repeats):
            best_naive = min(best_naive, timed(naive))
            best_ours = min(best_ours, timed(lambda: up.upscale(x[0])))
        tuner = up.runner.threads
        chosen = tuner.chosen if tuner is not None else up.runner.thread_count
        rows.append({
            "preset": preset, "backend": backend, "dtype": dtype, "size": size, "gflop": gflop, "naive_s": best_naive,
            "ours_s": best_ours, "tile": tile, "threads": chosen, "threads_how": "fixed" if threads else "measured",
            "mp_per_s": size * size * SCALE * SCALE / 1e6 / best_ours, "gflops": gflop / best_ours,
        })
    torch.set_num_threads(default_threads)
    return rows


# -- memory: a 12-megapixel photo ------------------------------------------------------------------
def _rss_child(preset: str) -> None:
    """Runs in a fresh process: upscale a 4000x3000 PNG x4 to PNG and report the peak RSS."""
    from PIL import Image

    peaks: dict[str, float] = {}
    phase = ["upscale"]

    def sample():
        page = os.sysconf("SC_PAGE_SIZE")
        while True:
            with open("/proc/self/statm") as fh:
                mb = int(fh.read().split()[1]) * page / 2**20
            peaks[phase[0]] = max(peaks.get(phase[0], 0.0), mb)
            time.sleep(0.05)

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "photo.png"
        rng = np.random.default_rng(0)
        small = (rng.random((300, 400, 3)) * 255).astype(np.uint8)
        Image.fromarray(small).resize((4000, 3000), Image.BICUBIC).save(src)
        del small
        model = srdistill.build_model("edsr", SCALE, TINY) if preset == "edsr-tiny" else srdistill.build_model(preset, SCALE)
        up = Upscaler(model, device="cpu")

        import srdistill.data.imageio as imageio

        encode = imageio._encode

        def encode_marked(*args, **kwargs):
            phase[0] = "encode"
            return encode(*args, **kwargs)

        imageio._encode = encode_marked
        threading.Thread(target=sample, daemon=True).start()
        start = time.perf_counter()
        result = upscale_file(up, src, Path(tmp) / "photo_x4.png")
        seconds = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"RSS {rss:.0f} {peaks.get('upscale', 0):.0f} {peaks.get('encode', 0):.0f} {seconds:.1f} {result.tiles}")


def measure_rss(preset: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--_rss-child", preset], capture_output=True, text=True, check=True)
    match = re.search(r"RSS (\S+) (\S+) (\S+) (\S+) (\S+)", out.stdout)
    rss, upscale_mb, encode_mb, seconds, tiles = match.groups()
    return {"preset": preset, "rss_mb": float(rss), "upscale_mb": float(upscale_mb), "encode_mb": float(encode_mb),
            "seconds": float(seconds), "tiles": int(tiles)}


# -- report ---------------------------------------------------------------------------------------
def report(rows: list[dict], peaks: dict, rss: dict | None, header: str) -> str:
    lines = [header, "", f"matmul peak (best seen in the run): fp32 {peaks['float32']:.0f} GFLOP/s, bf16 {peaks['bfloat16']:.0f} GFLOP/s", "",
             "| preset | backend | dtype | LR size | GFLOP | naive s | srdistill s | speed-up | out MP/s | GFLOP/s | % peak | tile | threads |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        pct = 100 * r["gflops"] / peaks[r["dtype"]]
        lines.append(
            f"| {r['preset']} | {r['backend']} | {r['dtype']} | {r['size']}x{r['size']} | {r['gflop']:.1f} | {r['naive_s']:.2f} | "
            f"{r['ours_s']:.2f} | {r['naive_s'] / r['ours_s']:.2f}x | {r['mp_per_s']:.3f} | {r['gflops']:.1f} | "
            f"{pct:.0f}% | {r['tile']} | {r['threads']} ({r['threads_how']}) |"
        )
    measured = [r for r in rows if r["threads_how"] == "measured" and r["dtype"] == "float32"]
    lines += ["", "Goals (float32, measured threads): "
              + "; ".join(f"{r['preset']} {r['backend']} {r['naive_s'] / r['ours_s']:.2f}x naive ({'met' if r['naive_s'] >= 1.5 * r['ours_s'] else 'NOT met'}), "
                          f"{100 * r['gflops'] / peaks['float32']:.0f}% of peak ({'met' if r['gflops'] >= 0.6 * peaks['float32'] else 'NOT met'})"
                          for r in measured)]
    if rss:
        lines += ["", f"12-megapixel photo (4000x3000 PNG) x4 to PNG with {rss['preset']}: peak RSS "
                      f"{rss['rss_mb']:.0f} MiB (upscaling: {rss['upscale_mb']:.0f} MiB, PNG encoding: "
                      f"{rss['encode_mb']:.0f} MiB), {rss['seconds']:.0f} s, {rss['tiles']} tiles; goal 2 GiB "
                      f"{'met' if rss['rss_mb'] <= 2048 else 'NOT met'}"]
    return "\n".join(lines)


def write_results(text: str) -> None:
    """Replace (or add) the ``## upscale`` section of RESULTS.md, keeping the others."""
    body = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    section = f"## upscale\n\n{text}\n"
    pattern = re.compile(r"^## upscale\n.*?(?=^## |\Z)", re.S | re.M)
    body = pattern.sub(lambda _: section + "\n", body) if pattern.search(body) else body.rstrip("\n") + "\n\n" + section
    RESULTS.write_text(body.rstrip("\n") + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=list(PRESETS))
    parser.add_argument("--size", type=int, default=0, help="LR side for every preset (0: per-preset default)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--bf16", action="store_true", help="also time bfloat16 (slow without native bf16)")
    parser.add_argument("--backends", nargs="+", default=None,
                        help="torch and/or onnxruntime (default: both where srdistill[onnx] is installed)")
    parser.add_argument("--rss-preset", default="edsr-tiny", help="model for the 12 MP memory check ('none' to skip)")
    parser.add_argument("--write", action="store_true", help="record the table in benchmarks/RESULTS.md")
    parser.add_argument("--_rss-child", dest="rss_child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        _rss_child(args.rss_child)
        return

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    header = (f"torch {torch.__version__}, {os.cpu_count()} CPU(s), {torch.get_num_threads()} default thread(s), "
              f"native bf16: {native_bf16()}, load average at start {load:.1f}")
    print(header, flush=True)
    peaks = {"float32": matmul_peak(torch.float32), "bfloat16": matmul_peak(torch.bfloat16)}
    print(f"matmul peak: fp32 {peaks['float32']:.0f} GFLOP/s, bf16 {peaks['bfloat16']:.0f} GFLOP/s", flush=True)
    dtypes = ["float32"] + (["bfloat16"] if args.bf16 or native_bf16() else [])
    backends = args.backends or (["torch", "onnxruntime"] if onnxruntime_available() else ["torch"])
    rows = []
    for preset in args.presets:
        # On a shared machine the peak measured once can be taken while others load it: it is
        # measured again before each preset and the best seen is the reference for every row.
        peaks["float32"] = max(peaks["float32"], matmul_peak(torch.float32))
        size = args.size or DEFAULT_SIZE.get(preset, 128)
        for row in bench_preset(preset, size, args.repeats, dtypes, backends):
            rows.append(row)
            print(f"  {preset} {row['backend']} {row['dtype']} threads {row['threads']} ({row['threads_how']}): naive {row['naive_s']:.2f} s, "
                  f"srdistill {row['ours_s']:.2f} s ({row['naive_s'] / row['ours_s']:.2f}x), {row['gflops']:.1f} GFLOP/s",
                  flush=True)
    rss = None if args.rss_preset == "none" else measure_rss(args.rss_preset)
    text = report(rows, peaks, rss, header)
    print("\n" + text)
    if args.write:
        write_results(text)


if __name__ == "__main__":
    main()
