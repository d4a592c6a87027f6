"""The one-GPU check: every command on CUDA, throughput, and a real-scale distillation, in a
wall-clock budget (``scripts/gpu-check.sh`` runs this with the machine's ``python3``).

    python3 benchmarks/gpu_check.py                      # on a CUDA machine, 480 s budget
    python3 benchmarks/gpu_check.py --smoke              # tiny, on CPU, to prove the script runs

Parts, in order; each prints its table as soon as it is done (and appends it, as markdown, to
``OUT/gpu-check.md``), so a part that runs out of time leaves the earlier results printed:

1. ``pytest -m gpu tests/gpu``: train, distill (each method), upscale (tiling, OOM retry), eval,
   compare, fp16/bf16, torch.compile and one-rank NCCL DDP on CUDA.
2. Throughput: train steps/s and % of the measured bf16 matmul peak for edsr-lite,
   edsr-baseline, rcan-lite and swinir-s; distill steps/s of edsr-lite from edsr-baseline per
   method; upscale output MP/s; where a real run's time goes (data loading vs the step).
3. A real-scale run sized to what is left: an edsr-baseline (bicubic skip) teacher trained on
   the photos in bf16, then edsr-lite distilled with scratch, logits and mipkd at equal steps,
   as three processes side by side on the one GPU; PSNR/SSIM-Y on Set5/Set14 and step cost.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
SCALE = 4
THROUGHPUT_PRESETS = ("edsr-lite", "edsr-baseline", "rcan-lite", "swinir-s")
DISTILL_METHODS = ("scratch", "logits", "mipkd")
console = Console(highlight=False, width=int(os.environ.get("COLUMNS", "150")))


class Budget:
    """Wall-clock seconds left for the whole check; later parts get what earlier ones leave."""

    def __init__(self, seconds: float):
        self.start, self.seconds = time.monotonic(), seconds

    def left(self) -> float:
        return self.seconds - (time.monotonic() - self.start)

    def share(self, fraction: float, floor: float = 0.0) -> float:
        return max(floor, self.left() * fraction)


@dataclass
class Mode:
    smoke: bool
    device: str
    out: Path
    data_root: Path
    python: str

    @property
    def sizes(self) -> dict[str, int]:
        if self.smoke:
            return {"batch": 1, "patch": 12, "warmup": 0, "steps": 1, "matmul": 256, "upscale_side": 24}
        return {"batch": 16, "patch": 48, "warmup": 5, "steps": 30, "matmul": 8192, "upscale_side": 1024}


class Report:
    """Print each table when it is done; keep a markdown copy for benchmarks/RESULTS.md."""

    def __init__(self, out: Path):
        out.mkdir(parents=True, exist_ok=True)
        self.markdown = out / "gpu-check.md"
        self.markdown.write_text("", encoding="utf-8")

    def table(self, title: str, columns: list[str], rows: list[list[Any]], note: str = "") -> None:
        table = Table(title=title, title_justify="left")
        for col in columns:
            table.add_column(col)
        for row in rows:
            table.add_row(*[_cell(v) for v in row])
        console.print(table)
        if note:
            console.print(note)
        lines = [f"### {title}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
        with self.markdown.open("a", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + ("\n\n" + note if note else "") + "\n\n")
        sys.stdout.flush()


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# -- part 0: the machine ------------------------------------------------------------------------
def machine_rows(mode: Mode) -> list[list[Any]]:
    cuda = torch.cuda.is_available()
    name = torch.cuda.get_device_name(0) if cuda else "none"
    return [["torch", torch.__version__], ["CUDA available", cuda], ["device", name],
            ["bf16 supported", cuda and torch.cuda.is_bf16_supported()], ["mode", "smoke (CPU, tiny)" if mode.smoke else "full"],
            ["data root", str(mode.data_root)]]


# -- part 1: pytest -m gpu ----------------------------------------------------------------------
def run_gpu_tests(mode: Mode, timeout: float) -> list[list[Any]]:
    junit = mode.out / "gpu-tests.xml"
    cmd = [mode.python, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
           f"--junitxml={junit}", str(REPO / "tests" / "gpu")]
    env = {**os.environ, "SRDISTILL_GPU_DATA": str(mode.data_root)}
    try:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=max(10.0, timeout), env=env)
        (mode.out / "gpu-tests.log").write_text(proc.stdout + proc.stderr, encoding="utf-8")
    except subprocess.TimeoutExpired:
        return [["(all)", "timed out", f"after {timeout:.0f} s"]]
    return junit_rows(junit) if junit.exists() else [["(all)", "no report", f"exit {proc.returncode}"]]


def junit_rows(path: Path) -> list[list[Any]]:
    import xml.etree.ElementTree as ET

    rows = []
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome, detail = "passed", ""
        for kind in ("failure", "error", "skipped"):
            found = case.find(kind)
            if found is not None:
                outcome, detail = kind, (found.get("message") or "").splitlines()[0][:100] if found.get("message") else ""
        rows.append([case.get("name"), outcome, f"{float(case.get('time', 0)):.1f} s {detail}".strip()])
    return rows or [["(none collected)", "-", ""]]


# -- part 2: throughput -------------------------------------------------------------------------
def matmul_peak(device: torch.device, side: int) -> float:
    """Measured bf16 matmul TFLOP/s (the ceiling the step rates are compared with)."""
    dtype = torch.bfloat16
    a, b = torch.randn(side, side, device=device, dtype=dtype), torch.randn(side, side, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    _sync(device)
    reps, start = 10, time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync(device)
    return 2 * side**3 * reps / (time.perf_counter() - start) / 1e12


def step_rate(make_objective, student, device: torch.device, precision: str, sizes: dict[str, int], seconds: float):
    """(steps/s, FLOPs per step) of the engine's Stepper on random batches."""
    from torch.utils.flop_counter import FlopCounterMode

    from srdistill.train.ddp import DistContext
    from srdistill.train.machine import configure_backends, grad_scaler
    from srdistill.train.objective import Batch, StepModule
    from srdistill.train.step import Stepper

    configure_backends(device)
    net = student.net.to(device).to(memory_format=torch.channels_last).train()
    objective = make_objective(student)
    for module in objective.frozen().values():
        module.to(device).eval().requires_grad_(False)
    step_module = StepModule(net, objective).to(device)
    params = [p for p in step_module.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=1e-4)
    stepper = Stepper(model=step_module, student=net, params=params, optimizer=optimizer, weights=objective.weights,
                      device=device, precision=precision, grad_clip=0.0, ctx=DistContext(), objective_name="bench",
                      scaler=grad_scaler(device, precision))
    n, p = sizes["batch"], sizes["patch"]
    lr = torch.rand(n, 3, p, p, device=device).contiguous(memory_format=torch.channels_last)
    hr = torch.rand(n, 3, p * SCALE, p * SCALE, device=device).contiguous(memory_format=torch.channels_last)
    batch = Batch(lr, hr, torch.arange(n), torch.zeros(n, dtype=torch.long))

    def step():
        return stepper(batch, 1e-4, stop=False, time_up=False, checkpoint_due=False)

    for _ in range(sizes["warmup"]):
        step()
    with FlopCounterMode(display=False) as flops:
        step()
    _sync(device)
    count, start = 0, time.perf_counter()
    while count < sizes["steps"] and (count < 2 or time.perf_counter() - start < seconds):
        step()
        count += 1
    _sync(device)
    return count / (time.perf_counter() - start), flops.get_total_flops()


def throughput(mode: Mode, budget: Budget, report: Report, seconds: float) -> dict[str, float]:
    from srdistill import build_model, upscale_tensor
    from srdistill.distill import DistillContext, match_boundaries
    from srdistill.distill.registry import get_method
    from srdistill.train.objective import Supervised

    device, sizes = torch.device(mode.device), mode.sizes
    precision = "bf16" if device.type == "cuda" else "fp32"
    peak = matmul_peak(device, sizes["matmul"])
    per = seconds / (len(THROUGHPUT_PRESETS) + len(DISTILL_METHODS) + 3)
    rows, rates = [], {}
    for preset in THROUGHPUT_PRESETS:
        model = build_model(preset, SCALE, seed=0)
        rate, flops = step_rate(lambda s: Supervised(), model, device, precision, sizes, per)
        rates[preset] = rate
        rows.append(["train", preset, f"{model.num_params / 1e6:.2f} M", rate, 1e3 / rate, flops * rate / 1e12, 100 * flops * rate / 1e12 / peak])
    teacher = build_model("edsr-baseline", SCALE, {"bicubic_skip": True}, seed=1)
    teacher.net.to(device).eval().requires_grad_(False)
    for method in DISTILL_METHODS:
        spec = get_method(method)
        student = build_model("edsr-lite", SCALE, seed=0)
        found = match_boundaries(teacher, student) if spec.uses_features else ()
        context = DistillContext(teacher, student, found, seed=0, teacher_cache="off")
        rate, flops = step_rate(lambda s, c=context: spec.create(c, {}), student, device, precision, sizes, per)
        rates[f"distill-{method}"] = rate
        rows.append([f"distill {method} (live teacher)", "edsr-baseline -> edsr-lite", "", rate, 1e3 / rate,
                     flops * rate / 1e12, 100 * flops * rate / 1e12 / peak])
    report.table(f"Training throughput on {mode.device}, {precision}, batch {sizes['batch']} x {sizes['patch']}px LR "
                 f"(bf16 matmul peak measured: {peak:.1f} TFLOP/s)",
                 ["step", "model", "params", "steps/s", "ms/step", "TFLOP/s", "% of peak"], rows)

    up_rows = []
    side = sizes["upscale_side"]
    image = torch.rand(3, side, side)
    for preset in ("edsr-lite", "edsr-baseline"):
        model = build_model(preset, SCALE, seed=0)
        upscale_tensor(model, image[:, :64, :64], device=mode.device)  # warm-up: kernels and threads
        start = time.perf_counter()
        out = upscale_tensor(model, image, device=mode.device)
        seconds_taken = time.perf_counter() - start
        up_rows.append([preset, f"{side}x{side} -> {out.shape[-1]}x{out.shape[-2]}", out.shape[-1] * out.shape[-2] / 1e6 / seconds_taken])
    report.table(f"Upscale throughput on {mode.device} (automatic tile and dtype)", ["model", "image", "output MP/s"], up_rows)
    rates["_peak"] = peak
    return rates


def data_share(mode: Mode, seconds: float, report: Report) -> None:
    """A real `srdistill train` run on the photos: how much of a step is waiting for data."""
    run_dir = mode.out / "runs" / "data-share"
    steps = 4 if mode.smoke else 400
    cmd = [mode.python, "-m", "srdistill", "train", "--arch", "edsr-lite", "--data", str(mode.data_root / "train-photos"),
           "--steps", str(steps), "--max-time", str(int(max(5, seconds))), "--device", mode.device, "--run-dir", str(run_dir),
           "--val-every", "0", "--json", *_tiny_flags(mode)]
    proc = _run(cmd, seconds + 60, mode.out / "data-share.log")
    records = _metrics(run_dir)
    if proc is None or proc.returncode != 0 or not records:
        report.table("Data loading vs compute (edsr-lite train run)", ["result"], [[f"failed (see {mode.out / 'data-share.log'})"]])
        return
    last = records[-1]
    step_ms = 1e3 / last["steps_per_s"] if last.get("steps_per_s") else float("nan")
    start = _start_info(run_dir)
    report.table("Data loading vs compute (edsr-lite train run on the photos)",
                 ["steps", "workers", "steps/s", "data ms/step", "step ms", "data share %"],
                 [[last["step"], start.get("workers", "?"), last.get("steps_per_s"), last["data_ms"], step_ms, 100 * last["data_ms"] / step_ms]],
                 note="A data share above ~10% means the step waits for patches: raise --workers.")


# -- part 3: real-scale run ---------------------------------------------------------------------
def real_scale(mode: Mode, budget: Budget, report: Report, rates: dict[str, float]) -> None:
    left = budget.left() - (5 if mode.smoke else 30)  # margin for evaluation and the tables
    if left < (10 if mode.smoke else 90):
        report.table("Real-scale run", ["result"], [[f"skipped: {budget.left():.0f} s left"]])
        return
    photos, sets = mode.data_root / "train-photos", [mode.data_root / "benchmarks" / s for s in ("Set5", "Set14")]
    runs = mode.out / "runs"
    # Teacher ~45% of what is left, students (three at once, sharing the GPU) ~40%, eval the rest.
    teacher_s, student_s = 0.45 * left, 0.40 * left
    teacher_rate = rates.get("edsr-baseline", 1.0) * 0.8  # real data and logging cost a little
    teacher_steps = 3 if mode.smoke else int(min(20000, max(200, teacher_rate * teacher_s)))
    teacher_file = runs / "teacher.safetensors"
    cmd = [mode.python, "-m", "srdistill", "train", "--arch", "edsr-baseline", "--arch-opt", "bicubic_skip=true",
           "--data", str(photos), "--steps", str(teacher_steps), "--max-time", str(int(teacher_s)), "--device", mode.device,
           "--precision", "bf16" if mode.device.startswith("cuda") else "fp32", "--run-dir", str(runs / "teacher"),
           "--val-every", "0", "-o", str(teacher_file), "--json", *_tiny_flags(mode)]
    t0 = time.monotonic()
    proc = _run(cmd, teacher_s + 120, mode.out / "teacher.log")
    if proc is None or proc.returncode != 0 or not teacher_file.exists():
        report.table("Real-scale run", ["result"], [[f"teacher training failed (see {mode.out / 'teacher.log'})"]])
        return
    teacher_done = time.monotonic() - t0
    # Three processes share the GPU: each gets about a third of the solo rate of the slowest method.
    solo = min(rates.get(f"distill-{m}", 1.0) for m in DISTILL_METHODS)
    student_steps = 3 if mode.smoke else int(min(20000, max(100, solo / 3 * 0.8 * student_s)))
    procs = {}
    for method in DISTILL_METHODS:
        cmd = [mode.python, "-m", "srdistill", "distill", "--teacher", str(teacher_file), "--student-arch", "edsr-lite",
               "--method", method, "--data", str(photos), "--steps", str(student_steps), "--max-time", str(int(student_s)),
               "--device", mode.device, "--run-dir", str(runs / method), "-o", str(runs / f"{method}.safetensors"),
               "--val-every", "0", "--json", *_tiny_flags(mode)]
        log = (mode.out / f"distill-{method}.log").open("w")
        procs[method] = (subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT), log, time.monotonic())
    costs = {}
    for method, (proc, log, started) in procs.items():
        try:
            proc.wait(timeout=max(30.0, student_s + 180 - (time.monotonic() - started)))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        costs[method] = (proc.returncode, time.monotonic() - started)
    from srdistill import evaluate_models, load_model

    models = {"teacher edsr-baseline": teacher_file}
    models.update({f"edsr-lite {m}": runs / f"{m}.safetensors" for m, (rc, _) in costs.items() if rc == 0})
    results = evaluate_models({k: load_model(v) for k, v in models.items()}, [str(s) for s in sets], SCALE, bicubic=True,
                              device=mode.device)
    steps_of = {name: _metadata_steps(path) for name, path in models.items()}
    rows = []
    for row in results.rows:
        train_s = teacher_done if row.method.startswith("teacher") else costs.get(row.method.split()[-1], (None, None))[1]
        steps = steps_of.get(row.method)
        rows.append([row.set, row.method, row.psnr, row.ssim, steps if steps is not None else "-",
                     f"{1e3 * train_s / steps:.1f}" if train_s and steps else "-"])
    failed = [m for m, (rc, _) in costs.items() if rc != 0]
    note = (f"Teacher: {teacher_steps} steps planned, bf16. Students: {student_steps} steps each, three processes side by side; "
            f"ms/step is wall-clock per step while sharing the GPU." + (f" Failed: {', '.join(failed)} (see logs)." if failed else ""))
    report.table(f"Real-scale run on {mode.device}: x{SCALE} PSNR/SSIM-Y", ["set", "model", "PSNR-Y", "SSIM-Y", "steps", "ms/step"],
                 rows, note=note)


# -- helpers ------------------------------------------------------------------------------------
def _tiny_flags(mode: Mode) -> list[str]:
    if mode.smoke:
        return ["--batch-size", "2", "--patch-size", "12", "--threads", "1", "--workers", "0"]
    return ["--batch-size", "16", "--patch-size", "48"]


def _run(cmd: list[str], timeout: float, log: Path):
    try:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        log.write_text(f"timed out after {timeout:.0f} s: {' '.join(cmd)}\n", encoding="utf-8")
        return None
    log.write_text(" ".join(cmd) + "\n" + proc.stdout + proc.stderr, encoding="utf-8")
    return proc


def _metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in rows if "data_ms" in r]


def _start_info(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "metrics.jsonl"
    for line in path.read_text(encoding="utf-8").splitlines() if path.exists() else []:
        record = json.loads(line)
        if "workers" in record:
            return record
    return {}


def _metadata_steps(path: Path) -> int | None:
    try:
        from srdistill import load_model

        steps = load_model(str(path)).metadata.get("provenance", {}).get("steps")
        return int(steps) if steps is not None else None
    except Exception:  # noqa: BLE001 - the table shows "-" rather than failing the check
        return None


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="tiny CPU run of every part (seconds to a minute)")
    ap.add_argument("--budget-s", type=float, default=None, help="wall-clock budget (default 480; smoke 120)")
    ap.add_argument("--data-root", type=Path, default=None,
                    help="folder with train-photos/ and benchmarks/Set5, Set14 (default ../shared/data, else .gpu-data)")
    ap.add_argument("--out", type=Path, default=None, help="where tables, logs and runs go (default $OUT or gpu-check-out)")
    ap.add_argument("--skip-tests", action="store_true", help="leave out part 1 (pytest -m gpu)")
    return ap.parse_args(argv)


def default_data_root() -> Path:
    for candidate in (REPO / ".gpu-data", REPO.parent / "shared" / "data"):
        if (candidate / "train-photos").is_dir():
            return candidate
    return REPO.parent / "shared" / "data"


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    budget = Budget(args.budget_s or (120.0 if args.smoke else 480.0))
    out = args.out or Path(os.environ.get("OUT") or REPO / "gpu-check-out")
    cuda = torch.cuda.is_available()
    mode = Mode(smoke=args.smoke, device="cuda" if cuda and not args.smoke else "cpu", out=out.resolve(),
                data_root=(args.data_root or default_data_root()).resolve(), python=sys.executable)
    report = Report(mode.out)
    shutil.rmtree(mode.out / "runs", ignore_errors=True)  # a rerun starts its runs afresh
    report.table("Machine", ["what", "value"], machine_rows(mode))
    if not cuda and not args.smoke:
        console.print("[red]torch has no CUDA here[/red] (torch.cuda.is_available() is False): the GPU check needs a CUDA "
                      "build of torch and a visible GPU; run with --smoke for the CPU dry run.")
        return 2
    missing = [p for p in (mode.data_root / "train-photos", mode.data_root / "benchmarks" / "Set5", mode.data_root / "benchmarks" / "Set14")
               if not p.is_dir()]
    if missing:
        console.print(f"[red]data missing:[/red] {', '.join(map(str, missing))}; pass --data-root DIR "
                      f"(holding train-photos/ and benchmarks/Set5, Set14) or run scripts/gpu-check.sh --stage-data")
        return 2
    if not args.skip_tests:
        report.table("Part 1: pytest -m gpu", ["test", "outcome", "time / detail"], run_gpu_tests(mode, budget.share(0.3)))
    rates = throughput(mode, budget, report, budget.share(0.15))
    data_share(mode, budget.share(0.08, floor=5), report)
    real_scale(mode, budget, report, rates)
    console.print(f"done in {budget.seconds - budget.left():.0f} s; markdown tables in {report.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
