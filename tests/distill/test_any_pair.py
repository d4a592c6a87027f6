"""Any teacher family x any student family: two steps of every registered method end in a plain
student that saves, loads and equals a freshly built one in layout.

Every registered family (plugins included) is distilled into itself and, along a ring, into
another family and from a third (the default run). The slow run adds every other pair of
srdistill's own families, and each plugin family to and from EDSR: a plugin that registers a
dozen families (srdistill-spandrel) would otherwise multiply the matrix by its square."""

from __future__ import annotations

import itertools

import pytest
import torch
from distill_helpers import FAMILIES, METHOD_IDS, PATCH, frozen_teacher, objective, ring_pairs, small, train_steps

from srdistill.archs.registry import ARCHS
from srdistill.models import load_model, save_model

DIAGONAL = [(f, f) for f in FAMILIES]
CROSS = ring_pairs(FAMILIES)
BUILTIN = [f for f in FAMILIES if ARCHS.provenance(f).builtin]
EVERY_PAIR = list(itertools.product(BUILTIN, BUILTIN)) + [
    pair for f in FAMILIES if f not in BUILTIN for pair in ((f, "edsr"), ("edsr", f))
]


def hooks_of(net: torch.nn.Module) -> dict[str, tuple]:
    """Each module's forward and pre-forward hooks, by module name."""
    return {name: (tuple(m._forward_hooks.values()), tuple(m._forward_pre_hooks.values())) for name, m in net.named_modules()}


def check_pair(teacher_arch: str, student_arch: str, method: str, tmp_path) -> None:
    teacher = frozen_teacher(teacher_arch)
    student = small(student_arch)
    fresh_keys = list(small(student_arch, seed=7).net.state_dict())
    # Hooks the architecture itself installs (a plugin padding inputs to its minimum size) stay.
    own_hooks = hooks_of(student.net)
    obj = objective(method, teacher, student)
    history = train_steps(obj, student, steps=2, patch=PATCH)
    assert len(history) == 2 and all(torch.isfinite(torch.tensor(v)) for h in history for v in h.values()), history
    # Nothing of the method is left in the student: no hook, no swapped forward, same keys.
    assert hooks_of(student.net) == own_hooks
    assert not any("forward" in module.__dict__ for module in student.net.modules())
    assert list(student.net.state_dict()) == fresh_keys
    path = save_model(student, tmp_path / f"{teacher_arch}-{student_arch}-{method}.safetensors")
    loaded = load_model(path)
    assert loaded.arch == student_arch and loaded.hparams == student.hparams
    x = torch.rand(1, 3, PATCH, PATCH)
    student.net.eval()
    with torch.no_grad():
        assert torch.allclose(loaded(x), student.net(x), atol=1e-6)


@pytest.mark.parametrize("method", METHOD_IDS)
@pytest.mark.parametrize("teacher_arch,student_arch", DIAGONAL + CROSS)
def test_pairs(teacher_arch, student_arch, method, tmp_path):
    check_pair(teacher_arch, student_arch, method, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("method", METHOD_IDS)
@pytest.mark.parametrize("teacher_arch,student_arch", [p for p in EVERY_PAIR if p not in DIAGONAL + CROSS])
def test_every_other_pair(teacher_arch, student_arch, method, tmp_path):
    check_pair(teacher_arch, student_arch, method, tmp_path)
