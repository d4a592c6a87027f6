"""Boundary matching: K proportional stages, the --boundaries override, and the errors."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from distill_helpers import frozen_teacher, objective, small, train_steps

from srdistill.distill.boundaries import (
    BoundaryError,
    auto_k,
    format_boundaries,
    match_boundaries,
    parse_boundaries,
    stage_ends,
)
from srdistill.models import SRModel


def test_stage_ends_split_into_proportional_contiguous_stages():
    assert stage_ends(6, 2) == [2, 5]  # SwinIR-M: 3 + 3 RSTBs
    assert stage_ends(4, 2) == [1, 3]  # SwinIR-S: 2 + 2
    assert stage_ends(16, 4) == [3, 7, 11, 15]
    assert stage_ends(5, 2) == [2, 4]  # 3 + 2: the extra block goes to the first stage
    assert stage_ends(3, 3) == [0, 1, 2]
    for depth in range(1, 12):
        for k in range(1, depth + 1):
            ends = stage_ends(depth, k)
            assert ends[-1] == depth - 1 and len(set(ends)) == k and ends == sorted(ends)


def test_auto_k_prefers_a_common_divisor_up_to_the_limit():
    assert auto_k(6, 4) == 2  # SwinIR-M -> SwinIR-S
    assert auto_k(16, 8) == 2
    assert auto_k(16, 8, max_k=4) == 4
    assert auto_k(10, 10, max_k=4) == 2  # rcan -> rcan-lite: 10 groups each; 5 would exceed 4
    assert auto_k(9, 6, max_k=4) == 3
    assert auto_k(23, 4, max_k=4) == 4  # no common divisor > 1: as many stages as allowed
    assert auto_k(3, 1) == 1


def test_matching_pairs_stage_ends_with_their_channels():
    teacher = small("swinir", depths=(2, 2, 2, 2, 2, 2), num_heads=(2, 2, 2, 2, 2, 2))
    student = small("edsr", n_resblocks=4)
    found = match_boundaries(teacher, student)
    assert [(b.teacher_block, b.student_block) for b in found] == [("layers.2", "body.1"), ("layers.5", "body.3")]
    assert {b.teacher_channels for b in found} == {24} and {b.student_channels for b in found} == {16}
    assert format_boundaries(found) == "2:1,5:3"
    assert match_boundaries(teacher, student, explicit=format_boundaries(found)) == found
    assert [b.student_index for b in match_boundaries(teacher, student, k=4)] == [0, 1, 2, 3]


def test_explicit_boundaries_are_checked():
    teacher, student = small("edsr", n_resblocks=4), small("rcan")
    assert parse_boundaries(" 1:0, 3:1 ") == [(1, 0), (3, 1)]
    with pytest.raises(BoundaryError, match="teacher block index 9 is out of range.*0..3"):
        match_boundaries(teacher, student, explicit="9:1")
    with pytest.raises(BoundaryError, match="student block index 2 is out of range.*0..1"):
        match_boundaries(teacher, student, explicit="1:2")
    with pytest.raises(BoundaryError, match="increase on both sides"):
        match_boundaries(teacher, student, explicit="3:0,1:1")
    with pytest.raises(BoundaryError, match="TEACHER:STUDENT"):
        match_boundaries(teacher, student, explicit="3-1")
    with pytest.raises(BoundaryError, match="either k or boundaries"):
        match_boundaries(teacher, student, k=2, explicit="1:0")


def test_k_larger_than_a_depth_is_refused_with_the_limit():
    teacher, student = small("edsr", n_resblocks=4), small("rcan")  # rcan small: 2 groups
    with pytest.raises(BoundaryError, match="k 3 is larger than the depth of the student.*use k 2"):
        match_boundaries(teacher, student, k=3)
    with pytest.raises(BoundaryError, match="at least 1"):
        match_boundaries(teacher, student, k=-1)


def blockless(model: SRModel) -> SRModel:
    """The same network under a spec that declares no body blocks (like a minimal plugin)."""
    spec = dataclasses.replace(model.spec, blocks=lambda hp: (), block_channels=lambda hp: ())
    return SRModel(spec, model.scale, model.hparams, model.net)


def test_arch_without_blocks_gets_a_clear_message_but_featureless_methods_work():
    teacher = frozen_teacher("edsr")
    student = blockless(small("edsr", n_feats=8))
    with pytest.raises(BoundaryError, match="student architecture 'edsr' declares no body blocks.*method logits or scratch"):
        objective("mipkd", teacher, student)
    with pytest.raises(BoundaryError, match="teacher architecture"):
        objective("fitnet", blockless(teacher), small("edsr"))
    for method in ("logits", "scratch"):
        history = train_steps(objective(method, blockless(teacher), student), student)
        assert all(torch.isfinite(torch.tensor(list(h.values()))).all() for h in history)
