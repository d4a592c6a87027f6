"""Every registered method trains every registered family under reduced-precision autocast.

CI has no GPU; CPU autocast lowers the same operations CUDA autocast does, so a full training
step (the engine's :class:`Stepper`: forward under autocast, backward, gradient norm, update,
with the fp16 loss scaler where the run would use one) in bf16, and in fp16 where the student's
spec allows it, stands in for a CUDA run. Methods and families come from the registries, the
rfdn plugin included: a new method or architecture is covered without editing this file.

Each family is a teacher once and a student once (paired with the next family), so the
cross-family paths (channel adapters, size matching, a teacher unsafe in fp16) are all taken.
MiPKD routes through the Block Prior Mixer on every step, once through each network.
"""

from __future__ import annotations

import math

import pytest
import torch
from distill_helpers import FAMILIES, METHOD_IDS, SPECS, batch, frozen_teacher, objective, ring_pairs, small

from srdistill.archs.registry import list_archs
from srdistill.train.ddp import DistContext
from srdistill.train.objective import StepModule
from srdistill.train.step import Stepper

PAIRS = ring_pairs(FAMILIES)
# A step of each kind MiPKD has: a routed pass through the teacher and one through the student.
MIPKD_STEPS = ({"bpm_every": 1, "bpm_boundaries": "all", "route": "teacher"},
               {"bpm_every": 1, "bpm_boundaries": "all", "route": "student", "switch": "each"})


def cases():
    for method in METHOD_IDS:
        variants = MIPKD_STEPS if method == "mipkd" else ({},)
        for teacher, student in PAIRS:
            for options in variants:
                # fp16 only where the student's spec allows it (the engine refuses it elsewhere).
                precisions = ("bf16", "fp16") if torch.float16 in SPECS[student].safe_dtypes else ("bf16",)
                for precision in precisions:
                    label = f"{method}-{teacher}-to-{student}-{precision}" + (f"-{options['route']}-route" if options else "")
                    yield pytest.param(method, teacher, student, precision, options, id=label)


def run_steps(method, teacher_id, student_id, precision, options, steps=2):
    teacher, student = frozen_teacher(teacher_id), small(student_id)
    obj = objective(method, teacher, student, **options)
    module = StepModule(student.net, obj)
    module.train()
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=1e-4)
    # As the engine: fp16 needs the loss scaler, whose first steps may overflow and be skipped.
    scaler = torch.amp.GradScaler("cpu") if precision == "fp16" else None
    stepper = Stepper(model=module, student=student.net, params=params, optimizer=optimizer, weights=obj.weights,
                      device=torch.device("cpu"), precision=precision, grad_clip=0.0, ctx=DistContext(),
                      objective_name=method, scaler=scaler)
    outcomes = []
    # The fp16 scaler starts at 2**16 and halves on each overflow: allow it to settle (as in a run).
    while len(outcomes) < steps or (scaler and all(o.skipped for o in outcomes) and len(outcomes) < 16):
        outcomes.append(stepper(batch(seed=len(outcomes)), 1e-4, stop=False, time_up=False, checkpoint_due=False))
    return outcomes, obj


@pytest.mark.parametrize(("method", "teacher", "student", "precision", "options"), list(cases()))
def test_a_full_step_under_autocast_has_finite_losses_and_gradients(method, teacher, student, precision, options):
    outcomes, obj = run_steps(method, teacher, student, precision, options)
    for out in outcomes:
        assert not out.bad_terms, (out.problem(), out.terms)
        assert all(math.isfinite(v) for v in out.terms.values()), out.terms
        assert not out.skipped or out.overflow_only, out.problem()
    updated = [out for out in outcomes if not out.skipped]
    assert updated and all(math.isfinite(out.grad_norm) and out.grad_norm > 0 for out in updated)
    if method == "mipkd":
        assert all(out.terms["bpm"] > 0 for out in outcomes)  # every step took the routed pass


def test_the_cases_come_from_the_registries():
    assert {"edsr", "rcan", "swinir", "rrdbnet"} <= set(FAMILIES) == set(list_archs())
    assert {"scratch", "logits", "fitnet", "fakd", "mipkd"} <= set(METHOD_IDS)
    teachers, students = zip(*PAIRS)
    assert set(teachers) == set(students) == set(FAMILIES)
