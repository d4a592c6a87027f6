"""The live display of a training run and its final report, shared by ``train`` and
``distill`` (commands import this module, never each other)."""

from __future__ import annotations

import time
import warnings
from typing import TYPE_CHECKING, Any, Callable

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn
from rich.text import Text

from ..errors import Interrupted, SrdistillError
from ..train.progress import StepReport, TrainCallback
from ._console import console, err_console, print_json

if TYPE_CHECKING:
    from ..train.loop import TrainResult


def fmt_time(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "?"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _terms_text(report: StepReport) -> str:
    terms = " ".join(f"{escape(k)} {v:.4g}" for k, v in report.terms.items())
    return f"loss {report.loss:.4g}" + (f" ({terms})" if len(report.terms) > 1 else "")


class _BarAndStats(Progress):
    """The progress bar on one line, the loss terms and rates on the next (a narrow terminal
    would otherwise squeeze the bar away)."""

    stats: str = ""

    def get_renderables(self):
        yield self.make_tasks_table(self.tasks)
        yield Text.from_markup(self.stats)


class ConsoleProgress(TrainCallback):
    """Rich live display on a terminal; plain periodic lines otherwise (logs, CI, batch jobs)."""

    def __init__(self, json_mode: bool):
        self.json_mode = json_mode
        self.live = console.is_terminal and not json_mode
        self.progress: Progress | None = None
        self.task = None
        self.last_line = 0.0
        self.val_text = "-"

    def on_start(self, info: dict[str, Any]) -> None:
        if self.json_mode:
            return
        data = info["data"]
        resumed = f", resumed at step {info['start_step']} from {info['resumed_from']}" if info["resumed_from"] else ""
        console.print(f"[bold]training[/bold] {escape(info['arch'])}, {info['params']:,} parameters, objective {escape(info['objective'])}")
        console.print(
            f"data: {data['images']} image(s), {data['megapixels']} MP from {escape(data['data'])}; LR {escape(data['lr_source'])}; "
            f"{'cached in memory' if data['cached'] else 'decoded per patch (not cached)'}; {data['validation_images']} validation image(s)"
        )
        if data.get("teacher_labelled"):
            from ..data.teacher_labelled import describe_line

            console.print(escape(describe_line(data["teacher_labelled"])))
        budget = " / ".join(p for p in (f"{info['steps']} steps" if info["steps"] else "", f"{fmt_time(info['max_time'])} max" if info["max_time"] else "") if p)
        console.print(
            f"{info['device']}, {info['precision']}, {'channels_last' if info['channels_last'] else 'NCHW'}, {info['threads']} thread(s), "
            f"{info['workers']} loader worker(s), {info['world_size']} process(es) x batch {info['batch_size']}; {budget}{escape(resumed)}"
        )
        console.print(f"run folder: {escape(info['run_dir'])}")
        if self.live:
            self.progress = _BarAndStats(
                TextColumn("[bold]{task.fields[steps]}"),
                BarColumn(bar_width=40),
                TaskProgressColumn(),
                TextColumn("{task.fields[times]}"),
                console=console,
                transient=False,
            )
            self.progress.start()
            self.task = self.progress.add_task("train", total=1000, steps="", times="")

    def _stats(self, r: StepReport) -> str:
        return (
            f"{_terms_text(r)}  lr {r.lr:.2e}  {r.steps_per_s:.2f} step/s  data {r.data_ms:.1f} ms"
            f"  val {self.val_text}" + ("  [yellow]skipped[/yellow]" if r.skipped else "")
        )

    def on_step(self, r: StepReport) -> None:
        if self.json_mode:
            return
        steps = f"{r.step}/{r.steps}" if r.steps else f"{r.step}"
        if self.progress is not None:
            self.progress.stats = self._stats(r)
            times = f"{fmt_time(r.elapsed)} elapsed, eta {fmt_time(r.eta)}"
            self.progress.update(self.task, completed=r.progress * 1000, steps=steps, times=times)
            return
        now = time.monotonic()
        if now - self.last_line >= 30 or (r.steps and r.step >= r.steps) or r.step == 1:
            self.last_line = now
            console.print(f"step {steps} ({r.progress:.0%}, eta {fmt_time(r.eta)})  {self._stats(r)}", highlight=False)

    def on_validation(self, step: int, result: dict[str, Any]) -> None:
        self.val_text = f"{result['psnr_y']:.2f} dB"
        if not self.json_mode and self.progress is None:
            console.print(f"step {step}: validation PSNR-Y {result['psnr_y']:.3f} dB, SSIM-Y {result['ssim_y']:.4f} "
                          f"({result['images']} image(s))", highlight=False)

    def on_info(self, text: str) -> None:
        target = self.progress.console if self.progress is not None else err_console
        target.print(f"[dim]{escape(text)}[/dim]", highlight=False, soft_wrap=True)

    def on_message(self, text: str) -> None:
        target = self.progress.console if self.progress is not None else err_console
        target.print(f"[yellow]warning:[/yellow] {escape(text)}", highlight=False, soft_wrap=True)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def on_end(self, summary: dict[str, Any]) -> None:
        self.stop()


def run_with_progress(
    run: Callable[[TrainCallback | None], TrainResult], json_out: bool, rank: int, command: str = "train",
) -> TrainResult | None:
    """``run(callback)`` as this torchrun rank, for `train` and `distill` alike. Rank 0 shows the
    progress and turns an interruption into one line, ending with how to resume with ``command``,
    and its exit code; the other ranks do the same work silently and return None (rank 0 reports,
    including errors)."""
    if rank != 0:
        warnings.simplefilter("ignore")
        try:
            run(None)
        except SrdistillError as exc:
            raise typer.Exit(exc.exit_code) from None
        return None
    progress = ConsoleProgress(json_out)
    try:
        return run(progress)
    except Interrupted as exc:
        progress.stop()
        err_console.print(f"[yellow]stopped:[/yellow] {escape(exc.render(command=command))}", highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    finally:
        progress.stop()


def report_result(result: TrainResult, json_out: bool, written: str, **extra: Any) -> None:
    """The end of a finished run: a JSON summary (``extra`` adds the command's own keys), or one line."""
    if json_out:
        print_json({
            "output": str(result.output),
            "run_dir": str(result.run_dir),
            "steps": result.steps,
            "train_seconds": round(result.elapsed, 2),
            "stopped": result.stopped,
            "final_loss": result.final_loss,
            "validation": result.last_val,
            "resumed_from": str(result.resumed_from) if result.resumed_from else None,
            **extra,
        })
        return
    val = result.last_val
    val_text = f", validation PSNR-Y {val['psnr_y']:.3f} dB / SSIM-Y {val['ssim_y']:.4f}" if val else ""
    console.print(f"[green]done:[/green] {result.steps} steps in {fmt_time(result.elapsed)}{val_text}; {written} {escape(str(result.output))}")
