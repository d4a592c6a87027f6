"""``distill()``: train a small student from a large teacher with one of the registered methods.

    from srdistill.distill import distill
    result = distill("swinir_x4.safetensors", "edsr-lite", "photos/", method="mipkd", steps=2000)

Everything that can be wrong with the inputs (teacher file, scale, student preset, method and its
options, boundaries) is checked by :func:`plan_distillation` before any data is read; a dry run
(``srdistill distill --dry-run``) prints the plan and stops there. :func:`prepare_run` is the one
path from the layered settings (:mod:`.settings`) and the engine options to a plan.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from ..bundled import resolve_model_ref
from ..errors import UsageError, param
from ..hooks import block_hooks
from ..models import SRModel, build_model, file_sha256, load_model, resolve_arch
from ..provenance import file_reference
from ..train.config import TrainConfig, build_config, engine_keys, load_toml, run_dir_of_checkpoint, validate
from ..train.loop import TrainResult, train
from ..train.objective import Objective
from ..train.progress import TrainCallback
from .boundaries import Boundary, format_boundaries, match_boundaries
from .features import crop_to_input
from .mixers import parameter_count
from .registry import get_method
from .settings import DEFAULT_METHOD, DEFAULT_METHOD_NOTE, SETTINGS_FILE, DistillSettings, get_protocol
from .spec import DistillContext, MethodSpec, check_cache_mode
from ..data.teacher_labelled import TeacherLabelled


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
            "student_init": file_reference(self.student_file) if self.student_file else "random",
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
            "teacher": {"arch": self.teacher.arch, "scale": self.teacher.scale, "hparams": dict(self.teacher.hparams), "params": self.teacher.num_params,
                        "blocks": len(self.teacher.blocks), "file": str(self.teacher_file) if self.teacher_file else None},
            "student": {"arch": self.student.arch, "preset": self.student.preset, "hparams": self.student.hparams,
                        "params": self.student.num_params, "blocks": len(self.student.blocks)},
            "boundary_source": self.boundary_source,
            "boundaries": self.table(patch_size) if self.boundaries else [],
            "mixer_parameters": self.mixer_parameters,
            "teacher_labelled": self._teacher_labelled(),
            "notes": self.notes,
        }

    def _teacher_labelled(self) -> dict[str, Any] | None:
        """The unlabeled / zoom / consistency settings, None when the run has none."""
        settings = getattr(self.objective, "teacher_labelled", None)
        if settings is None or not settings.active:
            return None
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(settings).items()}


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
            spec = resolve_arch(student_arch)[0]
            if spec.id != student.arch:
                raise UsageError(
                    f"{param('student_file')} {student_file} is a {student.arch} model but {param('student_arch')} "
                    f"says {student_arch}; drop one of them"
                )
        if student.scale != teacher.scale:
            raise UsageError(
                f"{param('student_file')} {student_file} is x{student.scale} but the teacher is x{teacher.scale}; "
                f"teacher and student must have the same scale"
            )
        student.net.train()
        return student
    if student_arch is None:
        raise UsageError(
            f"no student given; pass {param('student_arch')} PRESET (see `srdistill archs`) or {param('student_file')} FILE"
        )
    spec = resolve_arch(student_arch)[0]
    if teacher.scale not in spec.scales:
        raise UsageError(
            f"student {student_arch} supports scales {list(spec.scales)}, but the teacher is x{teacher.scale}; "
            f"choose a student that supports x{teacher.scale}"
        )
    # The same initialisation as `srdistill train --seed`.
    return build_model(student_arch, teacher.scale, student_options, seed=seed)


def _model_ref(ref: str | Path, scale: int | None, name: str) -> Path:
    try:
        return resolve_model_ref(ref, scale)
    except UsageError as exc:
        raise UsageError(f"{param(name)} {exc.template}") from None


def plan_distillation(
    teacher: str | Path | SRModel,
    student_arch: str | None = None,
    *,
    method: str = DEFAULT_METHOD,
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
    teacher_options: Mapping[str, Any] | None = None,
    teacher_labelled: TeacherLabelled | None = None,
) -> DistillPlan:
    """Check every input and build the method's objective; reads no training data.
    ``teacher_labelled``: unlabeled / zoom samples and label consistency (data/teacher_labelled.py)."""
    check_cache_mode(teacher_cache)  # before the teacher is read
    spec = get_method(method)
    options = spec.resolve(method_options)
    if teacher_labelled is not None and teacher_labelled.active and not spec.uses_teacher:
        raise UsageError(
            f"method {spec.id} has no teacher, so it cannot learn from teacher-labelled samples "
            f"({param('unlabeled')}, {param('zoom_in')}, {param('zoom_out')}, {param('consistency')}); use a teacher-based method such as logits"
        )
    teacher_file = None
    if isinstance(teacher, SRModel):
        teacher_model = teacher
    else:
        # A file wins; otherwise "teacher" / "teacher-x2" name the bundled teacher (at scale, default x4).
        teacher_file = _model_ref(teacher, scale, "teacher")
        teacher_model = load_model(teacher_file, hparams=teacher_options or None)
    if scale is not None and scale != teacher_model.scale:
        raise UsageError(
            f"the teacher {teacher_file or teacher_model.arch} is a x{teacher_model.scale} model but {param('scale')} {scale} "
            f"was given; omit {param('scale')} (the teacher implies it) or use a x{scale} teacher"
        )
    teacher_model.net.eval().requires_grad_(False)
    if student_file is not None:
        student_file = _model_ref(student_file, teacher_model.scale, "student_file")
    student = _student_model(teacher_model, student_arch, student_options, student_file, seed)
    notes = []
    found: tuple[Boundary, ...] = ()
    source = "none"
    if spec.uses_features:
        found = match_boundaries(teacher_model, student, k=k, explicit=boundaries, method=spec.id)
        source = "explicit" if boundaries is not None else ("K" if k else "auto")
    elif k is not None or boundaries is not None:
        notes.append(f"method {spec.id} uses no features: k/boundaries ignored")
        warnings.warn(notes[-1], DistillNote, stacklevel=2)
    teacher_sha256 = file_sha256(teacher_file) if teacher_file else None
    context = DistillContext(
        teacher_model, student, found, total_steps=total_steps, seed=seed, teacher_cache=teacher_cache,
        teacher_cache_dir=str(teacher_cache_dir) if teacher_cache_dir else None, teacher_sha256=teacher_sha256,
        teacher_labelled=teacher_labelled if teacher_labelled is not None and teacher_labelled.active else None,
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


@dataclass
class PreparedRun:
    """A checked distillation: the plan, the settings it came from, and the engine configuration
    (None for a dry run, which reads no data and needs none)."""

    plan: DistillPlan
    settings: DistillSettings
    config: TrainConfig | None
    # Said first by a run whose method nobody chose (the default), with the evidence for it.
    method_note: str | None = None

    def run(self, callback: TrainCallback | None = None) -> TrainResult:
        if self.config is None:
            raise UsageError("a dry run has no engine configuration to train with; prepare it with dry_run=False")
        return run_plan(self.plan, self.config, callback=callback, settings=self.settings.recorded(self.plan))


def prepare_run(
    explicit: DistillSettings,
    engine: Mapping[str, Any],
    *,
    config_file: str | Path | None = None,
    document: Mapping[str, Any] | None = None,
    scale: int | None = None,
    dry_run: bool = False,
) -> PreparedRun:
    """The one path from inputs to a plan, for ``distill()`` and ``srdistill distill`` alike.

    ``explicit`` settings win over the ``[distill]`` table of ``config_file`` (``document``: that file
    already parsed), which wins over the ``distill.json`` of the run being resumed (``engine``'s
    ``run_dir`` with ``resume``); see :mod:`.settings`. ``engine`` holds the training options as
    given (None: not given); ``scale``, when given, must be the teacher's.
    """
    if document is None:
        document = load_toml(config_file) if config_file is not None else {}
    source = str(config_file or "config")
    file_engine = engine_keys(document, source, TrainConfig, tables=("distill",))  # unknown keys fail here
    given = {**file_engine, **{key: value for key, value in engine.items() if value is not None}}
    run_dir, resume = given.get("run_dir"), given.get("resume")
    if resume and run_dir is None and resume != "auto":
        run_dir = run_dir_of_checkpoint(resume)
    layers = (
        explicit,
        DistillSettings.from_toml(source, document) if "distill" in document else None,
        DistillSettings.from_run_dir(run_dir) if resume and run_dir else None,
    )
    settings = DistillSettings.layered(*layers)
    protocol = get_protocol(settings.protocol)
    method_note = None
    if protocol is None and all(layer is None or layer.method is None for layer in layers):
        method_note = DEFAULT_METHOD_NOTE
    # A protocol's training options sit below the flags and the config file's own keys.
    protocol_keys: set[str] = set()
    if protocol is not None:
        engine = dict(engine)
        for key, value in protocol.engine.items():
            if engine.get(key) is None and key not in file_engine:
                engine[key] = value
                protocol_keys.add(key)
        given = {**given, **{key: engine[key] for key in protocol_keys}}
    if settings.teacher is None:
        raise UsageError(f"no teacher given; pass {param('teacher')} FILE (any model file `srdistill inspect` can read)")
    labelled = settings.teacher_labelled()
    config = None
    if not dry_run:
        # Checked before the teacher is even read; the student's arch is filled in from the plan.
        # With unlabeled images, paired data is optional (_UnpairedConfig).
        config = build_config({**engine, "arch": settings.student_arch or "student"}, config_file,
                              cls=_UnpairedConfig if labelled.unlabeled is not None else TrainConfig,
                              tables=("distill",), document=document)
        _check_teacher_labelled(labelled, config)
        seed, steps = config.seed, config.steps
    else:
        seed, steps = int(given.get("seed") or 0), given.get("steps")
    plan = plan_distillation(
        settings.teacher,
        settings.student_arch,
        method=settings.method,
        method_options=settings.method_options,
        student_options=settings.student_options,
        student_file=settings.student_file,
        scale=scale if scale is not None else file_engine.get("scale"),
        k=settings.k,
        boundaries=settings.boundaries,
        teacher_cache=settings.teacher_cache,
        teacher_cache_dir=settings.teacher_cache_dir,
        teacher_options=settings.teacher_options,
        seed=seed,
        total_steps=int(steps) if steps else None,
        teacher_labelled=labelled,
    )
    if config is not None:
        _check_teacher_size_rules(labelled, plan.teacher, config.patch_size)
    if settings.teacher_sha256 and plan.teacher_sha256 and plan.teacher_sha256 != settings.teacher_sha256:
        raise UsageError(
            f"{param('teacher')} {plan.teacher_file} is not the teacher run {run_dir} was started with (its sha256 differs); "
            f"resume with the original teacher"
        )
    if config is not None:
        arch = settings.student_arch or plan.student.preset or plan.student.arch
        config = replace(config, arch=arch, arch_opt=dict(settings.student_options), scale=plan.teacher.scale)
        if protocol is not None and engine.get("patch_size") is None and "patch_size" not in file_engine:
            # The protocol's patch is in HR pixels; the engine's in LR pixels of the teacher's scale.
            config = replace(config, patch_size=protocol.engine_defaults(plan.teacher.scale)["patch_size"])
        validate(config)
    return PreparedRun(plan, settings, config, method_note)


class _UnpairedConfig(TrainConfig):
    """The engine configuration of a run that may have no paired data (``unlabeled`` images only)."""

    data_required = False


def _check_teacher_labelled(labelled: TeacherLabelled, config: TrainConfig) -> None:
    """What the teacher-labelled settings need from the engine's, refused before any model work."""
    if config.data is None and labelled.unlabeled is None:
        raise UsageError(f"no training data given; pass {param('data')} DIR of HR images and/or {param('unlabeled')} DIR of low-resolution images")
    labelled.check(has_paired=config.data is not None)
    if config.data is None and config.val_fraction:
        raise UsageError(f"{param('val_fraction')} holds out paired images and this run has none (only {param('unlabeled')}); validate with {param('val_data')} DIR")


def _check_teacher_size_rules(labelled: TeacherLabelled, teacher: SRModel, patch_size: int) -> None:
    """Zoom-in crops always go through a live teacher, so they must be sizes it takes as they are."""
    if labelled.zoom_in <= 0:
        return
    multiple, smallest = teacher.pad_multiple, teacher.spec.min_size
    if patch_size % multiple or patch_size < smallest:
        fit = -(-max(patch_size, smallest) // multiple) * multiple
        raise UsageError(
            f"{param('zoom_in')} runs the teacher ({teacher.arch}) on {patch_size}x{patch_size} HR crops, but it takes sides that are "
            f"multiples of {multiple} and at least {smallest} (its window/size rule) and would pad this crop; use {param('patch_size')} {fit}"
        )


def distill(
    teacher: str | Path | SRModel | None = None,
    student_arch: str | None = None,
    data: str | Path | None = None,
    *,
    method: str | None = None,
    method_options: Mapping[str, Any] | None = None,
    student_options: Mapping[str, Any] | None = None,
    student_file: str | Path | None = None,
    k: int | None = None,
    boundaries: str | Sequence[tuple[int, int]] | None = None,
    teacher_cache: str | None = None,
    teacher_cache_dir: str | Path | None = None,
    config: TrainConfig | Mapping[str, Any] | str | Path | None = None,
    callback: TrainCallback | None = None,
    teacher_options: Mapping[str, Any] | None = None,
    protocol: str | None = None,
    unlabeled: str | Path | None = None,
    unlabeled_ratio: float | None = None,
    zoom_in: float | None = None,
    zoom_out: float | None = None,
    consistency: float | None = None,
    **engine_options: Any,
) -> TrainResult:
    """Distil ``teacher`` into a fresh ``student_arch`` (or ``student_file``) on the images in ``data``.

    ``engine_options`` are the training options of ``srdistill train`` (``steps``, ``batch_size``,
    ``max_time``, ``lr``, ``seed``, ``output``, ``run_dir``, ``resume``, ...); the output is the
    plain student. ``config`` is a TrainConfig, a mapping of those options, or a TOML file (its
    ``[distill]`` table gives the settings below it). ``run_dir=..., resume="auto"`` continues an
    interrupted run: teacher, student, method and their options come from its ``distill.json``
    unless given again. Settings left None take the method's and the engine's defaults; the
    default method is ``logits`` (the best measured at CPU budgets, docs/distilling.md).
    ``protocol="paper"`` applies the MiPKD paper's training (settings.PROTOCOLS) under any
    options given explicitly.

    Teacher-labelled samples (docs/distilling.md, "Distilling on your own images"): ``unlabeled``
    is a folder of images at the resolution the student receives, labelled by the teacher alone;
    with ``data`` too, ``unlabeled_ratio`` of the samples come from it (default 0.5), without
    ``data`` all do. ``zoom_in``/``zoom_out`` are probabilities per paired-image sample of feeding
    an HR crop / a twice-shrunk LR crop instead, labelled by the teacher; ``consistency`` the
    probability that a teacher-labelled sample goes through a flip/transpose undone on the output.
    """
    config_file = Path(config) if isinstance(config, (str, Path)) else None
    if isinstance(config, TrainConfig):
        engine = dict(config.stored())
    else:
        engine = dict(config) if isinstance(config, Mapping) else {}
    # A TrainConfig always holds a scale (default 4); only an explicitly given one is checked.
    scale = engine_options.get("scale") or (None if isinstance(config, TrainConfig) else engine.get("scale"))
    engine.update({key: value for key, value in engine_options.items() if value is not None})
    if data is not None:
        engine["data"] = str(data)
    explicit = DistillSettings(
        teacher=teacher, teacher_options=teacher_options or {}, student_arch=student_arch,
        student_options=student_options or {}, student_file=student_file, method=method,
        method_options=method_options or {}, k=k, boundaries=boundaries, teacher_cache=teacher_cache,
        teacher_cache_dir=teacher_cache_dir, protocol=protocol, unlabeled=unlabeled, unlabeled_ratio=unlabeled_ratio,
        zoom_in=zoom_in, zoom_out=zoom_out, consistency=consistency,
    )
    prepared = prepare_run(explicit, engine, config_file=config_file, scale=int(scale) if scale is not None else None)
    return prepared.run(callback)


class _RecordSettings(TrainCallback):
    """Writes ``distill.json`` into the run folder when training starts (rank 0), so that a resumed
    run (``run_dir=..., resume="auto"``) finds teacher, student and method again; forwards every
    event to the caller's callback."""

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

    def on_info(self, text: str) -> None:
        self.inner.on_info(text)

    def on_message(self, text: str) -> None:
        self.inner.on_message(text)

    def on_end(self, summary: dict[str, Any]) -> None:
        self.inner.on_end(summary)


def run_plan(
    plan: DistillPlan,
    config: TrainConfig,
    *,
    callback: TrainCallback | None = None,
    settings: Mapping[str, Any] | None = None,
) -> TrainResult:
    """Train the planned student on the engine; ``settings`` (:meth:`DistillSettings.recorded`) go
    to ``distill.json`` in the run folder."""
    if settings is not None:
        callback = _RecordSettings(callback, dict(settings))
    return train(config, objective=plan.objective, student=plan.student, callback=callback, provenance=plan.provenance())
