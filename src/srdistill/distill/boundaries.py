"""Where teacher and student are compared: matched block boundaries.

Both bodies (the ordered blocks each architecture spec declares) are split into K contiguous
stages of proportional depth, and stage i of the teacher is paired with stage i of the student;
a boundary is the output of the last block of a stage. SwinIR-M (6 RSTBs) and SwinIR-S (4) with
K=2 pair ``layers.2``/``layers.1`` and ``layers.5``/``layers.3``. ``--boundaries`` overrides the
pairing with explicit block indices, as shown by ``srdistill distill --dry-run``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from ..errors import UsageError, param
from ..models import SRModel

# The automatic K stops at 2: every boundary adds a mixer (the paper's 64-wide 3x3 mixers cost
# 4.8x a student step at K=4 and 2.9x at K=2 for edsr-baseline -> a 32 ch / 4 block student), and
# no measurement here showed more boundaries paying (benchmarks/RESULTS.md). --K goes up to the
# shallower depth.
MAX_AUTO_K = 2


class BoundaryError(UsageError):
    """Boundaries cannot be matched (no blocks, K too large, an index out of range)."""


@dataclass(frozen=True)
class Boundary:
    """One matched pair of block outputs."""

    teacher_index: int
    teacher_block: str
    teacher_channels: int
    student_index: int
    student_block: str
    student_channels: int

    def as_dict(self) -> dict:
        return asdict(self)


def stage_ends(depth: int, k: int) -> list[int]:
    """Index of the last block of each of ``k`` contiguous stages of proportional length."""
    # Round half up, so 5 blocks in 2 stages give 3 + 2: the teacher's extra block goes first.
    return [math.floor(i * depth / k + 0.5) - 1 for i in range(1, k + 1)]


def auto_k(teacher_depth: int, student_depth: int, max_k: int = MAX_AUTO_K) -> int:
    """The largest K <= ``max_k`` dividing both depths; failing that, min(max_k, shallower depth)
    (stages of proportional, not equal, length)."""
    limit = min(max_k, teacher_depth, student_depth)
    for k in range(limit, 1, -1):
        if teacher_depth % k == 0 and student_depth % k == 0:
            return k
    return limit


def _blocks_of(model: SRModel, role: str, method: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
    blocks, channels = model.blocks, model.block_channels
    if not blocks:
        raise BoundaryError(
            f"{role} architecture {model.arch!r} declares no body blocks (its spec's blocks() is empty), so method "
            f"{method!r} cannot hook its features; use {param('method')} logits or scratch, or declare blocks in the arch plugin"
        )
    if len(blocks) != len(channels):
        raise BoundaryError(
            f"{role} architecture {model.arch!r} declares {len(blocks)} blocks but {len(channels)} block channels; "
            f"fix the arch spec's block_channels()"
        )
    return blocks, channels


def parse_boundaries(text: str) -> list[tuple[int, int]]:
    """``"5:1,11:3"`` -> ``[(5, 1), (11, 3)]`` (teacher block index : student block index)."""
    pairs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        match = re.fullmatch(r"(-?\d+)\s*:\s*(-?\d+)", item)
        if not match:
            raise BoundaryError(
                f"{param('boundaries')} item {item!r} must be TEACHER:STUDENT block indices, e.g. 7:1,15:3 "
                f"({param('dry_run', True)} lists the indices)"
            )
        pairs.append((int(match.group(1)), int(match.group(2))))
    if not pairs:
        raise BoundaryError(f"{param('boundaries')} is empty; give TEACHER:STUDENT block indices, e.g. 7:1,15:3")
    return pairs


def match_boundaries(
    teacher: SRModel,
    student: SRModel,
    *,
    k: int | None = None,
    explicit: Sequence[tuple[int, int]] | str | None = None,
    method: str = "this method",
) -> tuple[Boundary, ...]:
    """Matched boundaries: ``explicit`` index pairs, else K proportional stages (K=None: automatic)."""
    t_blocks, t_channels = _blocks_of(teacher, "teacher", method)
    s_blocks, s_channels = _blocks_of(student, "student", method)
    if explicit is not None:
        if k is not None:
            raise BoundaryError(f"give either {param('k')} or {param('boundaries')}, not both ({param('boundaries')} fixes K)")
        pairs = parse_boundaries(explicit) if isinstance(explicit, str) else [tuple(p) for p in explicit]
        for t, s in pairs:
            if not 0 <= t < len(t_blocks):
                raise BoundaryError(
                    f"{param('boundaries')} {t}:{s}: teacher block index {t} is out of range; teacher {teacher.arch} has "
                    f"{len(t_blocks)} blocks (0..{len(t_blocks) - 1})"
                )
            if not 0 <= s < len(s_blocks):
                raise BoundaryError(
                    f"{param('boundaries')} {t}:{s}: student block index {s} is out of range; student {student.arch} has "
                    f"{len(s_blocks)} blocks (0..{len(s_blocks) - 1})"
                )
        for (t0, s0), (t1, s1) in zip(pairs, pairs[1:]):
            if not (t1 > t0 and s1 > s0):
                raise BoundaryError(
                    f"{param('boundaries')} must increase on both sides (got {t0}:{s0} then {t1}:{s1}); list them in forward order"
                )
    else:
        if k is None or k == 0:
            k = auto_k(len(t_blocks), len(s_blocks))
        if k < 1:
            raise BoundaryError(f"{param('k')} must be at least 1, got {k}")
        if k > len(t_blocks) or k > len(s_blocks):
            raise BoundaryError(
                f"{param('k')} {k} is larger than the depth of the {'teacher' if k > len(t_blocks) else 'student'} "
                f"(teacher {teacher.arch}: {len(t_blocks)} blocks, student {student.arch}: {len(s_blocks)}); "
                f"use {param('k')} {min(len(t_blocks), len(s_blocks))} or less"
            )
        pairs = list(zip(stage_ends(len(t_blocks), k), stage_ends(len(s_blocks), k)))
    return tuple(
        Boundary(t, t_blocks[t], int(t_channels[t]), s, s_blocks[s], int(s_channels[s])) for t, s in pairs
    )


def format_boundaries(boundaries: Sequence[Boundary]) -> str:
    """The canonical ``boundaries`` text that reproduces a matching."""
    return ",".join(f"{b.teacher_index}:{b.student_index}" for b in boundaries)
