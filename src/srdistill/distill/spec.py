"""The method spec: what the ``srdistill.methods`` entry-point group registers.

A method is a frozen :class:`MethodSpec` whose ``build(context, options)`` returns a training
:class:`~srdistill.train.objective.Objective`. Its options are data: every option has a default
whose type parses ``--method-opt key=value`` (as architecture hyperparameters do), text options
may list their allowed ``choices``, and every option has a one-line help. The resolved options
are recorded in the student's file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import UsageError, param
from ..hparams import coerce_hparams

if TYPE_CHECKING:
    from ..models import SRModel
    from ..train.objective import Objective
    from .boundaries import Boundary


# How a method gets the teacher's signals: "auto" caches them per training image when they fit in
# memory, "memory" always does, "off" runs the teacher on every batch.
CACHE_MODES = ("auto", "memory", "off")


def check_cache_mode(mode: str) -> None:
    if mode not in CACHE_MODES:
        raise UsageError(f"{param('teacher_cache')} must be one of {', '.join(CACHE_MODES)}, got {mode!r}")


@dataclass
class DistillContext:
    """Everything a method is built from."""

    teacher: SRModel
    student: SRModel
    # Matched boundaries; empty for methods that use no features.
    boundaries: tuple[Boundary, ...] = ()
    # Planned optimisation steps (None when the run is bounded by time only): for loss schedules.
    total_steps: int | None = None
    seed: int = 0
    teacher_cache: str = "auto"  # one of CACHE_MODES
    # Where cached teacher signals are kept between runs (None: not kept). Keyed by the
    # teacher file's hash, the data and the boundaries.
    teacher_cache_dir: str | None = None
    teacher_sha256: str | None = None
    # data.teacher_labelled.TeacherLabelled: unlabeled/zoom samples and label consistency (None: none).
    teacher_labelled: Any = None

    def __post_init__(self) -> None:
        check_cache_mode(self.teacher_cache)  # the one check, whoever builds the context


@dataclass(frozen=True)
class MethodSpec:
    id: str
    title: str
    build: Callable[[DistillContext, dict[str, Any]], Objective]
    options: Mapping[str, Any] = field(default_factory=dict)
    option_help: Mapping[str, str] = field(default_factory=dict)
    choices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Extra checks on resolved options (ranges); raise UsageError naming the option.
    check: Callable[[dict[str, Any]], None] | None = None
    # The method's facts, stated here only: its objective reads them from the spec.
    uses_teacher: bool = True
    uses_features: bool = False
    reference: str = ""

    def __post_init__(self) -> None:
        if not self.id or self.id != self.id.lower() or " " in self.id:
            raise ValueError(f"method id {self.id!r} must be lower-case without spaces")
        undocumented = set(self.options) - set(self.option_help)
        if undocumented:
            raise ValueError(f"method {self.id!r} options {sorted(undocumented)} have no help text")
        for key, allowed in self.choices.items():
            if self.options.get(key) not in allowed:
                raise ValueError(f"method {self.id!r} option {key!r} default is not among its choices {allowed}")

    def resolve(self, values: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Defaults, then ``values`` typed like the defaults; unknown names and bad choices fail."""
        out = dict(self.options)
        out.update(coerce_hparams(f"method {self.id}", self.options, values or {}))
        for key, allowed in self.choices.items():
            if out[key] not in allowed:
                raise UsageError(
                    f"bad value for method {self.id} option {key}: {out[key]!r} is not one of {', '.join(allowed)}"
                )
        if self.check is not None:
            self.check(out)
        return out

    def create(self, context: DistillContext, values: Mapping[str, Any] | None = None) -> Objective:
        return self.build(context, self.resolve(values))


def need(condition: bool, method: str, key: str, message: str) -> None:
    """Range check of one option: ``need(x > 0, "mipkd", "latent", "must be positive")``."""
    if not condition:
        raise UsageError(f"bad value for method {method} option {key}: {message}")
