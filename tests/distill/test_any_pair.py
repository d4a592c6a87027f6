"""Any teacher family x any student family (every registered one, plugins included): two steps of
every registered method end in a plain student that saves, loads and equals a freshly built one
in layout."""

from __future__ import annotations

import itertools

import pytest
import torch
from distill_helpers import FAMILIES, METHOD_IDS, PATCH, frozen_teacher, objective, ring_pairs, small, train_steps

from srdistill.models import load_model, save_model

DIAGONAL = [(f, f) for f in FAMILIES]
CROSS = ring_pairs(FAMILIES)
EVERY_PAIR = list(itertools.product(FAMILIES, FAMILIES))


def check_pair(teacher_arch: str, student_arch: str, method: str, tmp_path) -> None:
    teacher = frozen_teacher(teacher_arch)
    student = small(student_arch)
    fresh_keys = list(small(student_arch, seed=7).net.state_dict())
    obj = objective(method, teacher, student)
    history = train_steps(obj, student, steps=2, patch=PATCH)
    assert len(history) == 2 and all(torch.isfinite(torch.tensor(v)) for h in history for v in h.values()), history
    # Nothing of the method is left in the student: no hook, no swapped forward, same keys.
    for module in student.net.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks and "forward" not in module.__dict__
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
