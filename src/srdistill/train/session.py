"""A training run's state and files: run folder, data, model and optimiser set-up, checkpoints
and resume. :class:`RunState` is the one object that holds them; the step loop in
:mod:`srdistill.train.loop` drives it and keeps no state of its own."""

from __future__ import annotations

import copy
import json
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from .._version import __version__
from ..data.folders import ImagePair
from ..data.teacher_labelled import build_sample_stream
from ..data.dataset import (
    PatchDataset,
    find_training_images,
    hold_out,
    load_images,
    load_validation,
)
from ..errors import DataError, SrdistillError, UsageError, param
from ..io.atomic import atomic_write, check_writable
from ..io.checkpoints import CheckpointError, list_checkpoints, load_checkpoint, load_latest, save_checkpoint
from ..archs.registry import resolve_arch
from ..models import SRModel, build_model, load_model
from ..provenance import dataset_fingerprint, lr_source
from .config import TrainConfig, to_toml
from .ddp import DistContext
from .ema import ModelEMA
from .machine import LoaderSettings, autocast, configure_backends, default_threads, loader_settings, resolve_precision
from .objective import Objective, StepModule, Supervised, TrainingData
from .progress import TrainCallback
from .records import MetricsLog, draw_curve
from .seeding import capture_rng, restore_rng, seed_rank_stream


def model_identity(model: SRModel) -> dict[str, Any]:
    return {"arch": model.spec.id, "scale": model.scale, "hparams": json.loads(json.dumps(model.hparams))}


def _identity_text(identity: dict[str, Any]) -> str:
    short = ", ".join(f"{k}={v}" for k, v in identity["hparams"].items())
    return f"{identity['arch']} x{identity['scale']} ({short})"


def build_student(config: TrainConfig) -> SRModel:
    """The preset (or arch id) with ``arch_opt`` overrides, initialised from the run seed."""
    return build_model(config.arch, config.scale, config.arch_opt, seed=config.seed)


def initialise_from(model: SRModel, path: str | Path) -> str:
    """Copy into ``model`` every tensor of the model file at ``path`` with the same name and shape
    (all of them for the same arch and size; the body when only the scale differs, as EDSR trains
    x3/x4 from its x2 model). Returns a one-line account of what was taken."""
    try:
        source = load_model(path)
    except SrdistillError as exc:
        raise type(exc)(f"{param('init')} {exc.template}") from None
    if source.spec.id != model.spec.id:
        raise UsageError(
            f"{param('init')} {path} is a {source.spec.id} model but the run trains {model.spec.id}; "
            f"pass a {model.spec.id} file (or use `srdistill distill` to learn from another arch)"
        )
    theirs = source.net.state_dict()
    mine = model.net.state_dict()
    taken = {k: v for k, v in theirs.items() if k in mine and mine[k].shape == v.shape}
    # Frozen constants (EDSR's mean shift, the 3-channel output bias) fit any width: only the
    # trained tensors tell whether the file is the same network.
    trained = {name for name, p in model.net.named_parameters() if p.requires_grad}
    if len(trained & set(taken)) * 2 < len(trained):
        raise UsageError(f"{param('init')} {path}: only {len(trained & set(taken))} of {len(trained)} trained tensors of "
                         f"{model.spec.id} x{model.scale} match it by name and shape; check {param('arch_opt')} against `srdistill inspect {path}`")
    with torch.no_grad():
        for key, value in taken.items():
            mine[key].copy_(value)
    left = sorted(set(mine) - set(taken))
    unused = len(set(theirs) - set(taken))
    rest = f"; {len(left)} kept fresh: {', '.join(left[:4])}{' ...' if len(left) > 4 else ''}" if left else ""
    rest += f"; {unused} of the file's tensors unused" if unused else ""
    return f"initialised {len(taken)} of {len(mine)} tensors from {path} (x{source.scale}){rest}"


def default_run_dir(config: TrainConfig) -> str:
    name = config.arch.replace("/", "_") if config.arch else "run"
    return str(Path("runs") / f"{name}-x{config.scale}-{time.strftime('%Y%m%d-%H%M%S')}")


class RunState:
    """Everything a run holds between steps, and how it is built, saved and restored."""

    def __init__(self, config, ctx: DistContext, device, objective, student, callback, provenance):
        self.config: TrainConfig = copy.deepcopy(config)
        self.ctx = ctx
        self.device: torch.device = device
        self.objective_arg = objective
        self.student_arg = student
        self.callback: TrainCallback = callback
        self.provenance = provenance
        self.step = 0
        self.samples_seen = 0
        self.elapsed_before = 0.0
        self.last_val: dict[str, Any] | None = None
        self.resumed_from: Path | None = None
        self.log: MetricsLog | None = None
        # Set up by prepare(), in this order; None until then.
        self.run_dir: Path | None = None
        self.output: Path | None = None
        self.student: SRModel | None = None
        self.precision: str | None = None
        self.images = None  # data.dataset.ImageCache
        self.val_images: list = []
        self.dataset: PatchDataset | None = None
        self.loader: LoaderSettings | None = None
        self.workers = 0
        self.data_summary: dict[str, Any] = {}
        self.data_record: dict[str, Any] = {}
        self.threads = 0
        self.backends: dict[str, Any] = {}  # what configure_backends set, for the records
        self.objective: Objective | None = None
        self.step_module: StepModule | None = None
        self.model: torch.nn.Module | None = None  # step_module, or its DDP wrapper
        self.params: list[torch.nn.Parameter] = []
        self.optimizer: torch.optim.Optimizer | None = None
        self.ema: ModelEMA | None = None
        self.scaler: torch.amp.GradScaler | None = None
        # Advanced by the loop.
        self.current_lr = self.config.lr
        self.loop_start: float | None = None
        self.last_checkpoint_time: float | None = None

    # -- messages ---------------------------------------------------------------------------------
    def note(self, text: str) -> None:
        """A warning: the run went differently than asked (a fallback, a skipped step)."""
        if self.ctx.is_main:
            self.callback.on_message(text)

    def info(self, text: str) -> None:
        """What the run is doing (resuming, caching, initialising): shown, not labelled a warning."""
        if self.ctx.is_main:
            self.callback.on_info(text)

    # -- setup --------------------------------------------------------------------------------------
    def prepare(self) -> bool:
        """Build everything, restore a checkpoint if resuming, write the run files. True when the
        resumed checkpoint is already the last step (only the final model is left to write)."""
        c = self.config
        self._setup_run_dir()
        resume_state = self._find_resume()
        self.student = self.student_arg if self.student_arg is not None else build_student(c)
        if c.init and resume_state is None:
            if self.student_arg is not None:
                raise UsageError(f"{param('init')} is for `srdistill train`; a distillation starts its student from {param('student_file')} FILE")
            self.info(initialise_from(self.student, c.init))
        c.arch_opt = {k: v for k, v in self.student.hparams.items() if self._differs_from_preset(k)}
        if resume_state is not None:
            self._check_identity(resume_state)  # before any data is read
        self.precision = resolve_precision(c.precision, self.device, self.student.spec.safe_dtypes, self.student.spec.id)
        self._build_data()
        self.threads = c.threads or default_threads(self.ctx.local_world_size)
        torch.set_num_threads(self.threads)
        self.backends = configure_backends(self.device)
        self._build_training()
        if resume_state is not None:
            self._restore(resume_state)
        else:
            seed_rank_stream(c.seed, self.ctx.rank)
        done = resume_state is not None and c.steps is not None and self.step >= c.steps
        if done and (self.run_dir / "model.safetensors").exists():
            raise UsageError(
                f"{self.resumed_from} is already at step {self.step} of {param('steps')} {c.steps}; pass a larger {param('steps')} to train further"
            )
        self._write_run_files()
        return done


    def _differs_from_preset(self, key: str) -> bool:
        spec = self.student.spec
        preset = resolve_arch(self.config.arch)[1] if self.config.arch else None
        base = spec.resolve(preset=preset)
        return base.get(key) != self.student.hparams[key]

    def _setup_run_dir(self) -> None:
        c = self.config
        if c.run_dir is None:
            c.run_dir = default_run_dir(c)
        c.run_dir = self.ctx.broadcast_object(c.run_dir)  # a default name holds a timestamp
        self.run_dir = Path(c.run_dir)
        self.output = Path(c.output) if c.output else self.run_dir / "model.safetensors"
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise UsageError(f"{param('run_dir')} {self.run_dir} is a file; give a folder")
        fresh = not c.resume
        has_run = (self.run_dir / "config.toml").exists() or bool(list_checkpoints(self.run_dir))
        if fresh and has_run:
            raise UsageError(
                f"run folder {self.run_dir} already holds a run; continue it with {param('resume', 'auto')}, or choose another {param('run_dir')}"
            )
        if c.output:
            check_writable(self.output, overwrite=c.overwrite)

    def _find_resume(self) -> dict[str, Any] | None:
        c = self.config
        if not c.resume:
            return None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if c.resume == "auto":
                found = load_latest(self.run_dir)
            else:
                path = Path(c.resume)
                try:
                    found = (path, load_checkpoint(path))
                except CheckpointError as exc:
                    raise CheckpointError(f"{exc.template}; use {param('resume', 'auto')} to fall back to the newest readable checkpoint") from None
        for w in caught:
            self.note(str(w.message))
        if found is None:
            self.info(f"no checkpoint in {self.run_dir}; starting a new run")
            return None
        self.resumed_from, state = found
        return state

    def _build_data(self) -> None:
        c = self.config
        # Distillation may add teacher-labelled samples (data/teacher_labelled.py), or have only those.
        labelled = getattr(self.objective_arg, "teacher_labelled", None)
        labelled = labelled if labelled is not None and labelled.active else None
        if c.data is None and labelled is not None:
            self._build_teacher_labelled_data(labelled)
            return
        contents = find_training_images(c.data, c.scale)
        # Absolute, so that the saved config resumes from any working directory.
        c.data = str(Path(c.data).expanduser().resolve())
        if contents.paired and c.hr_downscale != 1.0:
            raise DataError(
                f"{param('hr_downscale')} cannot be used with the paired folder {contents.lr_dir} (its LR files match the original HR); "
                f"point {param('data')} at the HR folder alone to generate LR"
            )
        train_pairs, held_out = hold_out(contents, c.val_fraction, c.seed)
        val_pairs = self._given_validation_pairs() or held_out
        self.images = load_images(
            train_pairs,
            scale=c.scale,
            patch_size=c.patch_size,
            hr_downscale=c.hr_downscale,
            cache=c.cache,
            processes_per_node=self.ctx.local_world_size,
            where=str(contents.hr_dir),
        )
        self.val_images = []
        if val_pairs and self.ctx.is_main:
            downscale = c.hr_downscale if not c.val_data else 1.0
            self.val_images = load_validation(val_pairs, scale=c.scale, crop=c.val_crop, hr_downscale=downscale)
        self.dataset = PatchDataset(self.images, patch_size=c.patch_size, seed=c.seed)
        if labelled is not None:
            self.dataset = build_sample_stream(self.dataset, labelled, scale=c.scale, patch_size=c.patch_size, seed=c.seed,
                                               cache=c.cache, processes_per_node=self.ctx.local_world_size)
        cached = self.dataset.cached if labelled is not None else self.images.cached  # unlabeled images too
        self.loader = loader_settings(self.device, c.workers, cached)
        self.workers = self.loader.workers
        self.data_summary = {
            "data": str(contents.hr_dir),
            "lr_source": str(contents.lr_dir) if contents.lr_dir else "generated (MATLAB bicubic)",
            "images": len(self.images.images),
            "skipped": len(self.images.skipped),
            "megapixels": round(self.images.megapixels, 2),
            "hr_downscale": c.hr_downscale,
            "cached": cached,
            "validation_images": len(val_pairs),
        }
        # What the model file records instead of the paths above: data named by what identifies it
        # anywhere (srdistill.provenance). Only rank 0 writes the file, so only it hashes the bytes.
        self.data_record: dict[str, Any] = {}
        if self.ctx.is_main:
            self.data_record = {"data": dataset_fingerprint(contents.root, contents.pairs),
                                "lr_source": lr_source(contents.root, contents.lr_dir)}
            if c.val_data:
                self.data_record["validation_data"] = dataset_fingerprint(c.val_data, val_pairs)
        if labelled is not None:
            self._record_teacher_labelled()

    def _given_validation_pairs(self) -> list:
        """The pairs of ``val_data``: one set (Set5/) or a folder of sets (benchmarks/), as `eval` takes them."""
        c = self.config
        if not c.val_data:
            return []
        from ..evaluate import find_sets

        # Absolute, so that the saved config resumes from any working directory.
        c.val_data = str(Path(c.val_data).expanduser().resolve())
        return [pair for eval_set in find_sets(c.val_data, c.scale, what="val_data") for pair in eval_set.pairs]

    def _build_teacher_labelled_data(self, labelled) -> None:
        """A run on teacher-labelled images alone: no paired data, validation only from ``val_data``."""
        c = self.config
        # (--val-fraction, which needs paired images, was refused by distill/api.py.)
        val_pairs = self._given_validation_pairs()
        self.dataset = build_sample_stream(None, labelled, scale=c.scale, patch_size=c.patch_size, seed=c.seed,
                                           cache=c.cache, processes_per_node=self.ctx.local_world_size)
        self.images = self.dataset.unlabeled
        self.val_images = load_validation(val_pairs, scale=c.scale, crop=c.val_crop) if val_pairs and self.ctx.is_main else []
        self.loader = loader_settings(self.device, c.workers, self.images.cached)
        self.workers = self.loader.workers
        self.data_summary = {
            "data": str(self.images.folder), "lr_source": "none (unlabeled images: the teacher labels every sample)",
            "images": len(self.images), "skipped": len(self.images.skipped),
            "megapixels": round(self.images.megapixels, 2), "hr_downscale": 1.0, "cached": self.images.cached, "validation_images": len(val_pairs),
        }
        self.data_record = {}
        if self.ctx.is_main and c.val_data:
            self.data_record["validation_data"] = dataset_fingerprint(c.val_data, val_pairs)
        self._record_teacher_labelled()

    def _record_teacher_labelled(self) -> None:
        info = self.dataset.describe()
        self.data_summary["teacher_labelled"] = info
        unlabeled = self.dataset.unlabeled
        if unlabeled is not None and self.ctx.is_main:
            fingerprint = dataset_fingerprint(unlabeled.folder, [ImagePair(unlabeled.folder / name, None) for name in unlabeled.names])
            self.data_record["unlabeled_data"] = fingerprint
            # The model file names the folder, never its local path (provenance.py).
            self.data_record["teacher_labelled"] = {**info, "unlabeled": fingerprint["name"]}
            if self.config.data is None:
                self.data_record["data"] = fingerprint

    def _build_training(self) -> None:
        c = self.config
        net = self.student.net.to(self.device)
        if c.channels_last:
            net.to(memory_format=torch.channels_last)
        net.train()
        objective = self.objective_arg if self.objective_arg is not None else Supervised()
        if not isinstance(objective, Objective) and callable(objective):
            objective = objective(self.student)
        self.objective: Objective = objective
        for module in objective.frozen().values():
            module.to(self.device).eval().requires_grad_(False)
            if c.channels_last:
                module.to(memory_format=torch.channels_last)
        prepare = getattr(objective, "prepare", None)  # duck-typed objectives may not have it
        if prepare is not None:
            device, precision = self.device, self.precision
            prepare(TrainingData(self.dataset, device, lambda: autocast(device, precision),
                                 self.ctx.local_world_size, self.info))
        self.step_module = StepModule(net, objective).to(self.device)
        if self.ctx.distributed:
            import inspect

            from torch.nn.parallel import DistributedDataParallel as DDP

            # SR networks carry constant buffers only (mean shifts, attention masks); they are
            # identical after DDP's initial sync, so re-broadcasting them each step is waste.
            newer = "forward_sync_buffers" in inspect.signature(DDP.__init__).parameters
            no_buffer_sync = {"forward_sync_buffers": False} if newer else {"broadcast_buffers": False}
            self.model = DDP(
                self.step_module,
                # None: the module is already on its device and the batch is prepared by us, so DDP
                # must not move inputs (Batch.index/image stay on the CPU for methods that cache).
                device_ids=None,
                find_unused_parameters=objective.find_unused_parameters,
                **no_buffer_sync,
            )
        else:
            self.model = self.step_module
        self.params = [p for p in self.step_module.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(self.params, lr=c.lr, betas=(0.9, 0.99), weight_decay=c.weight_decay)
        self.ema = ModelEMA(net, c.ema) if c.ema > 0 else None
        self.scaler = torch.amp.GradScaler(self.device.type) if self.precision == "fp16" else None

    # -- checkpoints --------------------------------------------------------------------------------
    def _checkpoint_state(self, rng_states: list) -> dict[str, Any]:
        return {
            "format": 1,
            "version": __version__,
            "step": self.step,
            "model": self.step_module.student.state_dict(),
            "extras": {name: m.state_dict() for name, m in self.step_module.extras.items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": {"schedule": self.config.schedule, "step": self.step, "lr": self.current_lr},
            "ema": self.ema.state_dict() if self.ema else None,
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "rng": rng_states,
            # The data stream is counter based (data.dataset): its position is all the state the
            # loader and every worker have, whatever the number of workers or ranks.
            "data": {"samples_seen": self.samples_seen, "seed": self.config.seed, "world_size": self.ctx.world_size,
                     "batch_size": self.config.batch_size},
            "config": self.config.stored(),
            "arch": model_identity(self.student),
            "objective": {"name": self.objective.name, "modules": sorted(self.step_module.extras.keys())},
            "elapsed": self.elapsed(),
            "last_val": self.last_val,
        }

    def _gather_rng(self) -> list:
        mine = capture_rng()
        if not self.ctx.distributed:
            return [mine]
        import torch.distributed as dist

        gathered = [None] * self.ctx.world_size if self.ctx.is_main else None
        dist.gather_object(mine, gathered, dst=0)
        return gathered

    def save_checkpoint(self) -> Path | None:
        rng = self._gather_rng()
        error: SrdistillError | None = None
        path = None
        if self.ctx.is_main:
            try:
                path = save_checkpoint(self._checkpoint_state(rng), self.run_dir, keep=self.config.keep_checkpoints)
                self.draw_curve()
            except SrdistillError as exc:
                error = exc
        if not self.ctx.all_ok(error is None):
            raise error or SrdistillError("rank 0 could not write the checkpoint (see its message)")
        self.last_checkpoint_time = time.monotonic()
        return path

    def _check_identity(self, state: dict[str, Any]) -> None:
        mine, theirs = model_identity(self.student), state["arch"]
        if mine != theirs:
            raise UsageError(
                f"cannot resume from {self.resumed_from}: it was made with {_identity_text(theirs)} "
                f"but this run builds {_identity_text(mine)}; resume with the same {param('arch')}, {param('arch_opt')} and {param('scale')}, "
                f"or start a new {param('run_dir')}"
            )

    def _restore(self, state: dict[str, Any]) -> None:
        extras = sorted(self.step_module.extras.keys())
        if state["objective"]["name"] != self.objective.name or state["objective"]["modules"] != extras:
            raise UsageError(
                f"cannot resume from {self.resumed_from}: it was trained with objective {state['objective']['name']!r} "
                f"(modules {state['objective']['modules']}), this run uses {self.objective.name!r} (modules {extras})"
            )
        self.step_module.student.load_state_dict(state["model"])
        for name, module in self.step_module.extras.items():
            module.load_state_dict(state["extras"][name])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.ema is not None:
            if state["ema"] is not None:
                self.ema.load_state_dict(state["ema"])
            else:
                self.ema = ModelEMA(self.step_module.student, self.config.ema)
                self.info("the checkpoint has no EMA; starting the EMA from the resumed weights")
        if self.scaler is not None and state["scaler"] is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        self.samples_seen = int(state["data"]["samples_seen"])
        self.elapsed_before = float(state["elapsed"])
        self.last_val = state.get("last_val")
        rng = state["rng"]
        if len(rng) == self.ctx.world_size:
            restore_rng(rng[self.ctx.rank])
        else:  # another world size: fresh per-rank streams, derived from the seed and the step
            seed_rank_stream(self.config.seed + self.step, self.ctx.rank)
            self.info(f"resuming a {len(rng)}-process run with {self.ctx.world_size}; random streams re-derived")

    # -- files --------------------------------------------------------------------------------------
    def _write_run_files(self) -> None:
        if not self.ctx.is_main:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with atomic_write(self.run_dir / "config.toml", overwrite=True) as tmp:
            tmp.write_text(to_toml(self.config.stored()), encoding="utf-8")
        self.log = MetricsLog(self.run_dir / "metrics.jsonl")
        if self.resumed_from is not None:
            self.log.truncate_after(self.step)
            self.log.append({"step": self.step, "event": "resumed", "from": str(self.resumed_from),
                             "world_size": self.ctx.world_size})
        else:
            self.log.truncate_after(-1)

    def draw_curve(self) -> None:
        if self.log is not None:
            draw_curve(self.log.read(), self.run_dir / "curve.png", f"{self.config.arch} x{self.config.scale}: {self.run_dir.name}")

    def elapsed(self) -> float:
        """Training seconds, over every resumed part of the run."""
        if self.loop_start is None:
            return self.elapsed_before
        return self.elapsed_before + (time.monotonic() - self.loop_start)
