"""Small real models, batches and objectives for the distillation tests (no mocks)."""

from __future__ import annotations

import torch

from srdistill.distill import DistillContext, match_boundaries
from srdistill.models import SRModel
from srdistill.registry import ARCHS, get_method
from srdistill.train.objective import Batch

FAMILIES = ("edsr", "rcan", "swinir", "rrdbnet", "rfdn")
METHOD_IDS = ("scratch", "logits", "fitnet", "fakd", "mipkd")
# RFDN's attention pools 7x7 after a stride-2 conv: inputs need 15+ pixels a side.
PATCH = 16


def small(arch_id: str, scale: int = 4, seed: int = 0, **overrides) -> SRModel:
    spec = ARCHS.get(arch_id)
    hp = spec.resolve({**spec.small, **overrides})
    torch.manual_seed(seed)
    return SRModel(spec, scale, hp, spec.instantiate(scale, hp))


def frozen_teacher(arch_id: str, scale: int = 4, **overrides) -> SRModel:
    teacher = small(arch_id, scale, seed=1, **overrides)
    teacher.net.eval().requires_grad_(False)
    return teacher


def batch(n: int = 2, patch: int = PATCH, scale: int = 4, seed: int = 0) -> Batch:
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
