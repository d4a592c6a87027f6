"""What to distil: teacher, student, method and their options, as one value with one precedence.

The same settings arrive from up to four places; :meth:`DistillSettings.layered` merges them, and
both ``distill()`` and ``srdistill distill`` go through it:

1. explicit arguments (Python keyword arguments, command-line flags),
2. the ``[distill]`` table of a TOML configuration (:meth:`DistillSettings.from_toml`),
3. the run folder being resumed (``distill.json``, :meth:`DistillSettings.from_run_dir`),
4. defaults (method ``logits``, teacher cache ``auto``; under ``protocol = "paper"``: method
   ``mipkd``, teacher cache ``off``).

A higher layer wins key by key. Method options merge per option: ``method_options={"l_feat": 0.25}``
over a file's ``method_opt = { l_feat = 0.5, bpm_every = 2 }`` keeps ``bpm_every = 2``; a layer's
options belong to that layer's method, though, and are dropped when another method is chosen above
it. Student options work the same way with the student architecture. ``k`` and ``boundaries`` are
one choice: the highest layer that gives either decides both.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError, param

if TYPE_CHECKING:
    from .api import DistillPlan

SETTINGS_FILE = "distill.json"
# The default is the method with the best measured evidence at a CPU budget (benchmarks/RESULTS.md,
# kd_quality, 2400 steps of 8 x 32x32 patches, two teachers, 2 seeds): logits-KD (l_kd=3) tied mipkd-lite,
# whose step costs 1.2x, and beat the paper's mipkd (about 5x its step cost) by 0.30-0.43 dB on Set5. A run
# that falls back to it says so first (DEFAULT_METHOD_NOTE).
DEFAULT_METHOD = "logits"
DEFAULT_METHOD_NOTE = (
    "method logits (the default): at the measured CPU budget (2400 steps, 2 seeds) it matched mipkd-lite within "
    "0.01 dB at a cheaper step, and the paper's mipkd lost to it by 0.30-0.43 dB on Set5 at about 5x its step cost; "
    "--method mipkd runs the paper's method (docs/distilling.md)"
)
DEFAULT_TEACHER_CACHE = "auto"


@dataclass(frozen=True)
class Protocol:
    """A training recipe applied to any pair: training options (below flags and the config file's
    own keys), the method and its teacher signal (below any layer that names them)."""

    name: str
    summary: str
    engine: Mapping[str, Any]
    hr_patch: int  # HR pixels a side: the LR patch is hr_patch // scale
    method: str
    teacher_cache: str

    def engine_defaults(self, scale: int) -> dict[str, Any]:
        return {**self.engine, "patch_size": self.hr_patch // scale}


PROTOCOLS: dict[str, Protocol] = {
    "paper": Protocol(
        name="paper",
        summary="the MiPKD paper's training: HR patches 192 px (48 LR px at x4) with flips and rotations, batch 16, "
        "Adam (0.9, 0.99) lr 1e-4 halved after 200k of 250k steps, EMA 0.999, float32, the teacher live on every batch, "
        "mipkd's paper options",
        # Milestones are fractions of the run: 0.8 of 250k steps is 200k; a shorter run halves at 0.8 of its length.
        # The schedule is issue 12's statement of the paper; shared/docs/MIPKD.md reads it as x0.1 at 100k and 200k
        # (milestones = [0.4, 0.8], gamma = 0.1 in a config file override it). EMA 0.999 is from MIPKD.md.
        engine={"batch_size": 16, "lr": 1e-4, "schedule": "multistep", "milestones": [0.8], "gamma": 0.5,
                "warmup": 0, "steps": 250_000, "ema": 0.999, "precision": "fp32"},
        hr_patch=192,
        method="mipkd",
        teacher_cache="off",
    ),
}


def get_protocol(name: str | None) -> Protocol | None:
    if name is None:
        return None
    if name not in PROTOCOLS:
        raise UsageError(f"{param('protocol')} must be one of {', '.join(PROTOCOLS)}, got {name!r}")
    return PROTOCOLS[name]

# The [distill] table's keys, spelled like the command's flags, and the setting each one fills.
TOML_KEYS: dict[str, tuple[str, type]] = {
    "teacher": ("teacher", str), "teacher_opt": ("teacher_options", dict), "student_arch": ("student_arch", str), "student_opt": ("student_options", dict),
    "student": ("student_file", str), "method": ("method", str), "method_opt": ("method_options", dict),
    "K": ("k", int), "boundaries": ("boundaries", str), "teacher_cache": ("teacher_cache", str),
    "teacher_cache_dir": ("teacher_cache_dir", str), "protocol": ("protocol", str),
    # Teacher-labelled samples (data/teacher_labelled.py).
    "unlabeled": ("unlabeled", str), "unlabeled_ratio": ("unlabeled_ratio", float), "zoom_in": ("zoom_in", float),
    "zoom_out": ("zoom_out", float), "consistency": ("consistency", float),
}
# The settings of teacher-labelled samples, as DistillSettings fields (data.teacher_labelled.TeacherLabelled).
TEACHER_LABELLED_KEYS = ("unlabeled", "unlabeled_ratio", "zoom_in", "zoom_out", "consistency")


@dataclass(frozen=True)
class DistillSettings:
    """One layer of settings, or (after :meth:`layered`) the resolved ones. None: not given."""

    teacher: Any = None  # a model file, a bundled name ("teacher") or an SRModel
    teacher_options: Mapping[str, Any] = field(default_factory=dict)  # hyperparameters detection cannot see
    student_arch: str | None = None
    student_options: Mapping[str, Any] = field(default_factory=dict)
    student_file: str | Path | None = None
    method: str | None = None
    method_options: Mapping[str, Any] = field(default_factory=dict)
    k: int | None = None
    boundaries: str | Sequence[tuple[int, int]] | None = None
    teacher_cache: str | None = None
    teacher_cache_dir: str | Path | None = None
    protocol: str | None = None  # a name in PROTOCOLS
    # Recorded by a run: a resumed run refuses a different teacher file.
    teacher_sha256: str | None = None
    # Teacher-labelled samples: a folder of LR-sized images, its share of the samples, and the
    # zoom-in / zoom-out / consistency probabilities (data/teacher_labelled.py; None: not given).
    unlabeled: str | Path | None = None
    unlabeled_ratio: float | None = None
    zoom_in: float | None = None
    zoom_out: float | None = None
    consistency: float | None = None

    # -- the layers -------------------------------------------------------------------------------
    @classmethod
    def from_toml(cls, path: str | Path, document: Mapping[str, Any] | None = None) -> DistillSettings:
        """The ``[distill]`` table of a TOML file (``document``: the file already parsed)."""
        if document is None:
            from ..train.config import load_toml

            document = load_toml(path)
        table = document.get("distill", {})
        if not isinstance(table, Mapping):
            raise UsageError(f"{path}: distill must be a table ([distill]) of {', '.join(TOML_KEYS)}")
        values: dict[str, Any] = {}
        for key, value in table.items():
            if key not in TOML_KEYS:
                raise UsageError(f"{path}: unknown key {key!r} in [distill]; known keys: {', '.join(TOML_KEYS)}")
            name, kind = TOML_KEYS[key]
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)  # zoom_in = 0 is a probability too
            if not isinstance(value, kind) or isinstance(value, bool):
                expected = "a table" if kind is dict else ("a number" if kind is float else kind.__name__)
                raise UsageError(f"{path}: [distill] {key} = {value!r} is not {expected}")
            values[name] = value
        return cls(**values)

    @classmethod
    def from_run_dir(cls, run_dir: str | Path) -> DistillSettings:
        """What a run recorded in ``run_dir/distill.json``; empty settings when it recorded none."""
        path = Path(run_dir) / SETTINGS_FILE
        if not path.is_file():
            return cls()
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(saved, dict):
                raise ValueError("not a JSON object")
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise UsageError(
                f"{path} is unreadable ({exc}); pass {param('teacher')}, {param('student_arch')} and {param('method')} again"
            ) from None
        known = {f.name for f in fields(cls)}
        # Keys a later version may add are left to it; the ones this version knows are used.
        return cls(**{k: v for k, v in saved.items() if k in known and v is not None})

    @classmethod
    def layered(cls, *layers: DistillSettings | None) -> DistillSettings:
        """Merge ``layers``, highest precedence first (explicit, TOML, run folder; None skipped),
        over the defaults; see the module doc for the rules."""
        present = [layer for layer in layers if layer is not None]
        lowest_first = present[::-1]

        def first(name: str) -> Any:
            return next((getattr(layer, name) for layer in present if getattr(layer, name) is not None), None)

        def first_nonempty(name: str) -> Mapping[str, Any]:
            return next((getattr(layer, name) for layer in present if getattr(layer, name)), {})

        protocol = get_protocol(first("protocol"))
        default_method = protocol.method if protocol else DEFAULT_METHOD
        method = first("method") or default_method
        student_arch = first("student_arch")
        chosen = next((layer for layer in present if layer.k is not None or layer.boundaries is not None), None)
        return cls(
            teacher=first("teacher"),
            teacher_options=dict(first_nonempty("teacher_options")),
            student_arch=student_arch,
            student_options=_owned_options(lowest_first, "student_options", "student_arch", student_arch, None),
            student_file=first("student_file"),
            method=method,
            method_options=_owned_options(lowest_first, "method_options", "method", method, default_method),
            k=chosen.k if chosen else None,
            boundaries=chosen.boundaries if chosen else None,
            teacher_cache=first("teacher_cache") or (protocol.teacher_cache if protocol else DEFAULT_TEACHER_CACHE),
            teacher_cache_dir=first("teacher_cache_dir"),
            protocol=protocol.name if protocol else None,
            teacher_sha256=first("teacher_sha256"),
            **{name: first(name) for name in TEACHER_LABELLED_KEYS},
        )

    def teacher_labelled(self):
        """These settings' :class:`~srdistill.data.teacher_labelled.TeacherLabelled` (inactive when none is given)."""
        from ..data.teacher_labelled import TeacherLabelled

        return TeacherLabelled(
            unlabeled=self.unlabeled, unlabeled_ratio=self.unlabeled_ratio, zoom_in=self.zoom_in or 0.0,
            zoom_out=self.zoom_out or 0.0, consistency=self.consistency or 0.0,
        )

    # -- what a run records -------------------------------------------------------------------------
    def recorded(self, plan: DistillPlan) -> dict[str, Any]:
        """``distill.json`` of a run planned from these settings: the files actually loaded (absolute,
        so that a bundled name is not recorded relative to the folder the run started in) and the
        method's resolved options."""
        return {
            "teacher": str(plan.teacher_file.resolve()) if plan.teacher_file else None,
            "teacher_sha256": plan.teacher_sha256,
            "teacher_options": dict(self.teacher_options),
            "student_arch": self.student_arch or plan.student.preset or plan.student.arch,
            "student_options": dict(self.student_options),
            "student_file": str(plan.student_file.resolve()) if plan.student_file else None,
            "method": plan.method.id,
            "method_options": dict(plan.options),
            "boundaries": ",".join(f"{b.teacher_index}:{b.student_index}" for b in plan.boundaries) or None,
            "teacher_cache": self.teacher_cache,
            "teacher_cache_dir": str(Path(self.teacher_cache_dir).resolve()) if self.teacher_cache_dir else None,
            "protocol": self.protocol,
            "unlabeled": str(Path(self.unlabeled).expanduser().resolve()) if self.unlabeled else None,
            "unlabeled_ratio": self.unlabeled_ratio,
            "zoom_in": self.zoom_in,
            "zoom_out": self.zoom_out,
            "consistency": self.consistency,
        }



def _owned_options(
    lowest_first: list[DistillSettings], options: str, owner: str, chosen: str | None, default_owner: str | None,
) -> dict[str, Any]:
    """Per-key merge of the ``options`` of the layers whose ``owner`` (their own, or else the one
    in force below them) is the ``chosen`` one: a method's options mean nothing to another method."""
    merged: dict[str, Any] = {}
    below = default_owner
    for layer in lowest_first:
        below = getattr(layer, owner) or below
        if below == chosen:
            merged.update(getattr(layer, options) or {})
    return merged
