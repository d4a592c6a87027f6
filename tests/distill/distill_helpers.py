"""Small real models, batches and objectives for the distillation tests (no mocks).

The families and methods come from the registries, so an architecture or method that gets
installed (built-in or plugin) is covered by every registry-wide test with no new test code.
"""

from __future__ import annotations

import math

import torch

from srdistill.archs.registry import list_archs
from srdistill.distill import DistillContext, match_boundaries
from srdistill.distill.registry import METHODS, get_method
from srdistill.models import SRModel
from srdistill.train.objective import Batch

SPECS = list_archs()
FAMILIES = tuple(sorted(SPECS))
METHOD_IDS = tuple(sorted(METHODS.load_all()))
SCALE = 4


def patch_side(specs, scale: int = SCALE, floor: int = 16) -> int:
    """An LR side every small instance takes as it is: at least each ``min_size`` (RFDN's
    attention needs 15) and a multiple of each ``size_multiple``, so no test runs on padding.
    The floor keeps the sizes the routing and mixer tests were written for."""
    side = max([floor] + [spec.min_size for spec in specs])
    step = math.lcm(*[spec.pad_multiple(spec.small, scale) for spec in specs if scale in spec.scales] or [1])
    return -(-side // step) * step


PATCH = patch_side(SPECS.values())


def ring_pairs(families) -> list[tuple[str, str]]:
    """Each family teaching the next one (and the last the first): every family is a teacher and a
    student of another once, which crosses token and NCHW features whenever both kinds exist."""
    return [(t, families[(i + 1) % len(families)]) for i, t in enumerate(families)] if len(families) > 1 else []


def small(arch_id: str, scale: int = SCALE, seed: int = 0, **overrides) -> SRModel:
    spec = SPECS[arch_id]
    hp = spec.resolve({**spec.small, **overrides})
    torch.manual_seed(seed)
    return SRModel(spec, scale, hp, spec.instantiate(scale, hp))


def frozen_teacher(arch_id: str, scale: int = SCALE, **overrides) -> SRModel:
    teacher = small(arch_id, scale, seed=1, **overrides)
    teacher.net.eval().requires_grad_(False)
    return teacher


def batch(n: int = 2, patch: int = PATCH, scale: int = SCALE, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    lr = torch.rand(n, 3, patch, patch, generator=g)
    hr = torch.rand(n, 3, patch * scale, patch * scale, generator=g)
    return Batch(lr, hr, torch.arange(n), torch.zeros(n, dtype=torch.long))


def objective(method: str, teacher: SRModel, student: SRModel, seed: int = 0, k: int | None = None, **options):
    spec = get_method(method)
    found = match_boundaries(teacher, student, k=k) if spec.uses_features else ()
    context = DistillContext(teacher, student, found, seed=seed, teacher_cache="off")
    return spec.create(context, options)


def weighted_total(obj, terms: dict) -> torch.Tensor:
    return sum(obj.weights.get(name, 1.0) * value for name, value in terms.items())


def train_steps(obj, student: SRModel, steps: int = 2, patch: int = PATCH) -> list[dict]:
    """A minimal step loop (what the engine does, minus data/DDP/checkpoints)."""
    extras = torch.nn.ModuleDict(obj.modules())
    params = [p for p in list(student.net.parameters()) + list(extras.parameters()) if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-3)
    student.net.train()
    history = []
    for step in range(steps):
        terms = obj.losses(batch(patch=patch, scale=student.scale, seed=step), student.net)
        opt.zero_grad()
        weighted_total(obj, terms).backward()
        opt.step()
        history.append({k: float(v.detach()) for k, v in terms.items()})
    return history
