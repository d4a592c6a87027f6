"""``distill()``: train a small student from a large teacher with one of the registered methods.

    from srdistill.distill import distill
    result = distill("swinir_x4.safetensors", "edsr-lite", "photos/", method="mipkd", steps=2000)

Everything that can be wrong with the inputs (teacher file, scale, student preset, method and its
options, boundaries) is checked by :func:`plan_distillation` before any data is read; ``--dry-run``
prints the plan and stops there.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..bundled import resolve_model_ref
from ..errors import UsageError
from ..hooks import block_hooks
from ..models import SRModel, file_sha256, load_model
from ..registry import ARCHS, find_preset, get_method
from ..train.config import TrainConfig, resolve, typed_values
from ..train.loop import TrainResult, train
from ..train.objective import Objective
from ..train.progress import TrainCallback
from ..train.seeding import seed_everything
from .boundaries import Boundary, format_boundaries, match_boundaries
from .features import crop_to_input
from .mixers import parameter_count
from .spec import DistillContext, MethodSpec
from .teacher_cache import CACHE_MODES


SETTINGS_FILE = "distill.json"


class DistillNote(UserWarning):
    """An option that does not apply to the chosen method was ignored."""


@dataclass
class DistillPlan:
    teacher: SRModel
    student: SRModel
    method: MethodSpec
    options: dict[str, Any]
    boundaries: tuple[Boundary, ...]
    objective: Objective
    teacher_file: Path | None = None
    teacher_sha256: str | None = None
    boundary_source: str = "none"  # "auto", "K", "explicit" or "none"
    student_file: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def mixer_parameters(self) -> int:
        return sum(parameter_count(m) for m in self.objective.modules().values())

    def provenance(self) -> dict[str, Any]:
        """What the student's file records about how it was distilled."""
        return {
            "distilled_by": "srdistill distill",
            "method": self.method.id,
            "method_options": dict(self.options),
            "teacher": {
                "arch": self.teacher.arch,
                "scale": self.teacher.scale,
                "hparams": dict(self.teacher.hparams),
                "file": self.teacher_file.name if self.teacher_file else None,
                "sha256": self.teacher_sha256,
                "params": self.teacher.num_params,
            },
            "boundaries": format_boundaries(self.boundaries) if self.boundaries else None,
            "boundary_source": self.boundary_source,
            "student_init": self.student_file.name if self.student_file else "random",
        }

    def table(self, patch_size: int = 48) -> list[dict[str, Any]]:
        """One row per boundary: block, channels and feature size on a ``patch_size`` LR patch."""
        sizes = {}
        for role, model in (("teacher", self.teacher), ("student", self.student)):
            blocks = [getattr(b, f"{role}_block") for b in self.boundaries]
            x = torch.zeros(1, 3, patch_size, patch_size)
            was_training = model.net.training
            model.net.eval()
            try:
                with torch.no_grad(), block_hooks(model.net, blocks, model.spec.feature_view) as seen:
                    model.net(x)
            finally:
                model.net.train(was_training)
            sizes[role] = {b: tuple(crop_to_input(f, patch_size, patch_size).shape[-2:]) for b, f in seen.features.items()}
        rows = []
        for i, b in enumerate(self.boundaries):
            rows.append(
                {
                    "boundary": i,
                    "teacher_index": b.teacher_index,
                    "teacher_block": b.teacher_block,
                    "teacher_channels": b.teacher_channels,
                    "teacher_size": sizes["teacher"][b.teacher_block],
                    "student_index": b.student_index,
                    "student_block": b.student_block,
                    "student_channels": b.student_channels,
                    "student_size": sizes["student"][b.student_block],
                }
            )
        return rows

    def summary(self, patch_size: int = 48) -> dict[str, Any]:
        return {
            "method": self.method.id,
            "options": self.options,
            "teacher": {"arch": self.teacher.arch, "scale": self.teacher.scale, "params": self.teacher.num_params,
                        "blocks": len(self.teacher.blocks), "file": str(self.teacher_file) if self.teacher_file else None},
            "student": {"arch": self.student.arch, "preset": self.student.preset, "hparams": self.student.hparams,
                        "params": self.student.num_params, "blocks": len(self.student.blocks)},
            "boundary_source": self.boundary_source,
            "boundaries": self.table(patch_size) if self.boundaries else [],
            "mixer_parameters": self.mixer_parameters,
            "notes": self.notes,
        }


def _student_model(
    teacher: SRModel,
    student_arch: str | None,
    student_options: Mapping[str, Any] | None,
    student_file: str | Path | None,
    seed: int,
) -> SRModel:
    if student_file is not None:
        student = load_model(student_file, hparams=student_options or None)
        if student_arch is not None:
            spec = _student_spec(student_arch)[0]
            if spec.id != student.arch:
                raise UsageError(
                    f"--student {student_file} is a {student.arch} model but --student-arch says {student_arch}; drop one of them"
                )
        if student.scale != teacher.scale:
            raise UsageError(
                f"--student {student_file} is x{student.scale} but the teacher is x{teacher.scale}; "
                f"teacher and student must have the same scale"
            )
        student.net.train()
        return student
    if student_arch is None:
        raise UsageError("no student given; pass --student-arch PRESET (see `srdistill archs`) or --student FILE")
    spec, preset = _student_spec(student_arch)
    if teacher.scale not in spec.scales:
        raise UsageError(
            f"student {student_arch} supports scales {list(spec.scales)}, but the teacher is x{teacher.scale}; "
            f"choose a student that supports x{teacher.scale}"
        )
    hparams = spec.resolve(student_options, preset=preset)
    seed_everything(seed)  # the same initialisation as `srdistill train --seed`
    return SRModel(spec, teacher.scale, hparams, spec.instantiate(teacher.scale, hparams))


def _student_spec(name: str):
    try:
        return find_preset(name)
    except UsageError:
        if name in ARCHS.ids():
            return ARCHS.get(name), None
        raise


def _model_ref(ref: str | Path, scale: int | None, flag: str) -> Path:
    try:
        return resolve_model_ref(ref, scale)
    except UsageError as exc:
        raise UsageError(f"{flag} {exc}") from None


def plan_distillation(
    teacher: str | Path | SRModel,
    student_arch: str | None = None,
    *,
    method: str = "mipkd",
    method_options: Mapping[str, Any] | None = None,
    student_options: Mapping[str, Any] | None = None,
    student_file: str | Path | None = None,
    scale: int | None = None,
    k: int | None = None,
    boundaries: str | Sequence[tuple[int, int]] | None = None,
    teacher_cache: str = "auto",
    teacher_cache_dir: str | Path | None = None,
    seed: int = 0,
    total_steps: int | None = None,
) -> DistillPlan:
    """Check every input and build the method's objective; reads no training data."""
    if teacher_cache not in CACHE_MODES:
        raise UsageError(f"--teacher-cache must be one of {', '.join(CACHE_MODES)}, got {teacher_cache!r}")
    spec = get_method(method)
    options = spec.resolve(method_options)
    teacher_file = None
    if isinstance(teacher, SRModel):
        teacher_model = teacher
    else:
        # A file wins; otherwise "teacher" / "teacher-x2" name the bundled teacher (at --scale, default x4).
        teacher_file = _model_ref(teacher, scale, "--teacher")
        teacher_model = load_model(teacher_file)
    if scale is not None and scale != teacher_model.scale:
        raise UsageError(
            f"the teacher {teacher_file or teacher_model.arch} is a x{teacher_model.scale} model but --scale {scale} was given; "
            f"omit --scale (the teacher implies it) or use a x{scale} teacher"
        )
    teacher_model.net.eval().requires_grad_(False)
    if student_file is not None:
        student_file = _model_ref(student_file, teacher_model.scale, "--student")
    student = _student_model(teacher_model, student_arch, student_options, student_file, seed)
    notes = []
    found: tuple[Boundary, ...] = ()
    source = "none"
    if spec.uses_features:
        found = match_boundaries(teacher_model, student, k=k, explicit=boundaries, method=spec.id)
        source = "explicit" if boundaries is not None else ("K" if k else "auto")
    elif k is not None or boundaries is not None:
        notes.append(f"method {spec.id} uses no features: --K/--boundaries ignored")
        warnings.warn(notes[-1], DistillNote, stacklevel=2)
    teacher_sha256 = file_sha256(teacher_file) if teacher_file else None
    context = DistillContext(
        teacher_model, student, found, total_steps=total_steps, seed=seed, teacher_cache=teacher_cache,
        teacher_cache_dir=str(teacher_cache_dir) if teacher_cache_dir else None, teacher_sha256=teacher_sha256,
    )
    objective = spec.build(context, options)
    return DistillPlan(
        teacher=teacher_model,
        student=student,
        method=spec,
        options=options,
        boundaries=found,
        objective=objective,
        teacher_file=teacher_file,
        teacher_sha256=teacher_sha256,
        boundary_source=source,
        student_file=Path(student_file) if student_file else None,
        notes=notes,
    )


def engine_config(config: TrainConfig | Mapping[str, Any] | None, **engine_options: Any) -> TrainConfig:
    """Engine options (as for ``srdistill train``) from a TrainConfig and/or keyword values."""
    base = dict(config.stored()) if isinstance(config, TrainConfig) else dict(typed_values(config or {}, "config"))
    base.update(typed_values({k: v for k, v in engine_options.items() if v is not None}, "distill()"))
    return resolve(base)


def distill(
    teacher: str | Path | SRModel,
    student_arch: str | None = None,
    data: str | Path | None = None,
    *,
    method: str = "mipkd",
    method_options: Mapping[str, Any] | None = None,
    student_options: Mapping[str, Any] | None = None,
    student_file: str | Path | None = None,
    k: int | None = None,
    boundaries: str | Sequence[tuple[int, int]] | None = None,
    teacher_cache: str = "auto",
    teacher_cache_dir: str | Path | None = None,
    config: TrainConfig | Mapping[str, Any] | None = None,
    callback: TrainCallback | None = None,
    **engine_options: Any,
) -> TrainResult:
    """Distil ``teacher`` into a fresh ``student_arch`` (or ``student_file``) on the images in ``data``.

    ``engine_options`` are the training options of ``srdistill train`` (``steps``, ``batch_size``,
    ``max_time``, ``lr``, ``seed``, ``output``, ...); the output is the plain student.
    """
    layered = dict(config.stored()) if isinstance(config, TrainConfig) else dict(config or {})
    # A TrainConfig always holds a scale (default 4); only an explicitly given one is checked.
    scale = engine_options.get("scale") or (None if isinstance(config, TrainConfig) else layered.get("scale"))
    layered.update({k_: v for k_, v in engine_options.items() if v is not None})
    layered.pop("scale", None)
    if data is not None:
        layered["data"] = str(data)
    plan_inputs = dict(
        method=method,
        method_options=method_options,
        student_options=student_options,
        student_file=student_file,
        scale=int(scale) if scale is not None else None,
        k=k,
        boundaries=boundaries,
        teacher_cache=teacher_cache,
        teacher_cache_dir=teacher_cache_dir,
    )
    seed = int(layered.get("seed", 0) or 0)
    steps = layered.get("steps")
    plan = plan_distillation(teacher, student_arch, seed=seed, total_steps=int(steps) if steps else None, **plan_inputs)
    layered["scale"] = plan.teacher.scale
    layered["arch"] = student_arch or plan.student.preset or plan.student.arch
    layered["arch_opt"] = {k_: v for k_, v in (student_options or {}).items()}
    cfg = engine_config(layered)
    return run_plan(plan, cfg, callback=callback)


class _RecordSettings(TrainCallback):
    """Writes ``distill.json`` into the run folder when training starts (rank 0), so that
    ``srdistill distill --run-dir DIR --resume auto`` finds teacher, student and method again;
    forwards every event to the caller's callback."""

    def __init__(self, inner: TrainCallback | None, settings: dict[str, Any]):
        self.inner = inner or TrainCallback()
        self.settings = settings

    def on_start(self, info: dict[str, Any]) -> None:
        from ..io.atomic import atomic_write

        with atomic_write(Path(info["run_dir"]) / SETTINGS_FILE, overwrite=True) as tmp:
            tmp.write_text(json.dumps(self.settings, indent=2, default=str), encoding="utf-8")
        self.inner.on_start(info)

    def on_step(self, report) -> None:
        self.inner.on_step(report)

    def on_validation(self, step: int, result: dict[str, Any]) -> None:
        self.inner.on_validation(step, result)

    def on_message(self, text: str) -> None:
        self.inner.on_message(text)

    def on_end(self, summary: dict[str, Any]) -> None:
        self.inner.on_end(summary)


def run_plan(
    plan: DistillPlan,
    config: TrainConfig,
    *,
    callback: TrainCallback | None = None,
    settings: dict[str, Any] | None = None,
) -> TrainResult:
    """Train the planned student on the engine; ``settings`` go to ``distill.json`` in the run folder."""
    if settings is not None:
        # distill.json names the files actually loaded, so that a bundled name ("teacher") is not
        # recorded as a path relative to the folder the run happened to start in.
        settings = dict(settings)
        if plan.teacher_file is not None:
            settings["teacher"] = str(plan.teacher_file.resolve())
        if plan.student_file is not None:
            settings["student_file"] = str(plan.student_file.resolve())
        callback = _RecordSettings(callback, settings)
    return train(config, objective=plan.objective, student=plan.student, callback=callback, provenance=plan.provenance())
