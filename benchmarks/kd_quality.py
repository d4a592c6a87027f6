"""Does distillation pay? Each method trains the same student from the same initialisation and data
order (one run per seed), then PSNR/SSIM-Y on the validation sets, mean and spread over seeds,
side by side with the teacher and bicubic. Two comparisons:

* equal steps: every method gets ``--steps``;
* equal wall-clock (``--equal-time``): every method gets the time the reference method
  (``--time-reference``, default mipkd) needs for ``--steps``, converted to steps with each
  method's seconds per step measured side by side in one process (``WORK/step_costs.json``), once
  with the teacher-cache build counted and once with the cache reused from an earlier run. Step
  counts, not time limits: on a shared machine a time limit measures the neighbours' load.

    python benchmarks/kd_quality.py --teacher teacher.safetensors --student edsr \\
        --student-opt n_feats=32 --student-opt n_resblocks=4 --student-opt bicubic_skip=true \\
        --data ../shared/data/train-photos --hr-downscale 2 --steps 300 --seeds 0,1,2 \\
        --val ../shared/data/benchmarks --work /tmp/kdq --equal-time

Variants of a method: ``--variant 'lite-every4=mipkd-lite:K=4,bpm_every=4'`` (``K`` is the boundary
count, ``cache=off`` runs the teacher live on every batch (the live-teacher rows), the rest are
method options; ``zoom_in``, ``zoom_out``, ``consistency``, ``unlabeled`` and ``unlabeled_ratio``
are teacher-labelled samples, passed to ``distill``). Teacher signals are cached once in
``WORK/cache`` and reused by every run (the first run's cache build time is recorded, so the
equal-time budget can count it or not).
Runs are recorded one JSON line each in ``WORK/runs.jsonl`` and skipped when run again, so an
interrupted benchmark continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

from srdistill.distill.api import distill
from srdistill.evaluate import evaluate
from srdistill.models import load_model
from srdistill.train.progress import TrainCallback

# mipkd is the paper's method, mipkd-lite the cheap variant (docs/distilling.md).
DEFAULT_METHODS = ("scratch", "logits", "fitnet", "fakd", "mipkd-lite", "mipkd")
# Variant keys that are distill() arguments rather than method options (docs/distilling.md,
# "Distilling on your own images"): --variant 'zoom=logits:zoom_in=0.25,zoom_out=0.25,consistency=0.5'.
LABELLED_KEYS = ("zoom_in", "zoom_out", "consistency", "unlabeled", "unlabeled_ratio")


class Quiet(TrainCallback):
    pass


def parse_variants(methods: list[str], variants: list[str]) -> dict[str, tuple[str, dict[str, str]]]:
    out = {m: (m, {}) for m in methods}
    for item in variants:
        label, _, rest = item.partition("=")
        method, _, opts = rest.partition(":")
        options = dict(kv.split("=", 1) for kv in opts.split(",") if kv)
        out[label.strip()] = (method.strip(), options)
    return out


def load_runs(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_one(args, label: str, method: str, options: dict, seed: int, steps: int, regime: str) -> dict:
    run_dir = Path(args.work) / f"{regime}-{label}-s{seed}-{steps}"
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)
    options = dict(options)
    k = int(options.pop("K")) if "K" in options else None
    # ``cache=off`` in a variant runs the teacher live on every batch (the live-teacher rows).
    cache = options.pop("cache", None)
    # Teacher-labelled samples in a variant: zoom_in, zoom_out, consistency, unlabeled, unlabeled_ratio.
    labelled = {key: options.pop(key) for key in LABELLED_KEYS if key in options}
    labelled = {key: value if key == "unlabeled" else float(value) for key, value in labelled.items()}
    started = time.perf_counter()
    result = distill(
        args.teacher, args.student, args.data, method=method, method_options=options, k=k,
        teacher_cache=cache, teacher_cache_dir=args.teacher_cache_dir,
        student_options=dict(kv.split("=", 1) for kv in args.student_opt),
        callback=Quiet(), steps=steps, seed=seed, batch_size=args.batch_size, patch_size=args.patch_size,
        hr_downscale=args.hr_downscale, lr=args.lr, run_dir=str(run_dir), val_every=0, checkpoint_every=0,
        log_every=10, threads=args.threads or 0, **labelled,
    )
    wall = time.perf_counter() - started
    student = load_model(result.output)
    objective = student.metadata["provenance"].get("objective", {})
    scores = evaluate({label: student}, args.val, student.scale, bicubic=False)
    return {
        "regime": regime, "label": label, "method": method, "options": {**options, **labelled}, "seed": seed,
        "steps": result.steps,
        "train_seconds": result.elapsed, "cache_seconds": objective.get("teacher_cache_seconds") or 0.0,
        "wall_seconds": wall, "signal": objective.get("teacher_signal", "-"),
        "cache_source": objective.get("teacher_cache_source"),
        "sets": {r.set: {"psnr": r.psnr, "ssim": r.ssim} for r in scores.rows},
    }


def measure_step_costs(args, plan: dict, rounds: int = 3, steps: int = 16) -> dict[str, float]:
    """Seconds per training step of each label, timed in this process, interleaved round by round
    (so a busy machine slows every method alike), on batches of the run's shape with teacher
    signals from a per-image cache. The mean over steps includes every ``bpm_every``-th routed pass."""
    from contextlib import nullcontext

    import numpy as np
    import torch

    from srdistill.data.dataset import ImageSet, PatchDataset, TrainImage, collate_patches
    from srdistill.data.folders import ImagePair
    from srdistill.distill.api import plan_distillation
    from srdistill.train.objective import Batch, TrainingData

    if args.threads:
        torch.set_num_threads(args.threads)
    teacher = load_model(args.teacher)
    scale, side = teacher.scale, args.patch_size * 2
    rng = np.random.default_rng(0)
    images = [TrainImage(f"{i}", (side * scale, side * scale), rng.integers(0, 256, (side * scale, side * scale, 3), dtype=np.uint8),
                         rng.integers(0, 256, (side, side, 3), dtype=np.uint8)) for i in range(4)]
    dataset = PatchDataset(ImageSet([ImagePair(Path(f"{i}.png"), None) for i in range(4)], images, scale, 1.0, True),
                           patch_size=args.patch_size, seed=0)
    runners = {}
    for label, (method, options) in plan.items():
        options = dict(options)
        k = int(options.pop("K")) if "K" in options else None
        options.pop("cache", None)  # step costs are timed with the per-image cache
        p = plan_distillation(teacher, args.student, method=method, method_options=options, k=k,
                              student_options=dict(kv.split("=", 1) for kv in args.student_opt), teacher_cache="memory")
        p.student.net.train().to(memory_format=torch.channels_last)
        p.teacher.net.to(memory_format=torch.channels_last)
        p.objective.prepare(TrainingData(dataset, torch.device("cpu"), nullcontext))
        extras = torch.nn.ModuleDict(p.objective.modules())
        params = [q for q in list(p.student.net.parameters()) + list(extras.parameters()) if q.requires_grad]
        runners[label] = (p, torch.optim.Adam(params, lr=1e-4), [])
    position = 0
    for r in range(rounds + 1):
        for label, (p, opt, times) in runners.items():
            for _ in range(steps if r else 2):  # round 0 warms up
                raw = collate_patches([dataset[i] for i in range(position, position + args.batch_size)])
                position += args.batch_size
                batch = Batch(raw["lr"].float().div(255).contiguous(memory_format=torch.channels_last),
                              raw["hr"].float().div(255).contiguous(memory_format=torch.channels_last), raw["index"], raw["image"])
                start = time.perf_counter()
                terms = p.objective.losses(batch, p.student.net)
                opt.zero_grad(set_to_none=True)
                sum(p.objective.weights.get(n, 1.0) * v for n, v in terms.items()).backward()
                opt.step()
                if r:
                    times.append(time.perf_counter() - start)
    return {label: statistics.mean(times) for label, (_, _, times) in runners.items()}


def summarise(runs: list[dict], regime: str, refs: dict) -> str:
    rows = [r for r in runs if r["regime"] == regime]
    if not rows:
        return ""
    sets = sorted({s for r in rows for s in r["sets"]})
    labels = list(dict.fromkeys(r["label"] for r in rows))
    lines = [
        "| method | steps | s/step | cache s | " + " | ".join(f"{s} PSNR" for s in sets) + " | " + " | ".join(f"{s} SSIM" for s in sets) + " |",
        "|---|---:|---:|---:|" + "---:|" * (2 * len(sets)),
    ]
    for name, ref in refs.items():
        lines.append(f"| {name} | - | - | - | " + " | ".join(f"{ref[s]['psnr']:.3f}" for s in sets) + " | "
                     + " | ".join(f"{ref[s]['ssim']:.4f}" for s in sets) + " |")
    for label in labels:
        mine = [r for r in rows if r["label"] == label]

        def cell(key, s):
            vals = [r["sets"][s][key] for r in mine]
            spread = statistics.pstdev(vals) if len(vals) > 1 else 0.0
            return f"{statistics.mean(vals):.3f} ± {spread:.3f}" if key == "psnr" else f"{statistics.mean(vals):.4f}"

        steps = sorted({r["steps"] for r in mine})
        per_step = statistics.mean(r["train_seconds"] / r["steps"] for r in mine)
        cache = statistics.mean(r["cache_seconds"] for r in mine)
        lines.append(f"| {label} (n={len(mine)}) | {'/'.join(map(str, steps))} | {per_step:.2f} | {cache:.0f} | "
                     + " | ".join(cell("psnr", s) for s in sets) + " | " + " | ".join(cell("ssim", s) for s in sets) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--student", required=True, help="student preset or arch id")
    ap.add_argument("--student-opt", action="append", default=[])
    ap.add_argument("--data", required=True)
    ap.add_argument("--hr-downscale", type=float, default=1.0)
    ap.add_argument("--val", nargs="+", required=True, help="validation set folders (or a folder of sets)")
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    ap.add_argument("--variant", action="append", default=[])
    # 8 x 32x32 LR patches: on a CPU, many small steps teach edsr-lite more per second than the
    # paper's 16 x 48x48 (RESULTS.md, "kd_quality"); pass 16 / 48 for the paper's shape.
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--patch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--equal-time", action="store_true")
    ap.add_argument("--time-reference", default="mipkd")
    ap.add_argument("--time-methods", default="scratch,logits", help="methods given the reference's time budget")
    ap.add_argument("--time-regimes", default="time,time-reuse",
                    help="time: the reference's teacher-cache build counted; time-reuse: a cache kept from an earlier run")
    ap.add_argument("--work", required=True)
    ap.add_argument("--teacher-cache-dir", default=None, help="reuse teacher signals across runs (default WORK/cache)")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    args.teacher_cache_dir = args.teacher_cache_dir or str(work / "cache")
    log = work / "runs.jsonl"
    runs = load_runs(log)
    seeds = [int(s) for s in args.seeds.split(",")]
    plan = parse_variants([m for m in args.methods.split(",") if m], args.variant)

    def done(regime, label, seed, steps=None):
        return any(r["regime"] == regime and r["label"] == label and r["seed"] == seed and (steps is None or r["steps"] == steps)
                   for r in runs)

    def record(row):
        runs.append(row)
        with log.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        first = next(iter(row["sets"].values()))
        print(f"{row['regime']:6s} {row['label']:24s} seed {row['seed']} {row['steps']:5d} steps "
              f"{row['train_seconds']:7.1f}s (+{row['cache_seconds']:.0f}s cache)  {first['psnr']:.3f} dB", file=sys.stderr, flush=True)

    for seed in seeds:
        for label, (method, options) in plan.items():
            if not done("steps", label, seed, args.steps):
                record(run_one(args, label, method, options, seed, args.steps, "steps"))
    budgets = {}
    if args.equal_time:
        # The cache file each run used -> the time it took to build it (once, by some run).
        built = {}
        for r in runs:
            src = r.get("cache_source") or ""
            if src.startswith("built"):
                built[src.partition("(")[2].rstrip(")")] = r["cache_seconds"]

        cost_file = work / "step_costs.json"
        if cost_file.exists():
            step_costs = json.loads(cost_file.read_text())
        else:
            # Every method of this invocation is measured (side by side), not only those given time.
            labels = {args.time_reference, *[m for m in args.time_methods.split(",") if m], *plan}
            step_costs = measure_step_costs(args, {k: v for k, v in plan.items() if k in labels})
            cost_file.write_text(json.dumps(step_costs, indent=2))
        print("seconds per step (interleaved measurement): " + ", ".join(f"{k} {v:.3f}" for k, v in step_costs.items()), file=sys.stderr)

        def costs(label):
            mine = [r for r in runs if r["regime"] == "steps" and r["label"] == label]
            per_step = step_costs[label]
            # Reading a kept cache: the runs that read one (the run that built it counts under "time").
            reads = [r["cache_seconds"] for r in mine if not (r.get("cache_source") or "").startswith("built")]
            read = statistics.mean(reads) if reads else 0.0
            files = {(r.get("cache_source") or "").partition("(")[2].rstrip(")") or r.get("cache_source") for r in mine}
            build = max((built.get(f, 0.0) for f in files if f), default=0.0)
            return per_step, read, build

        ref_step, ref_read, ref_build = costs(args.time_reference)
        # "time": the cache counted (built once for this run); "time-reuse": a cache kept from an earlier run.
        budgets = {"time": ref_step * args.steps + ref_build, "time-reuse": ref_step * args.steps + ref_read}
        budgets = {k: v for k, v in budgets.items() if k in args.time_regimes.split(",")}
        for regime, budget in budgets.items():
            for label in [m for m in args.time_methods.split(",") if m]:
                method, options = plan[label]
                per_step, read, build = costs(label)
                steps = max(1, math.floor((budget - (build if regime == "time" else read)) / per_step))
                for seed in seeds:
                    if not done(regime, label, seed, steps):
                        record(run_one(args, label, method, options, seed, steps, regime))

    teacher = load_model(args.teacher)
    ref_scores = evaluate({"teacher": teacher}, args.val, teacher.scale, bicubic=True)
    refs = {}
    for row in ref_scores.rows:
        refs.setdefault(row.method, {})[row.set] = {"psnr": row.psnr, "ssim": row.ssim}
    print(f"\n#### equal steps ({args.steps})\n")
    print(summarise(runs, "steps", refs))
    for regime, budget in budgets.items():
        how = "teacher cache built in the run" if regime == "time" else "teacher cache reused from an earlier run"
        print(f"\n#### equal wall-clock: {budget:.0f} s = {args.time_reference} at {args.steps} steps ({how})\n")
        print(summarise(runs, regime, refs))


if __name__ == "__main__":
    main()
